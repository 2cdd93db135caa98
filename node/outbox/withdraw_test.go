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

// remover deletes id's entry from s, as the store's DeleteMessage does;
// store.ErrNotFound if it was settled already.
func (s *memStore) remover(id store.MsgID) func(context.Context) error {
	return func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for to, q := range s.queue {
			if i := slices.IndexFunc(q, func(e store.OutboxEntry) bool { return e.MsgID == id }); i >= 0 {
				s.queue[to] = slices.Delete(q, i, i+1)
				return nil
			}
		}
		return store.ErrNotFound
	}
}

// TestWithdrawQueued: an entry withdrawn while it waits in the queue
// never reaches the wire; the others go in order.
func TestWithdrawQueued(t *testing.T) {
	to := protocol.ID{3}
	st := newMemStore()
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	o := serve(t, st, r, nil)
	o.Hold(to)
	es := st.add(to, 4)
	o.Notify(to)
	onWire, err := o.Withdraw(t.Context(), to, es[1].MsgID, st.remover(es[1].MsgID))
	if err != nil || onWire {
		t.Fatalf("Withdraw of a queued entry = %v, %v; want not on the wire", onWire, err)
	}
	o.Rush(to)
	waitDrained(t, st, to)
	var got []store.MsgID
	for _, s := range r.carried() {
		got = append(got, s...)
	}
	if want := ids([]store.OutboxEntry{es[0], es[2], es[3]}); !slices.Equal(got, want) {
		t.Fatalf("carried %x, want %x", got, want)
	}
}

// TestWithdrawInFlight: an entry already written and not acknowledged is
// reported on the wire; withdrawing it removes it all the same, and a
// stream that breaks does not send it again.
func TestWithdrawInFlight(t *testing.T) {
	to := protocol.ID{4}
	st := newMemStore()
	es := st.add(to, 3)
	// The first stream takes every frame and answers none, then hangs up
	// once the test says so; the second acknowledges everything.
	hangUp := make(chan struct{})
	silent := func(n int, _ store.MsgID) ([]protocol.Ack, bool) {
		if n < len(es)-1 {
			return nil, false
		}
		<-hangUp
		return nil, true
	}
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){silent, ackAll}}
	o := serve(t, st, r, nil)
	deadline := time.Now().Add(10 * time.Second)
	for c := r.carried(); len(c) == 0 || len(c[0]) < len(es); c = r.carried() {
		if time.Now().After(deadline) {
			t.Fatal("the first stream never carried every entry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	onWire, err := o.Withdraw(t.Context(), to, es[1].MsgID, st.remover(es[1].MsgID))
	if err != nil || !onWire {
		t.Fatalf("Withdraw of an entry in flight = %v, %v; want on the wire", onWire, err)
	}
	close(hangUp)
	waitDrained(t, st, to)
	c := r.carried()
	if len(c) < 2 || !slices.Equal(c[1], ids([]store.OutboxEntry{es[0], es[2]})) {
		t.Fatalf("streams carried %x; want the second to resend all but the withdrawn entry", c)
	}
}

// TestWithdrawRace withdraws entries while the courier sends: an entry
// that Withdraw took out of the queue (not settled before) and reports
// off the wire never reaches the receiver.
func TestWithdrawRace(t *testing.T) {
	const total = 240 // memStore.add gives distinct IDs to at most 255
	to := protocol.ID{5}
	st := newMemStore()
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	o := serve(t, st, r, nil)
	es := st.add(to, total)
	var (
		mu  sync.Mutex
		off []store.MsgID
		wg  sync.WaitGroup
	)
	o.Notify(to)
	for i := 0; i < total; i += 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			onWire, err := o.Withdraw(t.Context(), to, es[i].MsgID, st.remover(es[i].MsgID))
			switch {
			case errors.Is(err, store.ErrNotFound):
				return // acknowledged before it could be withdrawn
			case err != nil:
				t.Error(err)
			case !onWire:
				mu.Lock()
				off = append(off, es[i].MsgID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	waitDrained(t, st, to) // every frame sent was acknowledged, so recorded
	carried := make(map[store.MsgID]bool)
	for _, s := range r.carried() {
		for _, id := range s {
			carried[id] = true
		}
	}
	for _, id := range off {
		if carried[id] {
			t.Errorf("entry %x reported off the wire reached the receiver", id)
		}
	}
	for i, e := range es {
		if i%3 != 0 && !carried[e.MsgID] {
			t.Errorf("entry %d was never sent", i)
		}
	}
}
