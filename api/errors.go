package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Code is a machine-readable error code, the "code" of an error answer.
type Code string

// The error codes of the API. Codes the node returns (through *Error) and
// codes the API itself produces share one list; each maps to one HTTP
// status (see Code.Status).
//
// CodeKeyChanged means the friend's key changed without a rotation signed
// by the pinned key; sending is held until the friend is verified again
// (POST /api/v1/friends/{user_id}/verify).
const (
	CodeBadRequest       Code = "bad_request"            // 400: malformed JSON, unknown field, bad value
	CodeEmptyText        Code = "empty_text"             // 400: a message text empty or only white space (also from the node)
	CodeUnauthorized     Code = "unauthorized"           // 401: missing, wrong or expired token
	CodeBadPassphrase    Code = "bad_passphrase"         // 401: login with a wrong passphrase
	CodeForbidden        Code = "forbidden"              // 403: foreign Host or Origin
	CodeNotFound         Code = "not_found"              // 404
	CodeMethodNotAllowed Code = "method_not_allowed"     // 405
	CodeConflict         Code = "conflict"               // 409: e.g. an identity already exists
	CodeWrongState       Code = "wrong_state"            // 409: not possible in the node's state
	CodeKeyChanged       Code = "key_changed"            // 409: see above
	CodeTooLarge         Code = "too_large"              // 413
	CodeUnsupportedMedia Code = "unsupported_media_type" // 415
	CodeThrottled        Code = "throttled"              // 429, with Retry-After
	CodeUnavailable      Code = "unavailable"            // 503: e.g. the network is not reachable
	CodeInternal         Code = "internal"               // 500

	CodeBadInvite     Code = "bad_invite"      // 400: not a Parley invite link
	CodeInviteRefused Code = "invite_refused"  // 400: the inviter's node refused the short invite, or gave another user's card
	CodeNotRetryable  Code = "not_retryable"   // 409: only a failed outgoing message can be sent again
	CodeRemovedByPeer Code = "removed_by_peer" // 409: the friend removed the user; nothing is sent to them
	CodeNotMember     Code = "not_member"      // 403: not (or no longer) a member of the group
	CodeNotAdmin      Code = "not_admin"       // 403: only a group's admin may do this
)

// codeStatus is the HTTP status of each code.
var codeStatus = map[Code]int{
	CodeBadRequest:       http.StatusBadRequest,
	CodeEmptyText:        http.StatusBadRequest,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeBadPassphrase:    http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeConflict:         http.StatusConflict,
	CodeWrongState:       http.StatusConflict,
	CodeKeyChanged:       http.StatusConflict,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeThrottled:        http.StatusTooManyRequests,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
	CodeBadInvite:        http.StatusBadRequest,
	CodeInviteRefused:    http.StatusBadRequest,
	CodeNotRetryable:     http.StatusConflict,
	CodeRemovedByPeer:    http.StatusConflict,
	CodeNotMember:        http.StatusForbidden,
	CodeNotAdmin:         http.StatusForbidden,
}

// Codes lists every Code, sorted.
func Codes() []Code {
	cs := slices.Collect(maps.Keys(codeStatus))
	slices.Sort(cs)
	return cs
}

// Status returns the HTTP status an answer with this code carries, and 500
// for a code not in the list above.
func (c Code) Status() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an error a Node method returns for a failure the client can
// act on. Message is shown to the user: it must not carry secrets.
type Error struct {
	Code       Code
	Message    string
	RetryAfter time.Duration // for CodeThrottled
	Err        error         // the cause, for logs and errors.Is; never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// internalMessage is the only text a client sees of an internal error.
const internalMessage = "internal error"

// apiError builds an *Error the API itself answers with.
func apiError(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// writeError answers err as a JSON error. An *Error (found with errors.As)
// answers with its code and message; anything else, and an *Error with
// CodeInternal or an unknown code, answers 500 "internal" with a generic
// message, and the real error goes to the log.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) || e.Code == CodeInternal || e.Code.Status() == http.StatusInternalServerError {
		if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
			s.log.Debug("api: request canceled", "method", r.Method, "path", r.URL.Path)
		} else {
			s.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeErrorBody(w, http.StatusInternalServerError, CodeInternal, internalMessage)
		return
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Code.Status())
	}
	switch e.Code {
	case CodeThrottled:
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(e.RetryAfter)))
	case CodeUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
	}
	writeErrorBody(w, e.Code.Status(), e.Code, msg)
}

// writeErrorBody writes the JSON error answer.
func writeErrorBody(w http.ResponseWriter, status int, code Code, msg string) {
	writeJSON(w, status, ErrorResponse{Error: ErrorDetail{Code: code, Message: msg}})
}

// RetryAfterSeconds is a wait as the Retry-After header of a throttled
// answer gives it: whole seconds, rounded up, at least 1. Messages that
// tell the wait use it too, so that they agree with the header.
func RetryAfterSeconds(d time.Duration) int {
	return max(int(math.Ceil(d.Seconds())), 1)
}
