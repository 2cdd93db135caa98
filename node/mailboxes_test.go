package node

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/node/mailbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// mailRelay is a relay serving the mailbox beside it, as `parley relay`
// does (cmd/parley/relay_mailbox.go).
type mailRelay struct {
	*Relay
	srv  *mailbox.Server
	reg  *prometheus.Registry // the mailbox's metrics
	stop func()
}

// startMailRelay starts a relay with its mailbox on dir, listening on
// listen (loopback, any port if empty), joining the DHT through boot; it
// stops when the test ends.
func startMailRelay(tb testing.TB, dir, listen string, boot ...string) *mailRelay {
	tb.Helper()
	return startMailRelayWith(tb, dir, listen, mailbox.Limits{}, boot...)
}

// startMailRelayWith is startMailRelay with the mailbox's limits lim
// (defaults for zero fields).
func startMailRelayWith(tb testing.TB, dir, listen string, lim mailbox.Limits, boot ...string) *mailRelay {
	tb.Helper()
	if listen == "" {
		listen = "/ip4/127.0.0.1/tcp/0"
	}
	r, err := StartRelay(context.Background(), RelayConfig{DataDir: dir, Listen: []string{listen}, Bootstrap: boot, Logger: testLogger(tb)})
	if err != nil {
		tb.Fatalf("StartRelay: %v", err)
	}
	reg := prometheus.NewRegistry()
	srv, err := mailbox.NewServer(r.Host(), mailbox.Config{Dir: filepath.Join(dir, "mailbox"), Directory: r.Directory(), Limits: lim, Logger: testLogger(tb), Metrics: reg})
	if err != nil {
		r.Close()
		tb.Fatalf("mailbox.NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	mr := &mailRelay{Relay: r, srv: srv, reg: reg}
	stopped := false
	mr.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("mailbox Serve: %v", err)
		}
		if err := errors.Join(srv.Close(), r.Close()); err != nil {
			tb.Errorf("closing the relay: %v", err)
		}
	}
	tb.Cleanup(mr.stop)
	return mr
}

// held is how many envelopes the relay's mailbox holds.
func (mr *mailRelay) held() int {
	n, _ := mr.srv.Held()
	return n
}

// counter is the value of the mailbox counter name (summed over its
// labels, or only result's if not empty).
func (mr *mailRelay) counter(tb testing.TB, name, result string) float64 {
	tb.Helper()
	mfs, err := mr.reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && result != "" {
					match = l.GetValue() == result
				}
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// listenAddr is the relay's TCP listen address without /p2p, to restart
// it where it was.
func (mr *mailRelay) listenAddr(tb testing.TB) string {
	tb.Helper()
	a, err := ma.NewMultiaddr(mr.Addrs()[0])
	if err != nil {
		tb.Fatal(err)
	}
	transport, _ := ma.SplitLast(a)
	return transport.String()
}

// mailPair starts Alice and Bob, who bootstrap from relay, befriends them
// and waits until Bob takes mail at the relay and Alice knows it.
func mailPair(tb testing.TB, relay *mailRelay) (a, b *Node, cfgB Config) {
	tb.Helper()
	boot := relay.Addrs()[0]
	cfgA := dirConfig(tb, fixtureKey(tb, "alice-2048"), boot)
	cfgB = dirConfig(tb, fixtureKey(tb, "bob-2048"), boot)
	a = startNode(tb, cfgA, "Alice")
	b = startNode(tb, cfgB, "Bob")
	waitPublished(tb, a)
	waitPublished(tb, b)
	befriend(tb, a, b)
	waitMailReady(tb, b)
	bID := meOf(tb, b).UserID
	sa := unlockedOf(tb, a)
	waitFor(tb, 30*time.Second, "Alice knows Bob's mailbox relay", func() bool {
		if fe := sa.friends.friend(bID); fe != nil && len(fe.relays) > 0 {
			return true
		}
		// Bob's record lists the relay; Alice looks it up now and then.
		sa.friends.refreshFriend(context.Background(), bID)
		return false
	})
	return a, b, cfgB
}

// waitMailReady waits until n is subscribed to its mailbox relay.
func waitMailReady(tb testing.TB, n *Node) {
	tb.Helper()
	s := unlockedOf(tb, n)
	waitFor(tb, 30*time.Second, "subscribed to the mailbox", func() bool { return s.mail.ready.Load() > 0 })
}

// offlineMailPair is mailPair with b closed once a sees it offline: it
// returns a, b's user ID and the config that starts b again.
func offlineMailPair(tb testing.TB, relay *mailRelay) (a *Node, bID protocol.ID, cfgB Config) {
	tb.Helper()
	a, b, cfgB := mailPair(tb, relay)
	bID = meOf(tb, b).UserID
	closeNode(tb, b)
	waitOffline(tb, a, bID)
	return a, bID, cfgB
}

// waitOffline waits until a sees user offline.
func waitOffline(tb testing.TB, a *Node, user protocol.ID) {
	tb.Helper()
	waitFor(tb, 10*time.Second, "the friend goes offline", func() bool {
		f, err := a.Friend(context.Background(), user)
		return err == nil && !f.Online
	})
}

// waitDeposited waits until every message from sender to user is sent
// through a mailbox and nothing is queued.
func waitDeposited(tb testing.TB, sender *Node, user protocol.ID, n int) {
	tb.Helper()
	waitFor(tb, 60*time.Second, "the messages are deposited", func() bool {
		ms := convHistory(tb, sender, user)
		return len(ms) == n && allStatus(ms, store.StatusSent) && len(queuedFor(tb, sender, user)) == 0
	})
	for _, m := range convHistory(tb, sender, user) {
		if m.Path != store.PathMailbox {
			tb.Fatalf("message %s went by path %q, want mailbox", m.ID, m.Path)
		}
	}
}

// checkMailDelivered waits until to holds texts from sender exactly once,
// in order, and sender sees them all delivered through the mailbox.
func checkMailDelivered(tb testing.TB, sender, to *Node, texts []string) {
	tb.Helper()
	sID, toID := meOf(tb, sender).UserID, meOf(tb, to).UserID
	waitFor(tb, 60*time.Second, "the messages arrive from the mailbox", func() bool {
		return len(convHistory(tb, to, sID)) >= len(texts)
	})
	checkExactlyOnce(tb, convHistory(tb, to, sID), texts)
	waitFor(tb, 30*time.Second, "the sender sees them delivered", func() bool {
		return allStatus(convHistory(tb, sender, toID), store.StatusDelivered)
	})
	for _, m := range convHistory(tb, sender, toID) {
		if m.Path != store.PathMailbox {
			tb.Fatalf("message %s: path %q, want mailbox", m.ID, m.Path)
		}
	}
	if n := len(convHistory(tb, to, sID)); n != len(texts) {
		tb.Fatalf("recipient holds %d messages, want %d", n, len(texts))
	}
}

// Bob's node is closed: Alice's 50 messages go to Bob's mailbox on the
// relay (sent, path mailbox); Bob starts again, fetches them, each stored
// once and in order, and tells Alice, who marks them delivered.
func TestMailboxOfflineDelivery(t *testing.T) {
	relay := startMailRelay(t, t.TempDir(), "")
	a, bID, cfgB := offlineMailPair(t, relay)

	texts := numbered("mailbox", 50)
	sendAll(t, a, bID, texts)
	waitDeposited(t, a, bID, len(texts))
	if got := relay.held(); got != len(texts) {
		t.Fatalf("relay holds %d envelopes, want %d", got, len(texts))
	}
	if got := unlockedOf(t, a).outbox.Stats().Deposited; got != uint64(len(texts)) {
		t.Fatalf("outbox Stats().Deposited = %d, want %d", got, len(texts))
	}

	b := unlockNode(t, cfgB)
	checkMailDelivered(t, a, b, texts)
	waitFor(t, 10*time.Second, "the relay drops what Bob acknowledged", func() bool { return relay.held() == 0 })
}

// An envelope that arrives both from the mailbox and directly is stored
// once, and the relay drops its copy.
func TestMailboxAndDirectStoredOnce(t *testing.T) {
	relay := startMailRelay(t, t.TempDir(), "")
	a, b, _ := mailPair(t, relay)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sa := unlockedOf(t, a)
	ctx := context.Background()

	sa.outbox.Hold(bID)
	if _, err := a.Send(ctx, bID, "twice"); err != nil {
		t.Fatal(err)
	}
	q := queuedFor(t, a, bID)
	if len(q) != 1 {
		t.Fatalf("%d queued, want 1", len(q))
	}
	d, err := sa.msgs.frame(q[0])
	if err != nil {
		t.Fatal(err)
	}
	if held, err := sa.mail.deposit(ctx, bID, []*protocol.Delivery{d}); held != 1 || err != nil {
		t.Fatalf("deposit: %d held, %v", held, err)
	}
	sa.outbox.Rush(bID) // and directly
	waitFor(t, 30*time.Second, "delivered", func() bool {
		ms := convHistory(t, a, bID)
		return len(ms) == 1 && ms[0].Status == store.StatusDelivered
	})
	waitFor(t, 30*time.Second, "the relay's copy is fetched", func() bool { return relay.held() == 0 })
	checkExactlyOnce(t, convHistory(t, b, aID), []string{"twice"})
}

// The relay restarts between the deposits and the fetch: its database
// kept them, and Bob gets every one.
func TestMailboxSurvivesRelayRestart(t *testing.T) {
	dir := t.TempDir()
	relay := startMailRelay(t, dir, "")
	a, b, cfgB := mailPair(t, relay)
	bID := meOf(t, b).UserID
	closeNode(t, b)
	waitOffline(t, a, bID)

	texts := numbered("kept", 10)
	sendAll(t, a, bID, texts)
	waitDeposited(t, a, bID, len(texts))

	listen := relay.listenAddr(t)
	relay.stop()
	relay = startMailRelay(t, dir, listen)
	if got := relay.held(); got != len(texts) {
		t.Fatalf("restarted relay holds %d envelopes, want %d", got, len(texts))
	}
	// The restarted relay's DHT is empty: Bob's record reaches it when
	// Bob publishes at start, and his fetch is authorised then.
	b = unlockNode(t, cfgB)
	checkMailDelivered(t, a, b, texts)
}

// Bob takes mail at a relay of his choice (--mailbox-relay), not at his
// bootstrap peer, which does not speak the mailbox protocol: his record
// lists both, Alice's deposit fails at the first and is held by the
// second, and Bob fetches it there.
func TestMailboxRelayChosen(t *testing.T) {
	plain := startRelays(t, 1)[0] // no mailbox
	mr := startMailRelay(t, t.TempDir(), "", plain.Addrs()[0])
	boot := plain.Addrs()[0]
	cfgA := dirConfig(t, fixtureKey(t, "alice-2048"), boot)
	cfgB := dirConfig(t, fixtureKey(t, "bob-2048"), boot)
	cfgB.MailboxRelays = []string{mr.Addrs()[0]}
	a := startNode(t, cfgA, "Alice")
	b := startNode(t, cfgB, "Bob")
	waitPublished(t, a)
	waitPublished(t, b)
	befriend(t, a, b)
	waitMailReady(t, b)
	bID := meOf(t, b).UserID
	sa := unlockedOf(t, a)
	waitFor(t, 30*time.Second, "Alice knows Bob's two relays", func() bool {
		if fe := sa.friends.friend(bID); fe != nil && len(fe.relays) == 2 {
			return fe.relays[0].ID == plain.ID() && fe.relays[1].ID == mr.ID()
		}
		sa.friends.refreshFriend(context.Background(), bID)
		return false
	})
	closeNode(t, b)
	waitOffline(t, a, bID)

	texts := numbered("chosen", 3)
	sendAll(t, a, bID, texts)
	waitDeposited(t, a, bID, len(texts))
	if got := mr.held(); got != len(texts) {
		t.Fatalf("the chosen relay holds %d, want %d", got, len(texts))
	}
	b = unlockNode(t, cfgB)
	checkMailDelivered(t, a, b, texts)
}

// What a mailbox hands over goes through the receive path of a direct
// frame: a good envelope is stored once (a second copy is a replay, and
// the relay may drop it), a tampered, cut or padded one is refused for
// good and stores nothing; each answer is nil, so the relay drops it.
func TestMailboxReceiveAdversarial(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sa, sb := unlockedOf(t, a), unlockedOf(t, b)
	ctx := context.Background()
	relay := sb.host.ID() // where it came from: not a device of Alice's

	sa.outbox.Hold(bID)
	if _, err := a.Send(ctx, bID, "from the mailbox"); err != nil {
		t.Fatal(err)
	}
	q := queuedFor(t, a, bID)
	d, err := sa.msgs.frame(q[len(q)-1])
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := protocol.WriteDelivery(&buf, d); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	tampered := bytes.Clone(good)
	tampered[len(tampered)-3] ^= 1
	for name, frame := range map[string][]byte{
		"garbage":  {0x05, 1, 2, 3, 4, 5},
		"cut":      good[:len(good)-1],
		"padded":   append(bytes.Clone(good), 0),
		"tampered": tampered,
		"empty":    {},
	} {
		if err := sb.mail.receive(ctx, relay, frame); err != nil {
			t.Errorf("%s: receive = %v, want nil (refused for good)", name, err)
		}
		if n := len(convHistory(t, b, aID)); n != 0 {
			t.Fatalf("%s: Bob stored %d messages", name, n)
		}
	}
	for i := range 2 {
		if err := sb.mail.receive(ctx, relay, good); err != nil {
			t.Fatalf("copy %d: receive = %v", i, err)
		}
	}
	checkExactlyOnce(t, convHistory(t, b, aID), []string{"from the mailbox"})
	// Bob tells Alice it is stored; Alice's copy is still queued (held),
	// so it is not "sent" and the receipt changes nothing yet.
	sa.outbox.Rush(bID)
	waitFor(t, 30*time.Second, "delivered directly (a replay at Bob)", func() bool {
		ms := convHistory(t, a, bID)
		return len(ms) == 1 && ms[0].Status == store.StatusDelivered
	})
	checkExactlyOnce(t, convHistory(t, b, aID), []string{"from the mailbox"})
}

// A delivery receipt marks delivered only the sender's own messages to
// the friend who sends it that are sent (held by a mailbox): not one to
// someone else, not one still queued, not an unknown ID; and a body that
// does not parse is malformed.
func TestDeliveredReceiptNamesOnlyOwnSent(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	c := startNode(t, testConfig(t, "carol-2048"), "Carol")
	befriend(t, a, b)
	befriend(t, a, c)
	bID, cID := meOf(t, b).UserID, meOf(t, c).UserID
	sa := unlockedOf(t, a)
	ctx := context.Background()
	sa.outbox.Hold(bID)
	sa.outbox.Hold(cID)
	toB, err := a.Send(ctx, bID, "to bob")
	if err != nil {
		t.Fatal(err)
	}
	toC, err := a.Send(ctx, cID, "to carol")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.st.UpdateStatus(ctx, toC.ID, store.StatusSent, store.PathMailbox, ""); err != nil {
		t.Fatal(err)
	}
	receipt := func(ids ...protocol.MsgID) error {
		body, err := protocol.MarshalDelivered(ids)
		if err != nil {
			t.Fatal(err)
		}
		m := &protocol.Message{Body: body}
		m.Sender, m.Kind = bID, protocol.KindDelivered
		return sa.msgs.receiveDelivered(ctx, m)
	}
	status := func(id protocol.MsgID) store.Status {
		m, err := sa.st.Message(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return m.Status
	}
	if err := receipt(toC.ID, toB.ID, protocol.MsgID{9, 15: 9}); err != nil {
		t.Fatal(err)
	}
	if s := status(toC.ID); s != store.StatusSent {
		t.Errorf("Bob's receipt changed Alice's message to Carol to %s", s)
	}
	if s := status(toB.ID); s != store.StatusPending {
		t.Errorf("a receipt for a message still queued made it %s", s)
	}
	if _, err := sa.st.UpdateStatus(ctx, toB.ID, store.StatusSent, store.PathMailbox, ""); err != nil {
		t.Fatal(err)
	}
	if err := receipt(toB.ID); err != nil {
		t.Fatal(err)
	}
	if s := status(toB.ID); s != store.StatusDelivered {
		t.Errorf("Alice's message to Bob held by a mailbox: %s after Bob's receipt, want delivered", s)
	}
	m := &protocol.Message{Body: []byte{0xff}}
	m.Sender, m.Kind = bID, protocol.KindDelivered
	if err := sa.msgs.receiveDelivered(ctx, m); !errors.Is(err, protocol.ErrMalformed) {
		t.Errorf("a receipt that does not parse: %v, want ErrMalformed", err)
	}
}

// Bob stops right after storing what his mailbox held, before the
// delivery receipts of the last ones were due: they are queued at the
// stop, go out after his next start, and Alice sees every message
// delivered.
func TestMailboxReceiptsSurviveStop(t *testing.T) {
	relay := startMailRelay(t, t.TempDir(), "")
	a, b, cfgB := mailPair(t, relay)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	closeNode(t, b)
	waitOffline(t, a, bID)
	texts := numbered("stop", 20)
	sendAll(t, a, bID, texts)
	waitDeposited(t, a, bID, len(texts))

	b = unlockNode(t, cfgB)
	waitFor(t, 30*time.Second, "Bob stores what his mailbox held", func() bool { return len(convHistory(t, b, aID)) == len(texts) })
	closeNode(t, b) // well within deliveredDelay of the last store
	b = unlockNode(t, cfgB)
	checkMailDelivered(t, a, b, texts)
}
