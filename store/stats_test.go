package store

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// TestOutboxStats counts the queued entries and finds the oldest queued
// message across recipients, skipping control entries, as entries come
// and go.
func TestOutboxStats(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	stats := func() (int, time.Time) {
		t.Helper()
		n, oldest, err := s.OutboxStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n, oldest
	}
	if n, oldest := stats(); n != 0 || !oldest.IsZero() {
		t.Fatalf("empty outbox: %d entries, oldest %v", n, oldest)
	}

	t0 := time.Now().Truncate(time.Millisecond)
	a, b := randUser(), randUser()
	// a's queue starts with a control entry, which has no message.
	if err := s.AddControl(ctx, OutboxEntry{MsgID: randMsgID(), Recipient: a, Envelope: []byte("request")}); err != nil {
		t.Fatal(err)
	}
	add := func(body string, to protocol.ID, at time.Duration) MsgID {
		t.Helper()
		m, e := outgoingMsg(to, body)
		m.SentAt = t0.Add(at)
		if _, err := s.AddOutgoing(ctx, m, e); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	add("a1", a, 2*time.Second)
	a2 := add("a2", a, 3*time.Second)
	b1 := add("b1", b, time.Second)
	b2 := add("b2", b, 5*time.Second)
	if n, oldest := stats(); n != 5 || !oldest.Equal(t0.Add(time.Second)) {
		t.Fatalf("5 queued: %d entries, oldest %v, want t0+1s (%v)", n, oldest, t0.Add(time.Second))
	}
	if _, _, err := s.FinishOutboxes(ctx, []Settle{{MsgID: b1, Status: StatusDelivered}}); err != nil {
		t.Fatal(err)
	}
	if n, oldest := stats(); n != 4 || !oldest.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("b1 delivered: %d entries, oldest %v, want t0+2s", n, oldest)
	}
	ids, _ := queueIDs(t, s, a, 0, 10)
	if _, _, err := s.FinishOutboxes(ctx, []Settle{{MsgID: ids[1], Status: StatusDelivered}, {MsgID: a2, Status: StatusDelivered}, {MsgID: b2, Status: StatusDelivered}}); err != nil {
		t.Fatal(err)
	}
	if n, oldest := stats(); n != 1 || !oldest.IsZero() {
		t.Fatalf("only the control entry left: %d entries, oldest %v", n, oldest)
	}
}
