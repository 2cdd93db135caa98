package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxBodyBytes is the largest request body the API reads.
const maxBodyBytes = 1 << 20

// contentSecurityPolicy is sent with every answer.
const contentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// setSecurityHeaders sets the headers every answer carries. The API never
// sends CORS headers: the UI is served from the API's own origin.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// hostAllowed reports whether host, a request's Host header, is one the
// handler serves: 127.0.0.1, localhost or [::1] with the listener's port,
// or one of Options.AllowedHosts. Anything else may be a DNS-rebinding
// attack (a foreign name resolving to 127.0.0.1). Host names compare
// case-insensitively, as DNS does; there is no other leeway.
func (h *handler) hostAllowed(host string) bool {
	for _, ok := range h.hosts {
		if strings.EqualFold(host, ok) {
			return true
		}
	}
	return false
}

// ownOrigin is the origin of the API as a browser names it for a request
// whose Host passed hostAllowed.
func ownOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// originAllowed reports whether the request's Origin header, when present,
// is the API's own origin (a browser sends a foreign one for a cross-site
// request: CSRF). A request without Origin passes here; the WebSocket
// upgrade requires one separately.
func originAllowed(r *http.Request) bool {
	origins := r.Header.Values("Origin")
	switch len(origins) {
	case 0:
		return true
	case 1:
		return strings.EqualFold(origins[0], ownOrigin(r))
	default:
		return false
	}
}

// checkJSONContentType accepts application/json, optionally with a
// charset=utf-8 parameter, and nothing else.
func checkJSONContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return apiError(CodeUnsupportedMedia, "Content-Type must be application/json")
	}
	return checkJSONMediaType(ct)
}

// checkJSONMediaType checks a present Content-Type value: application/json,
// with charset utf-8 if any parameter.
func checkJSONMediaType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return apiError(CodeUnsupportedMedia, "Content-Type must be application/json")
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return apiError(CodeUnsupportedMedia, "Content-Type must be application/json, with charset utf-8 if any")
		}
	}
	return nil
}

// readBody reads a request body of at most maxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBodyBytes {
		return nil, apiError(CodeTooLarge, "request body is larger than 1 MiB")
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apiError(CodeTooLarge, "request body is larger than 1 MiB")
		}
		return nil, apiError(CodeBadRequest, "reading request body: %v", err)
	}
	return b, nil
}

// requireEmptyBody checks that a mutating route that takes no body got
// none. Like every mutating route it takes only JSON: no Content-Type,
// or application/json (charset utf-8 allowed); any other is a 415, so
// that a form or text/plain request, which a browser sends cross-site
// without a preflight, is refused on its type too.
func requireEmptyBody(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if err := checkJSONMediaType(ct); err != nil {
			return err
		}
	}
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) != 0 {
		return apiError(CodeBadRequest, "this route takes no request body")
	}
	return nil
}

// decodeBody reads a JSON object from the request into v, strictly: the
// body must be application/json, at most 1 MiB, valid UTF-8 without lone
// surrogate escapes (encoding/json would turn either into U+FFFD
// silently), one object with no unknown fields and nothing after it.
// It returns the raw body so that the caller can wipe secrets from it.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	if err := checkJSONContentType(r); err != nil {
		return nil, err
	}
	b, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	if err := validJSONText(b); err != nil {
		return b, err
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return b, apiError(CodeBadRequest, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return b, apiError(CodeBadRequest, "invalid JSON body: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return b, apiError(CodeBadRequest, "invalid JSON body: data after the object")
	}
	return b, nil
}

// jsonErrorText describes a decoding error without quoting the input.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	default:
		return "malformed"
	}
}

// validJSONText checks that a JSON text is valid UTF-8 and that its
// strings hold no \u escape of a lone surrogate.
func validJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return apiError(CodeBadRequest, "request body is not valid UTF-8")
	}
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(b) && b[i+1] == 'u' {
				n, err := unescapeU(b[i:], nil)
				if err != nil {
					return err
				}
				i += n - 1
			} else {
				i++ // skip the escaped character
			}
		}
	}
	return nil
}

// unescapeU decodes the \uXXXX escape (or surrogate pair of two) at the
// start of s, appends the rune to out when out is not nil, and returns how
// many bytes it used. A lone or malformed surrogate is an error.
func unescapeU(s []byte, out *[]byte) (int, error) {
	bad := apiError(CodeBadRequest, "invalid \\u escape in a JSON string")
	r, ok := hex4(s)
	if !ok {
		return 0, bad
	}
	n := 6
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return 0, apiError(CodeBadRequest, "lone surrogate in a JSON string")
	case r >= 0xD800 && r <= 0xDBFF:
		if len(s) < 12 || s[6] != '\\' || s[7] != 'u' {
			return 0, apiError(CodeBadRequest, "lone surrogate in a JSON string")
		}
		lo, ok := hex4(s[6:])
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return 0, apiError(CodeBadRequest, "lone surrogate in a JSON string")
		}
		r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
		n = 12
	}
	if out != nil {
		*out = utf8.AppendRune(*out, r)
	}
	return n, nil
}

// hex4 reads the four hex digits of a \uXXXX escape at the start of s.
func hex4(s []byte) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// unquoteBytes decodes a JSON string literal into a fresh byte slice, so
// that a secret (a passphrase) can be wiped after use, which a Go string
// cannot. It is strict: valid UTF-8, no lone surrogates.
func unquoteBytes(raw []byte) ([]byte, error) {
	notString := apiError(CodeBadRequest, "expected a JSON string")
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, notString
	}
	s := raw[1 : len(raw)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				wipe(out)
				return nil, notString
			}
			if s[i+1] == 'u' {
				n, err := unescapeU(s[i:], &out)
				if err != nil {
					wipe(out)
					return nil, err
				}
				i += n
				continue
			}
			e, ok := simpleEscapes[s[i+1]]
			if !ok {
				wipe(out)
				return nil, notString
			}
			out = append(out, e)
			i += 2
		case c == '"' || c < 0x20:
			wipe(out)
			return nil, notString
		default:
			out = append(out, c)
			i++
		}
	}
	if !utf8.Valid(out) {
		wipe(out)
		return nil, apiError(CodeBadRequest, "string is not valid UTF-8")
	}
	return out, nil
}

var simpleEscapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// wipe zeroes b, for buffers that held a secret.
func wipe(b []byte) {
	clear(b)
}
