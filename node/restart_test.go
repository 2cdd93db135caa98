package node

import (
	"context"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// boundListen returns n's current TCP listen address (without /p2p), so a
// restart can listen where the node listened before, as a node on its
// fixed default port does.
func boundListen(tb testing.TB, n *Node) []string {
	tb.Helper()
	info, err := n.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range info.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			transport, _ := ma.SplitLast(a) // drop /p2p/<id>
			return []string{transport.String()}
		}
	}
	tb.Fatalf("no TCP address in %v", info.Addrs)
	return nil
}

// sendAll sends the texts in order and checks they are queued, pending.
func sendAll(tb testing.TB, from *Node, to protocol.ID, texts []string) {
	tb.Helper()
	for _, text := range texts {
		m, err := from.Send(context.Background(), to, text)
		if err != nil {
			tb.Fatalf("Send: %v", err)
		}
		if m.Status != store.StatusPending {
			tb.Fatalf("a new message is %s, want pending", m.Status)
		}
	}
}

// checkPending checks that from holds texts for to, all still pending
// and queued.
func checkPending(tb testing.TB, from *Node, to protocol.ID, texts []string) {
	tb.Helper()
	ms := convHistory(tb, from, to)
	checkExactlyOnce(tb, ms, texts)
	if !allStatus(ms, store.StatusPending) {
		tb.Fatalf("messages to an offline friend: %v, want all pending", statuses(ms))
	}
	if q := queuedFor(tb, from, to); len(q) != len(texts) {
		tb.Fatalf("%d queued for the offline friend, want %d", len(q), len(texts))
	}
}

func statuses(ms []store.Message) []store.Status {
	out := make([]store.Status, len(ms))
	for i, m := range ms {
		out[i] = m.Status
	}
	return out
}

// checkArrived waits until to holds texts from sender (exactly once, in
// order) and sender sees them delivered with nothing left queued.
func checkArrived(tb testing.TB, sender, to *Node, texts []string) {
	tb.Helper()
	sID, toID := meOf(tb, sender).UserID, meOf(tb, to).UserID
	waitFor(tb, 30*time.Second, "the queued messages arrive", func() bool {
		return len(convHistory(tb, to, sID)) >= len(texts)
	})
	checkExactlyOnce(tb, convHistory(tb, to, sID), texts)
	waitFor(tb, 10*time.Second, "the sender sees them delivered", func() bool {
		return allStatus(convHistory(tb, sender, toID), store.StatusDelivered) && len(queuedFor(tb, sender, toID)) == 0
	})
	checkExactlyOnce(tb, convHistory(tb, sender, toID), texts)
	// Nothing arrives twice later (a retry of something already stored
	// would be a replay, answered but not stored).
	if n := len(convHistory(tb, to, sID)); n != len(texts) {
		tb.Fatalf("recipient holds %d messages, want %d", n, len(texts))
	}
}

// The recipient is down while the sender queues; it comes back on a new
// port, dials its friends, and the sender's outbox delivers on connect.
func TestRestartRecipient(t *testing.T) {
	cfgB := testConfig(t, "bob-2048")
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, cfgB, "Bob")
	befriend(t, a, b)
	bID := meOf(t, b).UserID
	oldAddrs := meOf(t, b).Addrs
	closeNode(t, b)
	waitFor(t, 10*time.Second, "A sees B go", func() bool {
		f, err := a.Friend(context.Background(), bID)
		return err == nil && !f.Online
	})

	texts := numbered("offline", 20)
	sendAll(t, a, bID, texts)
	checkPending(t, a, bID, texts)

	b = unlockNode(t, cfgB)
	if got := meOf(t, b).Addrs; strings.Join(got, ",") == strings.Join(oldAddrs, ",") {
		t.Logf("B happened to get its old address back: %v", got)
	}
	checkArrived(t, a, b, texts)
}

// The sender is restarted with a full outbox: nothing is lost, nothing is
// sent twice. The recipient keeps its port (a node's listen port is fixed
// in production), so the restarted sender can reach it from its card.
func TestRestartSenderWithFullOutbox(t *testing.T) {
	cfgA, cfgB := testConfig(t, "alice-2048"), testConfig(t, "bob-2048")
	a := startNode(t, cfgA, "Alice")
	b := startNode(t, cfgB, "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	cfgB.Listen = boundListen(t, b)

	if _, err := a.Send(context.Background(), bID, "before"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first message is delivered", func() bool {
		ms := convHistory(t, a, bID)
		return len(ms) == 1 && ms[0].Status == store.StatusDelivered
	})

	closeNode(t, b)
	texts := numbered("queued", 20)
	sendAll(t, a, bID, texts)
	all := append([]string{"before"}, texts...)
	ms := convHistory(t, a, bID)
	checkExactlyOnce(t, ms, all)
	if !allStatus(ms[1:], store.StatusPending) {
		t.Fatalf("queued messages: %v, want pending", statuses(ms[1:]))
	}
	if q := queuedFor(t, a, bID); len(q) != len(texts) {
		t.Fatalf("%d queued, want %d", len(q), len(texts))
	}
	closeNode(t, a)

	b = unlockNode(t, cfgB) // dials A, which is down
	a = unlockNode(t, cfgA)
	if ms := convHistory(t, a, bID); len(ms) != 21 {
		t.Fatalf("A holds %d messages after the restart, want 21", len(ms))
	}
	checkArrived(t, a, b, all)
	if ms := convHistory(t, b, aID); ms[0].ReceivedAt.After(ms[1].ReceivedAt) {
		t.Fatal("history is not in arrival order")
	}
}
