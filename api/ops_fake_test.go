package api

import (
	"context"
	"crypto/subtle"
	"io"
	"sync"
)

// The fake node's backup and audit log (ops_routes.go).

// fakeBackup is what the fake writes as a backup body.
const fakeBackup = "age-encryption.org/v1 fake backup body"

func (f *fakeNode) Backup(_ context.Context, passphrase []byte, w io.Writer) error {
	f.mu.Lock()
	err := f.fail("Backup")
	ok := subtle.ConstantTimeCompare(passphrase, []byte(f.passphrase)) == 1
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if !ok {
		return &Error{Code: CodeBadPassphrase, Message: "wrong passphrase"}
	}
	_, err = io.WriteString(w, fakeBackup)
	return err
}

func (f *fakeNode) AuditLog(_ context.Context, limit int) ([]AuditEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("AuditLog"); err != nil {
		return nil, err
	}
	return []AuditEvent{{Event: "login"}}[:min(1, limit)], nil
}

// fakeAuditor keeps what the server recorded.
type fakeAuditor struct {
	mu     sync.Mutex
	events []string
	fields []map[string]string
}

func (a *fakeAuditor) Audit(event string, fields map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, event)
	a.fields = append(a.fields, fields)
}

func (a *fakeAuditor) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.events...)
}
