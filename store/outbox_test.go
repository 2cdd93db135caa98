package store

import (
	"errors"
	"slices"
	"testing"
)

// TestOutbox: entries are queued per recipient in the order they were
// added, whatever their message IDs; RemoveOutbox and FinishOutboxes
// take one out of its queue and leave the others in order.
func TestOutbox(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	conv := DirectConversation(friend)
	ids := make([]MsgID, 5)
	for i := range ids {
		ids[i] = randMsgID()
		m := Message{ID: ids[i], Conversation: conv, From: testKey.ID(), To: friend, Body: []byte("m")}
		e := OutboxEntry{Recipient: friend, Envelope: []byte{byte(i)}}
		if _, err := s.AddOutgoing(ctx, m, e); err != nil {
			t.Fatal(err)
		}
	}
	queue := func() []MsgID {
		t.Helper()
		got, es := queueIDs(t, s, friend, 0, 10)
		for _, e := range es {
			if len(e.Envelope) != 1 || e.MsgID != ids[e.Envelope[0]] {
				t.Fatalf("entry %+v", e)
			}
		}
		return got
	}
	if got := queue(); !slices.Equal(got, ids) {
		t.Fatalf("queue %v, want %v", got, ids)
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
	if got, want := queue(), []MsgID{ids[0], ids[1], ids[3], ids[4]}; !slices.Equal(got, want) {
		t.Fatalf("queue after remove: %v, want %v", got, want)
	}
	if m, err := s.Message(ctx, ids[2]); err != nil || m.Status != StatusPending {
		t.Fatalf("message of a removed entry: %+v, %v; want it kept, pending", m, err)
	}

	m, err := finishOne(t, s, Settle{MsgID: ids[0], Status: StatusSent, Path: PathDirect})
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusSent || m.Path != PathDirect {
		t.Fatalf("finished message: %+v", m)
	}
	if _, err := s.OutboxEntry(ctx, ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry after finishing it: %v", err)
	}
	if _, err := finishOne(t, s, Settle{MsgID: ids[0], Status: StatusSent, Path: PathDirect}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finishing it again: %v", err)
	}
	if got, want := queue(), []MsgID{ids[1], ids[3], ids[4]}; !slices.Equal(got, want) {
		t.Fatalf("queue after finish: %v, want %v", got, want)
	}
}

// finishOne settles one entry with FinishOutboxes and returns its
// message and outcome.
func finishOne(t *testing.T, s *Store, x Settle) (Message, error) {
	t.Helper()
	msgs, errs, err := s.FinishOutboxes(t.Context(), []Settle{x})
	if err != nil {
		return Message{}, err
	}
	if len(msgs) != 1 || len(errs) != 1 {
		t.Fatalf("FinishOutboxes of one entry: %d messages, %d errors", len(msgs), len(errs))
	}
	return msgs[0], errs[0]
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
	if _, err := s.OutboxQueue(ctx, friend, 0, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero limit: %v", err)
	}
	if got := mustPage(t, s, m.Conversation); len(got) != 1 {
		t.Fatalf("%d messages after rejected adds, want 1", len(got))
	}
}
