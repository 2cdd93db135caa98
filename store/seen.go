package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Seen IDs are the persistent replay cache. A seen row holds its logical
// expiry (the store clock at write time plus SeenTTL) and is not sealed:
// it carries no content, and forging one only makes the node drop a
// message it would otherwise accept, which whoever can write the database
// can do anyway. badger's own TTL (ExpiresAt, wall-clock seconds) is set
// too, rounded up and never earlier than the logical expiry, so badger
// drops the row itself but never before the store's clock would.

// seenLive reports whether id has a seen row that has not expired at now.
func seenLive(txn *badger.Txn, id MsgID, now time.Time) (bool, error) {
	item, err := txn.Get(seenKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: reading seen row: %w", err)
	}
	var expiry time.Time
	err = item.Value(func(v []byte) error {
		if len(v) != timeSize {
			return corrupt(rowSeen, "value size")
		}
		expiry = getTime(v)
		return nil
	})
	if err != nil {
		return false, err
	}
	return now.Before(expiry), nil
}

// seenEntry is the seen row for id written at now.
func (s *Store) seenEntry(id MsgID, now time.Time) *badger.Entry {
	expiry := now.Add(s.opts.SeenTTL)
	v := make([]byte, timeSize)
	putTime(v, expiry)
	e := badger.NewEntry(seenKey(id), v)
	e.ExpiresAt = badgerExpiry(expiry, s.opts.SeenTTL)
	return e
}

// badgerExpiry is the later of the logical expiry and the wall clock plus
// ttl, rounded up to whole unix seconds.
func badgerExpiry(logical time.Time, ttl time.Duration) uint64 {
	e := time.Now().Add(ttl)
	if logical.After(e) {
		e = logical
	}
	secs := e.Unix()
	if e.Nanosecond() > 0 {
		secs++
	}
	if secs < 1 {
		secs = 1
	}
	return uint64(secs)
}

// Seen reports whether id is in the replay cache and not expired by the
// store's clock.
func (s *Store) Seen(ctx context.Context, id MsgID) (bool, error) {
	var live bool
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		live, err = seenLive(txn, id, s.now())
		return err
	})
	return live, err
}

// MarkSeen records id in the replay cache, for envelopes the node accepts
// without storing a message (receipts, control messages). An ID already
// seen is ErrDuplicate. StoreReceived marks its messages itself.
func (s *Store) MarkSeen(ctx context.Context, id MsgID) error {
	return s.MarkSeenWith(ctx, id, nil)
}

// MarkSeenWith is MarkSeen that also writes u (when not nil), the session
// state after opening the message, in the same transaction.
func (s *Store) MarkSeenWith(ctx context.Context, id MsgID, u *SessionUpdate) error {
	if id.IsZero() {
		return fmt.Errorf("%w: zero message ID", ErrInvalid)
	}
	return s.update(ctx, func(txn *badger.Txn) error {
		now := s.now()
		live, err := seenLive(txn, id, now)
		if err != nil {
			return err
		}
		if live {
			return fmt.Errorf("%w: %s", ErrDuplicate, id)
		}
		if err := s.putSessionsTxn(txn, u); err != nil {
			return err
		}
		return s.setEntry(txn, s.seenEntry(id, now))
	})
}
