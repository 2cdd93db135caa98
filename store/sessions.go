package store

import (
	"context"
	"encoding/binary"
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
// nil State deletes it. A non-zero Version orders concurrent writers: the
// update is skipped (not an error) when the stored state's version is not
// lower, so a state sealed earlier but committed later never overwrites a
// newer one. Version 0 writes unconditionally (and stores version 0).
type SessionUpdate struct {
	Peer    protocol.ID
	State   []byte
	Version uint64
}

// Sessions returns peer's stored session state, or ErrNotFound.
func (s *Store) Sessions(ctx context.Context, peer protocol.ID) ([]byte, error) {
	b, _, err := s.SessionsVersion(ctx, peer)
	return b, err
}

// SessionsVersion returns peer's stored session state and its version, or
// ErrNotFound.
func (s *Store) SessionsVersion(ctx context.Context, peer protocol.ID) ([]byte, uint64, error) {
	var (
		b   []byte
		ver uint64
	)
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		b, ver, err = s.getSessions(txn, peer)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: sessions with %s", ErrNotFound, peer)
	}
	return b, ver, err
}

// getSessions reads a sessions row: u64 version ‖ state, sealed.
func (s *Store) getSessions(txn *badger.Txn, peer protocol.ID) ([]byte, uint64, error) {
	plain, err := s.getSealed(txn, s.secrets, rowSessions, sessionsKey(peer))
	if err != nil {
		return nil, 0, err
	}
	if len(plain) < 8 {
		return nil, 0, corrupt(rowSessions, "too short")
	}
	return plain[8:], getUint64(plain), nil
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
	if u.Version != 0 {
		_, stored, err := s.getSessions(txn, u.Peer)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		case stored >= u.Version:
			return nil // a newer state is stored already
		}
	}
	if u.State == nil {
		return s.del(txn, key)
	}
	plain := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(u.State)), u.Version)
	plain = append(plain, u.State...)
	defer clear(plain)
	return s.set(txn, key, s.secrets.seal(key, plain))
}
