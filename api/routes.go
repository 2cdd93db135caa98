package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of request values.
const (
	minPassphraseChars = 10
	maxTextBytes       = 32 << 10 // a message's text, in bytes of UTF-8
	defaultPageSize    = 50
	maxPageSize        = 200
)

// authKind says how a route authenticates.
type authKind int

const (
	authBearer authKind = iota // Authorization: Bearer <token>, checked before the handler
	authNone                   // public
	authSocket                 // the WebSocket: header on the upgrade or a first message
)

// bodyKind says what request body a route takes.
type bodyKind int

const (
	bodyNone  bodyKind = iota // GET routes: the body is not read
	bodyJSON                  // a JSON object; the handler decodes it
	bodyEmpty                 // a mutating route without a body: it must be empty
)

// route is one row of the route table. Pattern segments in braces match
// any one non-empty path segment and name a path parameter; where two
// patterns match a path, the one with a literal segment where the other
// has a parameter wins (see findRoute).
type route struct {
	method  string
	pattern string
	auth    authKind
	body    bodyKind
	handle  func(*request) error
	segs    []string
}

// request is what a route handler gets.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	h      *handler
	params map[string]string
	login  *login // nil on public routes
}

// routeTable is the API. The OpenAPI document lists exactly these
// (method, pattern) pairs; a test holds the two together. Their order does
// not matter: findRoute prefers literal segments to parameters.
func (s *Server) routeTable() []route {
	rs := []route{
		{method: http.MethodGet, pattern: "/api/v1/health", auth: authNone, handle: s.health},
		{method: http.MethodGet, pattern: "/api/v1/openapi.json", auth: authNone, handle: s.openAPI},
		{method: http.MethodPost, pattern: "/api/v1/register", auth: authNone, body: bodyJSON, handle: s.register},
		{method: http.MethodPost, pattern: "/api/v1/login", auth: authNone, body: bodyJSON, handle: s.login},
		{method: http.MethodPost, pattern: "/api/v1/logout", body: bodyEmpty, handle: s.logout},
		{method: http.MethodGet, pattern: "/api/v1/me", handle: s.me},
		{method: http.MethodGet, pattern: "/api/v1/friends", handle: s.friends},
		{method: http.MethodPost, pattern: "/api/v1/friends", body: bodyJSON, handle: s.addFriend},
		{method: http.MethodDelete, pattern: "/api/v1/friends/{user_id}", body: bodyEmpty, handle: s.removeFriend},
		{method: http.MethodPost, pattern: "/api/v1/friends/{user_id}/verify", body: bodyJSON, handle: s.verifyFriend},
		{method: http.MethodPost, pattern: "/api/v1/friends/{user_id}/block", body: bodyEmpty, handle: s.blockFriend},
		{method: http.MethodPost, pattern: "/api/v1/send_message", body: bodyJSON, handle: s.sendMessage},
		{method: http.MethodGet, pattern: "/api/v1/get_messages", handle: s.getMessages},
		{method: http.MethodGet, pattern: "/api/v1/conversations", handle: s.conversations},
		{method: http.MethodPost, pattern: "/api/v1/read", body: bodyJSON, handle: s.markRead},
		{method: http.MethodPost, pattern: "/api/v1/messages/{msg_id}/retry", body: bodyEmpty, handle: s.retryMessage},
		{method: http.MethodDelete, pattern: "/api/v1/messages/{msg_id}", body: bodyEmpty, handle: s.deleteMessage},
		{method: http.MethodGet, pattern: "/api/v1/node", handle: s.nodeInfo},
		{method: http.MethodPost, pattern: "/api/v1/peers/connect", body: bodyJSON, handle: s.connect},
		{method: http.MethodGet, pattern: "/api/v1/directory/search", handle: s.searchDirectory},
		{method: http.MethodGet, pattern: "/api/v1/directory/{user_id}", handle: s.lookupUser},
		{method: http.MethodPost, pattern: "/api/v1/keys/rotate", body: bodyEmpty, handle: s.rotateKey},
		{method: http.MethodGet, pattern: "/api/v1/events", auth: authSocket, handle: s.events},
	}
	for i := range rs {
		rs[i].segs = strings.Split(rs[i].pattern, "/")
	}
	return rs
}

// match matches a path, split at "/" and still escaped, against the
// route's pattern and returns the unescaped path parameters.
func (rt *route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(rt.segs) {
		return nil, false
	}
	var params map[string]string
	for i, p := range rt.segs {
		if name, ok := strings.CutPrefix(p, "{"); ok {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" || strings.Contains(v, "/") {
				return nil, false
			}
			if params == nil {
				params = make(map[string]string)
			}
			params[strings.TrimSuffix(name, "}")] = v
			continue
		}
		if segs[i] != p {
			return nil, false
		}
	}
	return params, true
}

// moreSpecific reports whether rt wins over other when both match a path:
// at the first segment where one has a literal and the other a parameter,
// the literal wins (so /directory/search is not /directory/{user_id}).
func (rt *route) moreSpecific(other *route) bool {
	for i := range min(len(rt.segs), len(other.segs)) {
		lit, otherLit := !strings.HasPrefix(rt.segs[i], "{"), !strings.HasPrefix(other.segs[i], "{")
		if lit != otherLit {
			return lit
		}
	}
	return false
}

// findRoute picks the route for a method and a path split at "/": the
// most specific route of that method matching the path, with its path
// parameters. When none has the method, allowed lists (sorted, once each)
// the methods of the routes that match the path.
func findRoute(routes []route, method string, segs []string) (best *route, params map[string]string, allowed []string) {
	for i := range routes {
		rt := &routes[i]
		p, ok := rt.match(segs)
		if !ok {
			continue
		}
		if rt.method != method {
			allowed = append(allowed, rt.method)
			continue
		}
		if best == nil || rt.moreSpecific(best) {
			best, params = rt, p
		}
	}
	if best != nil {
		return best, params, nil
	}
	slices.Sort(allowed)
	return nil, nil, slices.Compact(allowed)
}

// serveAPI routes a request under /api: 404 for an unknown path, 405 with
// Allow for a known path and another method, then authentication, the
// body rule of the route, and the handler.
func (h *handler) serveAPI(w http.ResponseWriter, r *http.Request) {
	s := h.s
	rt, params, allowed := findRoute(s.routes, r.Method, strings.Split(r.URL.EscapedPath(), "/"))
	if rt == nil {
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			s.writeError(w, r, apiError(CodeMethodNotAllowed, "method %s not allowed here", r.Method))
			return
		}
		s.writeError(w, r, apiError(CodeNotFound, "no such API route"))
		return
	}
	req := &request{w: w, r: r, h: h, params: params}
	if rt.auth == authBearer {
		lg, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		req.login = lg
	}
	if rt.body == bodyEmpty {
		if err := requireEmptyBody(w, r); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if err := rt.handle(req); err != nil {
		s.writeError(w, r, err)
	}
}

// health answers without auth, in every state.
func (s *Server) health(q *request) error {
	writeJSON(q.w, http.StatusOK, map[string]string{"status": "ok", "state": string(s.node.State())})
	return nil
}

// passphraseRequest is the body of register and login. The passphrase is
// kept raw so that it can be decoded into a byte slice and wiped.
type passphraseRequest struct {
	Name       *string         `json:"name,omitempty"`
	Passphrase json.RawMessage `json:"passphrase"`
}

// decodePassphrase decodes the body of register (withName) or login and
// returns the passphrase as bytes the caller must wipe.
func decodePassphrase(q *request, withName bool) (name string, pass []byte, err error) {
	var req passphraseRequest
	raw, err := decodeBody(q.w, q.r, &req)
	defer wipe(raw)
	defer wipe(req.Passphrase)
	if err != nil {
		return "", nil, err
	}
	if req.Name != nil {
		if !withName {
			return "", nil, apiError(CodeBadRequest, `invalid JSON body: unknown field "name"`)
		}
		name = *req.Name
	}
	if req.Passphrase == nil {
		return "", nil, apiError(CodeBadRequest, "passphrase is required")
	}
	pass, err = unquoteBytes(req.Passphrase)
	if err != nil {
		return "", nil, apiError(CodeBadRequest, "passphrase must be a string")
	}
	return name, pass, nil
}

func (s *Server) register(q *request) error {
	name, pass, err := decodePassphrase(q, true)
	defer wipe(pass)
	if err != nil {
		return err
	}
	if s.node.State() != StateNew {
		return apiError(CodeConflict, "an identity already exists on this node")
	}
	if strings.TrimSpace(name) == "" {
		return apiError(CodeBadRequest, "name is required")
	}
	if utf8.RuneCount(pass) < minPassphraseChars {
		return apiError(CodeBadRequest, "passphrase must be at least %d characters", minPassphraseChars)
	}
	me, err := s.node.Register(q.r.Context(), name, pass)
	wipe(pass)
	if err != nil {
		return err
	}
	token, err := s.tokens.issue()
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusCreated, map[string]string{"user_id": me.UserID, "peer_id": me.PeerID, "token": token})
	return nil
}

func (s *Server) login(q *request) error {
	_, pass, err := decodePassphrase(q, false)
	defer wipe(pass)
	if err != nil {
		return err
	}
	if s.node.State() == StateNew {
		return apiError(CodeWrongState, "no identity on this node yet: register first")
	}
	if len(pass) == 0 {
		return apiError(CodeBadRequest, "passphrase is required")
	}
	me, err := s.node.Unlock(q.r.Context(), pass)
	wipe(pass)
	if err != nil {
		return err
	}
	token, err := s.tokens.issue()
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, map[string]string{"token": token, "user_id": me.UserID})
	return nil
}

func (s *Server) logout(q *request) error {
	s.tokens.revoke(q.login)
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(q *request) error {
	me, err := s.node.Me(q.r.Context())
	if err != nil {
		return err
	}
	me.Addrs = nonNil(me.Addrs)
	writeJSON(q.w, http.StatusOK, me)
	return nil
}

func (s *Server) friends(q *request) error {
	fs, err := s.node.Friends(q.r.Context())
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, map[string][]Friend{"friends": nonNil(fs)})
	return nil
}

func (s *Server) addFriend(q *request) error {
	var req struct {
		Invite string `json:"invite"`
		UserID string `json:"user_id"`
	}
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	var (
		f   Friend
		err error
	)
	switch {
	case req.Invite != "" && req.UserID == "":
		f, err = s.node.AddFriend(q.r.Context(), req.Invite)
	case req.UserID != "" && req.Invite == "":
		f, err = s.node.AddFriendByID(q.r.Context(), req.UserID)
	default:
		return apiError(CodeBadRequest, "give exactly one of invite and user_id")
	}
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusCreated, f)
	return nil
}

func (s *Server) removeFriend(q *request) error {
	if err := s.node.RemoveFriend(q.r.Context(), q.params["user_id"]); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// verifyFriend takes {"safety_number": "..."}, the number the user
// compared, or (older clients) no body at all.
func (s *Server) verifyFriend(q *request) error {
	var req struct {
		SafetyNumber string `json:"safety_number"`
	}
	if q.r.ContentLength == 0 {
		if err := requireEmptyBody(q.w, q.r); err != nil {
			return err
		}
	} else if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	var number []string
	if req.SafetyNumber != "" {
		number = []string{req.SafetyNumber}
	}
	if err := s.node.VerifyFriend(q.r.Context(), q.params["user_id"], number...); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) blockFriend(q *request) error {
	f, err := s.node.BlockFriend(q.r.Context(), q.params["user_id"])
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, f)
	return nil
}

func (s *Server) sendMessage(q *request) error {
	// decodeBody has checked that the body is valid UTF-8 without lone
	// surrogate escapes, so Text is exactly what the client sent.
	var req struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	switch {
	case req.To == "":
		return apiError(CodeBadRequest, "to is required")
	case req.Text == "":
		return apiError(CodeBadRequest, "text is empty")
	case len(req.Text) > maxTextBytes:
		return apiError(CodeTooLarge, "text is longer than %d bytes", maxTextBytes)
	case !utf8.ValidString(req.Text):
		return apiError(CodeBadRequest, "text is not valid UTF-8")
	}
	m, err := s.node.Send(q.r.Context(), req.To, req.Text)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusAccepted, map[string]string{"msg_id": m.ID, "status": m.Status})
	return nil
}

// messagesPage is the answer of get_messages; Next is null on the last
// page.
type messagesPage struct {
	Messages []Message `json:"messages"`
	Next     *string   `json:"next"`
}

func (s *Server) getMessages(q *request) error {
	query, err := url.ParseQuery(q.r.URL.RawQuery)
	if err != nil {
		return apiError(CodeBadRequest, "malformed query string")
	}
	with := query.Get("with")
	if with == "" {
		return apiError(CodeBadRequest, "with is required")
	}
	limit := defaultPageSize
	if v := query.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return apiError(CodeBadRequest, "limit must be a number from 1 to %d", maxPageSize)
		}
		limit = n
	}
	msgs, next, err := s.node.Messages(q.r.Context(), with, query.Get("before"), limit)
	if err != nil {
		return err
	}
	page := messagesPage{Messages: nonNil(msgs)}
	if next != "" {
		page.Next = &next
	}
	writeJSON(q.w, http.StatusOK, page)
	return nil
}

func (s *Server) conversations(q *request) error {
	cs, err := s.node.Conversations(q.r.Context())
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, map[string][]Conversation{"conversations": nonNil(cs)})
	return nil
}

func (s *Server) markRead(q *request) error {
	var req struct {
		With string `json:"with"`
		UpTo string `json:"up_to"`
	}
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	if req.With == "" {
		return apiError(CodeBadRequest, "with is required")
	}
	if err := s.node.MarkRead(q.r.Context(), req.With, req.UpTo); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) nodeInfo(q *request) error {
	info, err := s.node.NodeInfo(q.r.Context())
	if err != nil {
		return err
	}
	info.Addrs = nonNil(info.Addrs)
	info.ConnectedPeers = nonNil(info.ConnectedPeers)
	writeJSON(q.w, http.StatusOK, info)
	return nil
}

func (s *Server) connect(q *request) error {
	var req struct {
		Addr string `json:"addr"`
	}
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	if req.Addr == "" {
		return apiError(CodeBadRequest, "addr is required")
	}
	if err := s.node.Connect(q.r.Context(), req.Addr); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// nonNil turns a nil slice into an empty one, so that JSON shows [] and
// never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
