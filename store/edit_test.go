package store

import (
	"errors"
	"slices"
	"testing"
)

// TestRequeueFailed: a failed message goes back at the end of its
// recipient's queue, pending, with its error cleared; anything else is
// refused and changes nothing.
func TestRequeueFailed(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	conv := DirectConversation(friend)
	ids := make([]MsgID, 3)
	for i := range ids {
		ids[i] = randMsgID()
		m := Message{ID: ids[i], Conversation: conv, From: testKey.ID(), To: friend, Body: []byte("m")}
		if _, err := s.AddOutgoing(ctx, m, OutboxEntry{Recipient: friend, Envelope: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := finishOne(t, s, Settle{MsgID: ids[0], Status: StatusFailed, Error: "refused"}); err != nil {
		t.Fatal(err)
	}
	// Still queued, or not failed: refused.
	if _, err := s.RequeueFailed(ctx, OutboxEntry{MsgID: ids[1], Recipient: friend, Envelope: []byte{9}}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("RequeueFailed of a pending message: %v, want ErrConflict", err)
	}
	if _, err := s.RequeueFailed(ctx, OutboxEntry{MsgID: randMsgID(), Recipient: friend, Envelope: []byte{9}}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RequeueFailed of an unknown message: %v, want ErrNotFound", err)
	}
	in := incoming(friend, "hi")
	if _, err := s.StoreReceived(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequeueFailed(ctx, OutboxEntry{MsgID: in.ID, Recipient: friend, Envelope: []byte{9}}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("RequeueFailed of an incoming message: %v, want ErrConflict", err)
	}
	if _, err := s.RequeueFailed(ctx, OutboxEntry{MsgID: ids[0], Recipient: randUser(), Envelope: []byte{9}}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("RequeueFailed to another recipient: %v, want ErrInvalid", err)
	}

	m, err := s.RequeueFailed(ctx, OutboxEntry{MsgID: ids[0], Recipient: friend, Envelope: []byte{7}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusPending || m.Error != "" {
		t.Fatalf("requeued message: %+v", m)
	}
	got, es := queueIDs(t, s, friend, 0, 10)
	if want := []MsgID{ids[1], ids[2], ids[0]}; !slices.Equal(got, want) {
		t.Fatalf("queue %v, want %v (the retry last)", got, want)
	}
	if !slices.Equal(es[2].Envelope, []byte{7}) {
		t.Fatalf("requeued entry holds %v", es[2].Envelope)
	}
	if _, err := s.RequeueFailed(ctx, OutboxEntry{MsgID: ids[0], Recipient: friend, Envelope: []byte{8}}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("second RequeueFailed: %v, want ErrConflict", err)
	}
}

// TestDeleteMessage: a deleted message leaves its conversation, its
// queue and the conversation's summary; its ID stays seen.
func TestDeleteMessage(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	conv := DirectConversation(friend)
	in := incoming(friend, "first")
	if _, err := s.StoreReceived(ctx, in); err != nil {
		t.Fatal(err)
	}
	out := Message{ID: randMsgID(), Conversation: conv, From: testKey.ID(), To: friend, Body: []byte("second")}
	if _, err := s.AddOutgoing(ctx, out, OutboxEntry{Recipient: friend, Envelope: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Conversation(ctx, conv); c.LastMessage != out.ID {
		t.Fatalf("last message %s, want the outgoing one", c.LastMessage)
	}

	m, err := s.DeleteMessage(ctx, out.ID)
	if err != nil || m.ID != out.ID || string(m.Body) != "second" {
		t.Fatalf("DeleteMessage = %+v, %v", m, err)
	}
	if _, err := s.Message(ctx, out.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Message after delete: %v", err)
	}
	if _, err := s.OutboxEntry(ctx, out.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("outbox entry after delete: %v", err)
	}
	if ids, _ := queueIDs(t, s, friend, 0, 10); len(ids) != 0 {
		t.Fatalf("queue after delete: %v", ids)
	}
	c, err := s.Conversation(ctx, conv)
	if err != nil || c.LastMessage != in.ID || c.LastPreview != "first" {
		t.Fatalf("conversation after delete: %+v, %v; want the incoming message last", c, err)
	}
	if _, err := s.DeleteMessage(ctx, out.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteMessage: %v", err)
	}

	if _, err := s.DeleteMessage(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Conversation(ctx, conv); err != nil || !c.LastMessage.IsZero() || c.LastPreview != "" {
		t.Fatalf("empty conversation: %+v, %v", c, err)
	}
	ms, _, err := s.Messages(ctx, conv, "", 10)
	if err != nil || len(ms) != 0 {
		t.Fatalf("history after deleting both: %d, %v", len(ms), err)
	}
	// A copy of the deleted message that arrives again is a duplicate.
	if _, err := s.StoreReceived(ctx, in); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("StoreReceived of a deleted message: %v, want ErrDuplicate", err)
	}
}
