package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Session state. Each friend's double-ratchet sessions are one blob
// (protocol.PeerSessions.Marshal), sealed with the secrets key since it
// holds private keys. It is written in the same transaction as the message
// whose sealing or opening advanced it (the *With variants of
// StoreReceived, AddOutgoing, AddControl and MarkSeen), so a crash never
// separates a message from its ratchet step.

// SessionUpdate is a friend's session state to write with a message; a
// nil State deletes it.
type SessionUpdate struct {
	Peer  protocol.ID
	State []byte
}

// Sessions returns peer's stored session state, or ErrNotFound.
func (s *Store) Sessions(ctx context.Context, peer protocol.ID) ([]byte, error) {
	var b []byte
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		b, err = s.getSealed(txn, s.secrets, rowSessions, sessionsKey(peer))
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: sessions with %s", ErrNotFound, peer)
	}
	return b, err
}

// PutSessions writes (or, with a nil State, deletes) a session state on
// its own.
func (s *Store) PutSessions(ctx context.Context, u SessionUpdate) error {
	return s.update(ctx, func(txn *badger.Txn) error { return s.putSessionsTxn(txn, &u) })
}

func (s *Store) putSessionsTxn(txn *badger.Txn, u *SessionUpdate) error {
	if u == nil {
		return nil
	}
	if u.Peer.IsZero() {
		return fmt.Errorf("%w: session state without a peer", ErrInvalid)
	}
	key := sessionsKey(u.Peer)
	if u.State == nil {
		return txn.Delete(key)
	}
	return txn.Set(key, s.secrets.seal(key, u.State))
}
