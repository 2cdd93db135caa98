package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// heldSync replaces s's journal sync with one that waits until release
// is closed; entered receives once per sync that started.
func heldSync(t *testing.T, s *Store) (entered <-chan struct{}, release func()) {
	t.Helper()
	in := make(chan struct{}, 16)
	gate := make(chan struct{})
	sync := s.commits.d.sync
	// Set before any write is queued; the stage reads it after a kick.
	s.commits.d.sync = func() error {
		in <- struct{}{}
		<-gate
		return sync()
	}
	var released bool
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)
	return in, release
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition, with a deadline
	}
}

// TestDurabilityHoldsOutcomesAndReads: while a write's journal record is
// not synced, badger already has the write, but neither the writer nor a
// reader hears of it: the write has not returned, and a read that saw it
// waits for the sync (here its context ends first). Once the sync is
// done, both go on.
func TestDurabilityHoldsOutcomesAndReads(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	entered, release := heldSync(t, s)
	id := randMsgID()
	done := make(chan error, 1)
	go func() { done <- s.MarkSeen(context.Background(), id) }()
	<-entered
	waitFor(t, "badger has the write", func() bool {
		err := s.db.View(func(txn *badger.Txn) error {
			_, err := txn.Get(seenKey(id))
			return err
		})
		return err == nil
	})
	select {
	case err := <-done:
		t.Fatalf("the write returned (%v) before its record was durable", err)
	default:
	}
	// A read that sees the write does not answer before it is durable.
	ctx, cancel := context.WithCancel(t.Context())
	var saw bool
	err := s.view(ctx, func(txn *badger.Txn) error {
		_, err := txn.Get(seenKey(id))
		saw = err == nil
		cancel() // the read is over: only the wait for durability is left
		return nil
	})
	if !saw || !errors.Is(err, context.Canceled) {
		t.Fatalf("a read of a write not yet durable: saw %v, returned %v; want it to wait (context.Canceled)", saw, err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("MarkSeen: %v", err)
	}
	if live, err := s.Seen(t.Context(), id); err != nil || !live {
		t.Fatalf("Seen after the sync = %v, %v; want true", live, err)
	}
}

// TestDurabilityFailedSyncStopsWrites: a failed fdatasync may have lost
// what it should have written, whatever a retry would say: the write
// fails, and so does every later write and read.
func TestDurabilityFailedSyncStopsWrites(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	s.commits.d.sync = func() error { return errors.New("EIO") }
	if err := s.MarkSeen(t.Context(), randMsgID()); err == nil {
		t.Fatal("a write whose sync failed succeeded")
	}
	if err := s.MarkSeen(t.Context(), randMsgID()); err == nil {
		t.Fatal("a write after a failed sync succeeded")
	}
	if _, err := s.Seen(t.Context(), randMsgID()); err == nil {
		t.Fatal("a read after a failed sync succeeded")
	}
}

// TestDurabilityWritesDuringSyncShareOne: writes queued while a sync
// runs wait for it (its badger commit overlapped the sync), then go in
// one transaction and share the next sync.
func TestDurabilityWritesDuringSyncShareOne(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	entered, release := heldSync(t, s)
	const n = 20
	done := make(chan error, n+1)
	commits0, _ := s.CommitStats()
	go func() { done <- s.MarkSeen(context.Background(), randMsgID()) }()
	<-entered // the first write's sync is held
	for range n {
		go func() { done <- s.MarkSeen(context.Background(), randMsgID()) }()
	}
	// The committer has taken one of them and waits for the sync; the
	// others are queued behind it.
	waitFor(t, "the writes queued during the sync", func() bool { return len(s.commits.queue) == n-1 })
	release()
	for range n + 1 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if commits, _ := s.CommitStats(); commits-commits0 != 2 {
		t.Fatalf("%d transactions for the first write and %d queued during its sync, want 2", commits-commits0, n)
	}
	if syncs := len(entered); syncs != 1 { // the first was taken above
		t.Fatalf("%d more syncs for %d writes queued during one, want 1", syncs, n)
	}
}
