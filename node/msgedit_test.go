package node

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// failQueued marks everything a has queued for to failed, as a refusal
// or a removal would.
func failQueued(t *testing.T, a *Node, to protocol.ID) {
	t.Helper()
	if err := unlockedOf(t, a).outbox.Drop(context.Background(), to, "test failure"); err != nil {
		t.Fatal(err)
	}
}

// messageOf is n's stored copy of message id.
func messageOf(t *testing.T, n *Node, id protocol.MsgID) store.Message {
	t.Helper()
	m, err := unlockedOf(t, n).st.Message(context.Background(), id)
	if err != nil {
		t.Fatalf("Message %s: %v", id, err)
	}
	return m
}

// TestRetryExactlyOnce: a failed message that did reach the friend (its
// envelope got there another way before the failure was recorded) is
// sent again with the same msg_id: the friend's node answers replay, the
// sender marks it delivered, and the friend has it once. A retried
// message goes after what was queued before the retry.
func TestRetryExactlyOnce(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	ua := unlockedOf(t, a)
	ua.outbox.Hold(mb.UserID)
	m1, err := a.Send(ctx, mb.UserID, "one")
	if err != nil {
		t.Fatal(err)
	}
	es := queuedFor(t, a, mb.UserID)
	if len(es) != 1 || es[0].MsgID != m1.ID {
		t.Fatalf("queue: %+v", es)
	}
	// The envelope reaches B, but A records a failure.
	hs := newAttacker(t, b).open(t)
	var buf bytes.Buffer
	d := &protocol.Delivery{Envelope: es[0].Envelope}
	if es[0].Session {
		d = &protocol.Delivery{Session: es[0].Envelope}
	}
	if err := protocol.WriteDelivery(&buf, d); err != nil {
		t.Fatal(err)
	}
	hs.write(buf.Bytes())
	hs.expectAck(m1.ID, protocol.AckOK)
	hs.finish()
	failQueued(t, a, mb.UserID)
	if got := messageOf(t, a, m1.ID); got.Status != store.StatusFailed {
		t.Fatalf("m1 is %s, want failed", got.Status)
	}
	m2, err := a.Send(ctx, mb.UserID, "two")
	if err != nil {
		t.Fatal(err)
	}
	evA := watch(t, a)
	up, err := a.RetryMessage(ctx, m1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if up.ID != m1.ID || up.Status != store.StatusPending || up.Error != "" {
		t.Fatalf("RetryMessage = %+v", up)
	}
	if e := evA.waitEvent(t, 5*time.Second, "message_status", isType(EventMessageStatus)); e.Message.ID != m1.ID || e.Message.Status != store.StatusPending {
		t.Fatalf("status event %+v", e.Message)
	}
	if _, err := a.RetryMessage(ctx, m1.ID); !isErr(err, ErrNotRetryable) {
		t.Fatalf("RetryMessage of a message on its way: %v, want ErrNotRetryable", err)
	}
	// The retry rushed the courier. The retried copy went at the end of
	// the queue, after m2: the courier settles in queue order, so m2 turns
	// delivered first.
	isDelivered := func(e Event) bool {
		return e.Type == EventMessageStatus && e.Message.Status == store.StatusDelivered
	}
	waitFor(t, 10*time.Second, "both delivered", func() bool { return len(evA.matching(isDelivered)) == 2 })
	if ds := evA.matching(isDelivered); ds[0].Message.ID != m2.ID || ds[1].Message.ID != m1.ID {
		t.Fatalf("delivered in the order %s, %s; want m2 (queued first), then the retried m1", ds[0].Message.ID, ds[1].Message.ID)
	}
	checkExactlyOnce(t, convHistory(t, b, ma.UserID), []string{"one", "two"})
	if _, err := a.RetryMessage(ctx, m1.ID); !isErr(err, ErrNotRetryable) {
		t.Fatalf("RetryMessage of a delivered message: %v, want ErrNotRetryable", err)
	}
}

// TestRetryDelivers: a failed message that never arrived is delivered
// once by a retry, after the messages queued before it; refusals.
func TestRetryDelivers(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	ua := unlockedOf(t, a)
	ua.outbox.Hold(mb.UserID)
	m1, err := a.Send(ctx, mb.UserID, "first, failed")
	if err != nil {
		t.Fatal(err)
	}
	failQueued(t, a, mb.UserID)
	if _, err := a.Send(ctx, mb.UserID, "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RetryMessage(ctx, m1.ID); err != nil {
		t.Fatal(err)
	}
	ua.outbox.Rush(mb.UserID)
	waitFor(t, 10*time.Second, "both arrive", func() bool { return len(convHistory(t, b, ma.UserID)) == 2 })
	checkExactlyOnce(t, convHistory(t, b, ma.UserID), []string{"second", "first, failed"})
	waitFor(t, 10*time.Second, "m1 delivered", func() bool { return messageOf(t, a, m1.ID).Status == store.StatusDelivered })

	if _, err := a.RetryMessage(ctx, protocol.MsgID{1}); !isErr(err, ErrNotFound) {
		t.Fatalf("RetryMessage of an unknown message: %v, want ErrNotFound", err)
	}
	in := convHistory(t, b, ma.UserID)[0]
	if _, err := b.RetryMessage(ctx, in.ID); !isErr(err, ErrNotRetryable) {
		t.Fatalf("RetryMessage of a received message: %v, want ErrNotRetryable", err)
	}
}

// TestDeleteMessage: a queued message deleted before it left never
// reaches the friend; the others go in order; a received message is
// deleted locally and a copy of it is not stored again; the conversation
// list follows; message_deleted tells other tabs.
func TestDeleteMessage(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	ua := unlockedOf(t, a)
	ua.outbox.Hold(mb.UserID)
	var ids []protocol.MsgID
	for _, text := range []string{"keep 1", "delete me", "keep 2"} {
		m, err := a.Send(ctx, mb.UserID, text)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	evA := watch(t, a)
	if err := a.DeleteMessage(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if e := evA.waitEvent(t, 5*time.Second, "message_deleted", isType(EventMessageDeleted)); e.Message.ID != ids[1] || e.Message.Conversation != store.DirectConversation(mb.UserID) {
		t.Fatalf("message_deleted event: %+v", e.Message)
	}
	if es := queuedFor(t, a, mb.UserID); len(es) != 2 || es[0].MsgID != ids[0] || es[1].MsgID != ids[2] {
		t.Fatalf("queue after delete: %+v", es)
	}
	if err := a.DeleteMessage(ctx, ids[1]); !isErr(err, ErrNotFound) {
		t.Fatalf("second DeleteMessage: %v, want ErrNotFound", err)
	}
	ua.outbox.Rush(mb.UserID)
	waitFor(t, 10*time.Second, "the kept messages arrive", func() bool { return len(convHistory(t, b, ma.UserID)) == 2 })
	checkExactlyOnce(t, convHistory(t, b, ma.UserID), []string{"keep 1", "keep 2"})
	checkExactlyOnce(t, convHistory(t, a, mb.UserID), []string{"keep 1", "keep 2"})

	// B deletes the newest message it received: the conversation shows
	// the one before.
	got := convHistory(t, b, ma.UserID)
	if err := b.DeleteMessage(ctx, got[1].ID); err != nil {
		t.Fatal(err)
	}
	cs, err := b.Conversations(ctx)
	if err != nil || len(cs) != 1 || cs[0].Last == nil || cs[0].Last.ID != got[0].ID {
		t.Fatalf("B's conversations after delete: %+v, %v", cs, err)
	}
	// A sends it again (a retry after a lost ack): not stored again.
	if _, err := unlockedOf(t, b).st.StoreReceived(ctx, got[1]); !isErr(err, store.ErrDuplicate) {
		t.Fatalf("a deleted message arriving again: %v, want ErrDuplicate", err)
	}
	checkExactlyOnce(t, convHistory(t, b, ma.UserID), []string{"keep 1"})
}
