package outbox

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// failingStore is a memStore whose FinishOutboxes fails, as a broken disk
// would.
type failingStore struct {
	*memStore
	err error
}

func (s *failingStore) FinishOutboxes(context.Context, []store.Settle) ([]store.Message, []error, error) {
	return nil, nil, s.err
}

// TestSettleFailureStopsServe: when the store cannot record what the
// recipient acknowledged, Serve returns the error (the node stops and
// says why) instead of delivering on; the entries stay queued.
func TestSettleFailureStopsServe(t *testing.T) {
	to := protocol.ID{3}
	mem := newMemStore()
	mem.add(to, 5)
	errDisk := errors.New("disk on fire")
	st := &failingStore{memStore: mem, err: errDisk}
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	_, stop, ended := run(t, testConfig(st, r), r)
	select {
	case <-ended:
		if err := stop(); !errors.Is(err, errDisk) {
			t.Fatalf("Serve = %v, want the store's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after the store failed to settle")
	}
	if n := mem.queued(to); n != 5 {
		t.Errorf("%d entries queued after the failed settle, want all 5", n)
	}
}

// TestNotAllowedHolds: while Allowed says no, nothing is sent and the
// queue stays; once it says yes, a Rush sends everything, in order.
func TestNotAllowedHolds(t *testing.T) {
	to := protocol.ID{4}
	st := newMemStore()
	es := st.add(to, 3)
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	var mu sync.Mutex
	allowed, asked := false, 0
	cfg := testConfig(st, r)
	cfg.Allowed = func(protocol.ID) bool {
		mu.Lock()
		defer mu.Unlock()
		asked++
		return allowed
	}
	o, _, _ := run(t, cfg, r)
	// The courier runs (Serve's scan) and asks Allowed, again after a
	// Rush: held each time.
	o.Rush(to)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := asked
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Allowed asked %d times in 10 s", n)
		}
		time.Sleep(time.Millisecond) // polling, not synchronisation
	}
	if n := len(r.carried()); n != 0 {
		t.Fatalf("%d streams opened for a recipient not allowed", n)
	}
	if n := st.queued(to); n != 3 {
		t.Fatalf("%d queued, want 3", n)
	}
	mu.Lock()
	allowed = true
	mu.Unlock()
	o.Rush(to)
	waitDrained(t, st, to)
	if c := r.carried(); len(c) != 1 || !slices.Equal(c[0], ids(es)) {
		t.Fatalf("carried %x, want the 3 entries in order on one stream", c)
	}
}
