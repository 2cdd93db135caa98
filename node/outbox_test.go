package node

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// An outbox entry whose envelope no longer parses (a bug, a downgrade) is
// dropped by the scanner, not read and logged again on every scan.
func TestOutboxDropsUnreadableEntry(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	bID := meOf(t, b).UserID
	sa := unlockedOf(t, a)
	bad := store.OutboxEntry{MsgID: protocol.MsgID{0xba, 0xd}, Recipient: bID, Envelope: []byte("not an envelope")}
	if err := sa.st.AddControl(ctx, bad); err != nil {
		t.Fatal(err)
	}
	sa.outbox.Notify(bID)
	waitFor(t, 10*time.Second, "the unreadable entry is dropped", func() bool {
		_, err := sa.st.OutboxEntry(ctx, bad.MsgID)
		return isErr(err, store.ErrNotFound)
	})
	// Delivery goes on.
	if _, err := a.Send(ctx, bID, "still works"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the next message is delivered", func() bool {
		return len(convHistory(t, b, meOf(t, a).UserID)) == 1
	})
}

// Entries queued while the recipient is held back (as by a backoff)
// reach it in the order they were sealed once it is rushed: the store
// keeps no schedule per entry, only the queue, and the courier sends it
// in order.
func TestOutboxRetriesKeepOrder(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	bID := meOf(t, b).UserID
	sa := unlockedOf(t, a)
	sa.outbox.Hold(bID)
	texts := numbered("spread", 10)
	sendAll(t, a, bID, texts)
	q := queuedFor(t, a, bID)
	if len(q) != len(texts) {
		t.Fatalf("%d queued, want %d", len(q), len(texts))
	}
	sa.outbox.Rush(bID)
	checkArrived(t, a, b, texts)
}
