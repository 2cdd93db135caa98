package outbox

import (
	"context"
	"errors"
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
	o, err := New(Config{
		Store: st, Open: r.open, Frame: frame,
		RetryMin: 5 * time.Millisecond, RetryMax: time.Minute, AckTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- o.Serve(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, errDisk) {
			t.Fatalf("Serve = %v, want the store's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after the store failed to settle")
	}
	r.wg.Wait()
	if n := mem.queued(to); n != 5 {
		t.Errorf("%d entries queued after the failed settle, want all 5", n)
	}
}
