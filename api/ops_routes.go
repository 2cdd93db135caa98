package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Auditor records security events in the node's audit log: event names
// and identifiers, never content, passphrases or tokens. cmd/parley hands
// in the node's audit log (package node/audit); nil records nothing.
type Auditor interface {
	Audit(event string, fields map[string]string)
}

// AuditEvent is one line of the audit log, as GET /api/v1/audit shows it.
type AuditEvent struct {
	Time   time.Time         `json:"time"`
	Event  string            `json:"event"`
	Fields map[string]string `json:"fields,omitempty"`
}

// AuditLog is the answer of GET /api/v1/audit: newest first.
type AuditLog struct {
	Events []AuditEvent `json:"events"`
}

// AuditQuery is the query of GET /api/v1/audit.
type AuditQuery struct {
	Limit int `query:"limit"` // 1 to 1000, default 100
}

// BackupRequest is the body of POST /api/v1/backup.
type BackupRequest struct {
	Passphrase Secret `json:"passphrase"` // the node's passphrase
}

// Binary marks an answer that is a file (application/octet-stream), not
// JSON.
type Binary struct{}

// Limits of GET /api/v1/audit.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// routeAudit names what a route's outcome means for the audit log: the
// event of a success, and of failures by code.
type routeAudit struct {
	ok       []string
	failures map[Code]string
	// param is the path parameter recorded as user_id.
	param string
}

// auditedRoutes maps "METHOD pattern" to its audit events.
var auditedRoutes = map[string]routeAudit{
	"POST /api/v1/register": {ok: []string{"registered", "token_issued"}},
	"POST /api/v1/login": {ok: []string{"login", "token_issued"}, failures: map[Code]string{
		CodeBadPassphrase: "login_failed", CodeThrottled: "login_throttled",
	}},
	"POST /api/v1/logout":                   {ok: []string{"token_revoked"}},
	"POST /api/v1/friends":                  {ok: []string{"friend_added"}},
	"DELETE /api/v1/friends/{user_id}":      {ok: []string{"friend_removed"}, param: "user_id"},
	"POST /api/v1/friends/{user_id}/block":  {ok: []string{"friend_blocked"}, param: "user_id"},
	"POST /api/v1/friends/{user_id}/verify": {ok: []string{"friend_verified"}, param: "user_id"},
	"POST /api/v1/keys/rotate":              {ok: []string{"key_rotated"}},
	"POST /api/v1/backup": {ok: []string{"backup_made"}, failures: map[Code]string{
		CodeForbidden: "backup_refused", CodeThrottled: "login_throttled",
	}},
}

// audit records what a finished request means for the audit log.
func (s *Server) audit(rt *route, q *request, err error) {
	if s.auditor == nil {
		return
	}
	ra, ok := auditedRoutes[rt.method+" "+rt.pattern]
	if !ok {
		return
	}
	fields := map[string]string{"via": "api"}
	if ra.param != "" {
		fields["user_id"] = q.param(ra.param)
	}
	if err == nil {
		for _, ev := range ra.ok {
			s.auditor.Audit(ev, fields)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		return
	}
	if ev, ok := ra.failures[e.Code]; ok {
		if e.Code == CodeThrottled {
			fields["retry_after_s"] = strconv.Itoa(RetryAfterSeconds(e.RetryAfter))
		}
		s.auditor.Audit(ev, fields)
	}
}

// backup streams an encrypted backup of the node. The passphrase (the
// node's) is checked before the first byte: a wrong one is 403 and
// nothing is written. The answer is application/octet-stream; a failure
// after the first byte cuts the connection, so the file the client got
// is visibly truncated (restore refuses it) rather than complete-looking.
func (s *Server) backup(q *request) error {
	var req BackupRequest
	pass, err := decodePassphrase(q, &req, &req.Passphrase)
	defer wipe(pass)
	if err != nil {
		return err
	}
	if len(pass) == 0 {
		return apiError(CodeBadRequest, "passphrase is required")
	}
	w := &lazyWriter{w: q.w, name: "parley-backup-" + time.Now().UTC().Format("20060102-150405") + ".age"}
	err = s.node.Backup(q.r.Context(), pass, w)
	wipe(pass)
	var e *Error
	switch {
	case err == nil:
		if !w.started {
			w.start()
		}
		return nil
	case w.started:
		s.log.Error("backup failed after it started; cutting the answer", "err", err)
		panic(http.ErrAbortHandler)
	case errors.As(err, &e) && e.Code == CodeBadPassphrase:
		return apiError(CodeForbidden, "wrong passphrase")
	}
	return err
}

// lazyWriter sends the backup's headers with its first byte, so that an
// error before then can still be a JSON error answer.
type lazyWriter struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (l *lazyWriter) start() {
	l.started = true
	h := l.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", l.name))
	h.Set("Cache-Control", "no-store")
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.start()
	}
	return l.w.Write(p)
}

// auditLog answers the newest audit events, newest first.
func (s *Server) auditLog(q *request) error {
	query, err := url.ParseQuery(q.r.URL.RawQuery)
	if err != nil {
		return apiError(CodeBadRequest, "malformed query string")
	}
	limit, err := pageLimit(query, defaultAuditLimit, maxAuditLimit)
	if err != nil {
		return err
	}
	evs, err := s.node.AuditLog(q.r.Context(), limit)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, AuditLog{Events: nonNil(evs)})
	return nil
}
