package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/node/audit"
)

// startAudit opens the audit log in n's data directory and records the
// node's security events from its event bus until ctx ends or stop is
// called; stop also closes the log. The API's own events (logins,
// tokens, friend changes the user made, backups) come through
// apiAuditor.
func startAudit(ctx context.Context, n *node.Node, log *slog.Logger) (*audit.Log, func(), error) {
	l, err := audit.Open(n.DataDir(), audit.Options{})
	if err != nil {
		return nil, nil, err
	}
	evs, cancel := n.Subscribe(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range evs {
			recordNodeEvent(l, ev)
		}
	}()
	return l, func() {
		cancel()
		<-done
		if err := l.Close(); err != nil {
			log.Error("closing the audit log", "err", err)
		}
	}, nil
}

// recordNodeEvent writes what a node event means for the audit log.
func recordNodeEvent(l *audit.Log, ev node.Event) {
	friend := func(typ string) {
		l.Record(typ, map[string]string{"user_id": ev.Friend.UserID.String(), "via": "node"})
	}
	switch ev.Type {
	case node.EventFriendRequest:
		friend(audit.FriendRequest)
	case node.EventFriendAccepted:
		friend(audit.FriendAccepted)
	case node.EventFriendKeyRotated:
		friend(audit.FriendKeyRotated)
	case node.EventFriendKeyChanged:
		friend(audit.FriendKeyChanged)
	case node.EventKeyFork:
		friend(audit.KeyFork)
	case node.EventEnvelopeRefused:
		l.Refused(ev.Peer.String(), ev.Code)
	case node.EventOverflow:
		l.Record("audit_events_lost", nil)
	}
}

// apiAuditor records the API's security events in the audit log.
type apiAuditor struct{ l *audit.Log }

func (a apiAuditor) Audit(event string, fields map[string]string) { a.l.Record(event, fields) }

// auditCLI records one event of a command that runs on a stopped node
// (backup, restore, init, rotate-key) in dir's audit log; a log that
// cannot be written is not the command's failure.
func auditCLI(dir, event string, fields map[string]string) {
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		return
	}
	l.Record(event, fields)
	l.Close()
}

// Backup is api.Node's backup of the running node.
func (a *nodeAPI) Backup(ctx context.Context, passphrase []byte, w io.Writer) error {
	return apiError(a.n.Backup(ctx, passphrase, w))
}

// AuditLog is api.Node's view of the audit log.
func (a *nodeAPI) AuditLog(_ context.Context, limit int) ([]api.AuditEvent, error) {
	if a.audit == nil {
		return nil, errors.New("no audit log")
	}
	evs, err := a.audit.Recent(limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.AuditEvent, len(evs))
	for i, e := range evs {
		out[i] = api.AuditEvent{Time: e.Time, Event: e.Type, Fields: e.Fields}
	}
	return out, nil
}
