package api

import (
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxSearchNameBytes bounds the name a directory search looks for, in
// bytes of UTF-8 after trimming.
const maxSearchNameBytes = 64

// lookupUser serves GET /api/v1/directory/{user_id}: the user's verified
// directory record, 404 when there is none.
func (s *Server) lookupUser(q *request) error {
	e, err := s.node.LookupUser(q.r.Context(), q.param("user_id"))
	if err != nil {
		return err
	}
	e.Devices = nonNil(e.Devices)
	writeJSON(q.w, http.StatusOK, e)
	return nil
}

// searchDirectory serves GET /api/v1/directory/search?name=...: the users
// who claim the name. The name is given once, and trimmed it is 1 to 64
// bytes of valid UTF-8 without control characters.
func (s *Server) searchDirectory(q *request) error {
	query, err := url.ParseQuery(q.r.URL.RawQuery)
	if err != nil {
		return apiError(CodeBadRequest, "malformed query string")
	}
	if len(query["name"]) > 1 {
		return apiError(CodeBadRequest, "give name only once")
	}
	name := strings.TrimSpace(query.Get("name"))
	switch {
	case name == "":
		return apiError(CodeBadRequest, "name is required")
	case len(name) > maxSearchNameBytes:
		return apiError(CodeBadRequest, "name is longer than %d bytes", maxSearchNameBytes)
	case !utf8.ValidString(name):
		return apiError(CodeBadRequest, "name is not valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return apiError(CodeBadRequest, "name contains a control character")
	}
	rs, err := s.node.SearchDirectory(q.r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, SearchResults{Results: nonNil(rs)})
	return nil
}

// rotateKey serves POST /api/v1/keys/rotate: a new identity key, and the
// user as they are after it.
func (s *Server) rotateKey(q *request) error {
	me, err := s.node.RotateKey(q.r.Context())
	if err != nil {
		return err
	}
	me.Addrs = nonNil(me.Addrs)
	writeJSON(q.w, http.StatusOK, me)
	return nil
}
