package store

import (
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// rawSeen reads a seen row straight from badger.
func rawSeen(t *testing.T, s *Store, id MsgID) (expiresAt uint64, ok bool) {
	t.Helper()
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(seenKey(id))
		if err != nil {
			return err
		}
		expiresAt = item.ExpiresAt()
		return nil
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return expiresAt, true
}

// TestSeenExpiry checks the replay cache against the injected clock: a
// seen ID is still a duplicate 1 ms before its expiry, and not at it.
func TestSeenExpiry(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	t0 := c.Now()
	id := randMsgID()
	if err := s.MarkSeen(ctx, id); err != nil {
		t.Fatal(err)
	}
	m := incoming(randUser(), "stored")
	if _, err := s.StoreReceived(ctx, m); err != nil {
		t.Fatal(err)
	}
	expiry := t0.Add(DefaultSeenTTL)

	c.Set(expiry.Add(-time.Millisecond))
	if seen, err := s.Seen(ctx, id); err != nil || !seen {
		t.Fatalf("1 ms before expiry: seen = %v, %v", seen, err)
	}
	if err := s.MarkSeen(ctx, id); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("MarkSeen 1 ms before expiry: %v, want ErrDuplicate", err)
	}
	replay := incoming(randUser(), "replay")
	replay.ID = id
	if _, err := s.StoreReceived(ctx, replay); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("StoreReceived 1 ms before expiry: %v, want ErrDuplicate", err)
	}

	c.Set(expiry)
	if _, ok := rawSeen(t, s, id); !ok {
		t.Fatal("badger dropped the row before the store's clock expired it")
	}
	if seen, err := s.Seen(ctx, id); err != nil || seen {
		t.Fatalf("at expiry: seen = %v, %v", seen, err)
	}
	if seen, _ := s.Seen(ctx, m.ID); seen {
		t.Fatal("stored message still seen at expiry")
	}
	// A stored message stays a duplicate through its message row.
	if _, err := s.StoreReceived(ctx, m); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("StoreReceived of a stored message after expiry: %v", err)
	}
	// An expired ID can be marked again, with a new expiry.
	if err := s.MarkSeen(ctx, id); err != nil {
		t.Fatalf("MarkSeen at expiry: %v", err)
	}
	c.Set(expiry.Add(DefaultSeenTTL - time.Millisecond))
	if seen, _ := s.Seen(ctx, id); !seen {
		t.Fatal("re-marked ID not seen")
	}
}

// TestSeenBadgerTTL uses the real clock and a short TTL, and waits until
// badger itself no longer returns the row.
func TestSeenBadgerTTL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := testOptions(nil)
	o.SeenTTL = time.Second
	s, err := Create(dir, testPass, testKey, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := randMsgID()
	before := time.Now()
	if err := s.MarkSeen(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	exp, ok := rawSeen(t, s, id)
	if !ok {
		t.Fatal("seen row missing right after MarkSeen")
	}
	if lo := before.Add(time.Second).Unix(); exp < uint64(lo) || exp > uint64(lo+2) {
		t.Fatalf("badger ExpiresAt %d, want about %d", exp, lo)
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, ok := rawSeen(t, s, id); !ok {
			break
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("badger still returns the seen row 10 s after its TTL")
		}
	}
	if time.Since(before) < time.Second {
		t.Fatal("badger dropped the row before its TTL")
	}
	if seen, err := s.Seen(t.Context(), id); err != nil || seen {
		t.Fatalf("after badger's TTL: seen = %v, %v", seen, err)
	}
}

func TestBadgerExpiryNeverEarly(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, logical := range []time.Time{now.Add(-time.Hour), now.Add(time.Hour + 300*time.Millisecond), now.Add(24 * time.Hour)} {
		got := badgerExpiry(logical, time.Minute)
		floor := max(logical.Unix(), now.Add(time.Minute).Unix())
		if int64(got) < floor || time.Unix(int64(got), 0).Before(logical) {
			t.Errorf("badgerExpiry(%v) = %d, before %d", logical, got, floor)
		}
	}
}
