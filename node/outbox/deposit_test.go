package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// mailbox is a fake Config.Deposit: it records what it holds, in order,
// and refuses while refuse says so; as a relay's pipeline, a refusal ends
// the batch (what follows it is not held).
type fakeMailbox struct {
	mu      sync.Mutex
	held    []store.MsgID
	refuse  func(n int) error // n: deposits asked so far
	asked   int
	batches []int // the size of each batch asked
}

func (m *fakeMailbox) deposit(_ context.Context, _ protocol.ID, ds []*protocol.Delivery) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches = append(m.batches, len(ds))
	for i, d := range ds {
		m.asked++
		if m.refuse != nil {
			if err := m.refuse(m.asked); err != nil {
				return i, err
			}
		}
		m.held = append(m.held, store.MsgID(d.Envelope))
	}
	return len(ds), nil
}

func (m *fakeMailbox) sizes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.batches)
}

func (m *fakeMailbox) holding() []store.MsgID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.held)
}

// An unreachable recipient's queue goes to its mailbox in outbox order,
// each entry once, settled sent with path mailbox; a refused deposit
// keeps it and what follows queued, in order, for the next attempt; once
// the recipient answers, new entries go directly and nothing deposited
// goes again.
func TestDepositWhenUnreachable(t *testing.T) {
	to := protocol.ID{4}
	st := newMemStore()
	var reachable atomic.Bool
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	mb := &fakeMailbox{refuse: func(n int) error {
		if n == 4 { // the fourth deposit is refused once (a full mailbox)
			return errors.New("mailbox full")
		}
		return nil
	}}
	cfg := testConfig(st, r)
	cfg.Open = func(ctx context.Context, to protocol.ID) (network.Stream, error) {
		if !reachable.Load() {
			return nil, fmt.Errorf("no device answers")
		}
		return r.open(ctx, to)
	}
	cfg.Deposit = mb.deposit
	o, _, _ := run(t, cfg, r)

	es := st.add(to, 10)
	o.Rush(to)
	waitDrained(t, st, to)
	if got := mb.holding(); !slices.Equal(got, ids(es)) {
		t.Fatalf("mailbox holds %x, want the 10 entries once each in order", got)
	}
	// One batch of 10 (held 3, then refused), then one of the 7 left.
	if b := mb.sizes(); len(b) < 2 || b[0] != 10 || b[1] != 7 {
		t.Errorf("batches asked %v, want [10 7]", b)
	}
	for _, e := range es {
		if s, p := st.status(e.MsgID), st.path(e.MsgID); s != store.StatusSent || p != store.PathMailbox {
			t.Errorf("entry %d settled %q by %q, want sent by mailbox", e.Seq, s, p)
		}
	}
	// Sent while the courier backs off: deposited at once, not after it.
	more := st.add(to, 3)
	o.Notify(to)
	waitDrained(t, st, to)
	if got := mb.holding(); !slices.Equal(got, ids(append(es, more...))) {
		t.Fatalf("mailbox holds %x, want all 13 in order", got)
	}

	// The recipient comes online; what is sent after that goes directly.
	// (Entries queued before the Rush may still go to the mailbox, with
	// the backlog it is taking.)
	reachable.Store(true)
	o.Rush(to)
	direct := st.add(to, 2)
	o.Notify(to)
	waitDrained(t, st, to)
	for _, e := range direct {
		if s := st.status(e.MsgID); s != store.StatusDelivered {
			t.Errorf("entry %d settled %q once reachable, want delivered", e.Seq, s)
		}
	}
	if c := r.carried(); len(c) != 1 || !slices.Equal(c[0], ids(direct)) {
		t.Errorf("streams carried %x, want only the 2 new entries", c)
	}
	if got := o.Stats(); got.Deposited != 13 || got.Sent != 2 {
		t.Errorf("Stats = %+v, want 13 deposited and 2 sent", got)
	}
}

// A Rush while the backlog goes to the mailbox stops it between windows:
// the rest goes on the dial that follows, directly, each entry once and in
// order.
func TestRushStopsDeposit(t *testing.T) {
	to := protocol.ID{7}
	st := newMemStore()
	var reachable atomic.Bool
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	cfg := testConfig(st, r)
	cfg.Window = 4
	cfg.Open = func(ctx context.Context, to protocol.ID) (network.Stream, error) {
		if !reachable.Load() {
			return nil, fmt.Errorf("no device answers")
		}
		return r.open(ctx, to)
	}
	var o *Outbox
	mb := &fakeMailbox{}
	cfg.Deposit = func(ctx context.Context, to protocol.ID, ds []*protocol.Delivery) (int, error) {
		n, err := mb.deposit(ctx, to, ds)
		if len(mb.sizes()) == 1 { // the recipient answers while the relay holds the first window
			reachable.Store(true)
			o.Rush(to)
		}
		return n, err
	}
	o, _, _ = run(t, cfg, r)
	es := st.add(to, 10)
	o.Notify(to)
	waitDrained(t, st, to)
	if got := mb.holding(); !slices.Equal(got, ids(es[:4])) {
		t.Errorf("mailbox holds %x, want only the first window, %x", got, ids(es[:4]))
	}
	var carried []store.MsgID
	for _, c := range r.carried() {
		carried = append(carried, c...)
	}
	if !slices.Equal(carried, ids(es[4:])) {
		t.Errorf("streams carried %x, want the 6 after the first window, in order", carried)
	}
	for i, e := range es {
		want := store.StatusDelivered
		if i < 4 {
			want = store.StatusSent
		}
		if s := st.status(e.MsgID); s != want {
			t.Errorf("entry %d settled %q, want %q", e.Seq, s, want)
		}
	}
	if got := o.Stats(); got.Deposited != 4 || got.Sent != 6 {
		t.Errorf("Stats = %+v, want 4 deposited and 6 sent", got)
	}
}

// A recipient without a mailbox keeps its queue: nothing is settled.
func TestNoMailboxKeepsQueue(t *testing.T) {
	to := protocol.ID{5}
	st := newMemStore()
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	var asked atomic.Int32
	cfg := testConfig(st, r)
	cfg.Open = func(context.Context, protocol.ID) (network.Stream, error) { return nil, errors.New("unreachable") }
	cfg.Deposit = func(context.Context, protocol.ID, []*protocol.Delivery) (int, error) {
		asked.Add(1)
		return 0, fmt.Errorf("%w: none", ErrNoMailbox)
	}
	o, _, _ := run(t, cfg, r)
	es := st.add(to, 3)
	o.Rush(to)
	deadline := time.Now().Add(10 * time.Second)
	for asked.Load() < 2 { // two dials, each followed by a deposit attempt
		if time.Now().After(deadline) {
			t.Fatal("no deposit attempted")
		}
		time.Sleep(time.Millisecond)
	}
	if n := st.queued(to); n != 3 {
		t.Fatalf("%d queued, want 3", n)
	}
	for _, e := range es {
		if s := st.status(e.MsgID); s == store.StatusSent {
			t.Errorf("entry %d settled sent without a mailbox", e.Seq)
		}
	}
}

// Entries that do not parse are settled failed in their place in the
// order, with the cursor past them, when a batch is held only in part:
// those before the first entry not held are settled (held ones sent,
// unparsable ones failed), those after it wait for the next attempt,
// and in the end every parsable entry is held once, in order.
func TestDepositPartialWithUnparsable(t *testing.T) {
	to := protocol.ID{6}
	st := newMemStore()
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	// The third deposit (entry 4: entry 3 does not parse) is refused once.
	mb := &fakeMailbox{refuse: func(n int) error {
		if n == 3 {
			return errors.New("rate limited")
		}
		return nil
	}}
	cfg := testConfig(st, r)
	cfg.Open = func(context.Context, protocol.ID) (network.Stream, error) { return nil, errors.New("unreachable") }
	bad := map[uint64]bool{3: true, 6: true}
	var framed sync.Map // seq → times framed
	cfg.Frame = func(e store.OutboxEntry) (*protocol.Delivery, error) {
		n, _ := framed.LoadOrStore(e.Seq, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if bad[e.Seq] {
			return nil, errors.New("corrupt entry")
		}
		return frame(e)
	}
	cfg.Deposit = mb.deposit
	o, _, _ := run(t, cfg, r)
	es := st.add(to, 8)
	o.Rush(to)
	waitDrained(t, st, to)
	var want []store.MsgID
	for _, e := range es {
		if !bad[e.Seq] {
			want = append(want, e.MsgID)
		}
	}
	if got := mb.holding(); !slices.Equal(got, want) {
		t.Fatalf("mailbox holds %x, want the 6 parsable entries once each in order", got)
	}
	for _, e := range es {
		wantStatus, wantPath := store.StatusSent, store.PathMailbox
		if bad[e.Seq] {
			wantStatus, wantPath = store.StatusFailed, ""
		}
		if s, p := st.status(e.MsgID), st.path(e.MsgID); s != wantStatus || p != wantPath {
			t.Errorf("entry %d settled %q by %q, want %q by %q", e.Seq, s, p, wantStatus, wantPath)
		}
	}
	// Entry 3 was settled in the first round (before the refusal), so it
	// was framed once; entry 6 came after the refusal: framed in both.
	for seq, want := range map[uint64]int32{3: 1, 6: 2} {
		if n, _ := framed.Load(seq); n.(*atomic.Int32).Load() != want {
			t.Errorf("entry %d framed %d times, want %d", seq, n.(*atomic.Int32).Load(), want)
		}
	}
	if got := o.Stats().Deposited; got != 6 {
		t.Errorf("Deposited = %d, want 6", got)
	}
}
