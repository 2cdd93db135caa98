package store

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestOutbox(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	t0 := c.Now()
	friend := randUser()
	conv := DirectConversation(friend)
	offsets := []time.Duration{3, 1, 2, 1, 5}
	ids := make([]MsgID, len(offsets))
	for i, off := range offsets {
		ids[i] = randMsgID()
		m := Message{ID: ids[i], Conversation: conv, From: testKey.ID(), To: friend, Body: []byte("m")}
		e := OutboxEntry{Recipient: friend, Envelope: []byte{byte(i)}, NextAttempt: t0.Add(off * time.Second)}
		if _, err := s.AddOutgoing(ctx, m, e); err != nil {
			t.Fatal(err)
		}
	}
	due := func(at time.Duration, limit int) []MsgID {
		t.Helper()
		es, err := s.DueOutbox(ctx, t0.Add(at*time.Second), limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []MsgID
		for _, e := range es {
			if e.Recipient != friend || len(e.Envelope) != 1 {
				t.Fatalf("entry %+v", e)
			}
			out = append(out, e.MsgID)
		}
		return out
	}
	// ids[1] and ids[3] are due at the same time: message ID order.
	first, second := ids[1], ids[3]
	if string(first[:]) > string(second[:]) {
		first, second = second, first
	}
	if got := due(0, 10); len(got) != 0 {
		t.Fatalf("due at t0: %v", got)
	}
	if got, want := due(2, 10), []MsgID{first, second, ids[2]}; !slices.Equal(got, want) {
		t.Fatalf("due at t0+2s: %v, want %v", got, want)
	}
	if got, want := due(100, 2), []MsgID{first, second}; !slices.Equal(got, want) {
		t.Fatalf("due with limit 2: %v, want %v", got, want)
	}

	e, err := s.RescheduleOutbox(ctx, first, t0.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if e.Attempts != 1 || !e.NextAttempt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("rescheduled entry: %+v", e)
	}
	if got, want := due(2, 10), []MsgID{second, ids[2]}; !slices.Equal(got, want) {
		t.Fatalf("due after reschedule: %v, want %v", got, want)
	}
	if e, err = s.RescheduleOutbox(ctx, first, t0.Add(11*time.Second)); err != nil || e.Attempts != 2 {
		t.Fatalf("second reschedule: %+v, %v", e, err)
	}

	if err := s.RemoveOutbox(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveOutbox(ctx, ids[2]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second RemoveOutbox: %v", err)
	}
	if _, err := s.OutboxEntry(ctx, ids[2]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OutboxEntry after remove: %v", err)
	}
	if got, want := due(100, 10), []MsgID{second, ids[0], ids[4], first}; !slices.Equal(got, want) {
		t.Fatalf("due after remove: %v, want %v", got, want)
	}

	m, err := s.FinishOutbox(ctx, ids[0], StatusSent, PathDirect, "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusSent || m.Path != PathDirect {
		t.Fatalf("FinishOutbox message: %+v", m)
	}
	if _, err := s.OutboxEntry(ctx, ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry after FinishOutbox: %v", err)
	}
	if _, err := s.FinishOutbox(ctx, ids[0], StatusSent, PathDirect, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second FinishOutbox: %v", err)
	}
	if got, want := due(100, 10), []MsgID{second, ids[4], first}; !slices.Equal(got, want) {
		t.Fatalf("due after finish: %v, want %v", got, want)
	}
}

func TestAddOutgoingRejects(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	m := Message{ID: randMsgID(), Conversation: DirectConversation(friend), From: testKey.ID(), To: friend, Body: []byte("m")}
	e := OutboxEntry{Recipient: friend, Envelope: []byte("env")}
	if _, err := s.AddOutgoing(ctx, m, e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddOutgoing(ctx, m, e); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("same ID twice: %v", err)
	}
	m.ID = randMsgID()
	other := e
	other.MsgID = randMsgID()
	if _, err := s.AddOutgoing(ctx, m, other); !errors.Is(err, ErrInvalid) {
		t.Fatalf("entry for another message: %v", err)
	}
	if _, err := s.AddOutgoing(ctx, m, OutboxEntry{Recipient: friend}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no envelope: %v", err)
	}
	in := m
	in.Direction = In
	if _, err := s.AddOutgoing(ctx, in, e); !errors.Is(err, ErrInvalid) {
		t.Fatalf("incoming direction: %v", err)
	}
	if _, err := s.DueOutbox(ctx, time.Now(), 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero limit: %v", err)
	}
	if got := mustPage(t, s, m.Conversation); len(got) != 1 {
		t.Fatalf("%d messages after rejected adds, want 1", len(got))
	}
}
