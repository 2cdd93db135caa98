package node

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// storedSessions parses n's stored sessions with peer (nil if none).
func storedSessions(tb testing.TB, n *Node, peer protocol.ID) *protocol.PeerSessions {
	tb.Helper()
	s := unlockedOf(tb, n)
	b, err := s.st.Sessions(context.Background(), peer)
	if isErr(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	p, err := protocol.ParsePeerSessions(b, s.me, peer)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// checkReceived checks that to holds exactly texts from sender, in order,
// and that the sender sees its messages to to delivered.
func checkReceived(tb testing.TB, sender, to *Node, texts []string) {
	tb.Helper()
	sID, toID := meOf(tb, sender).UserID, meOf(tb, to).UserID
	in := func() []store.Message {
		var out []store.Message
		for _, m := range convHistory(tb, to, sID) {
			if m.Direction == store.In {
				out = append(out, m)
			}
		}
		return out
	}
	waitFor(tb, 30*time.Second, "the messages arrive", func() bool { return len(in()) >= len(texts) })
	checkExactlyOnce(tb, in(), texts)
	waitFor(tb, 10*time.Second, "the sender sees them delivered", func() bool {
		for _, m := range convHistory(tb, sender, toID) {
			if m.Direction == store.Out && m.Status != store.StatusDelivered && m.Status != store.StatusRead {
				return false
			}
		}
		return len(queuedFor(tb, sender, toID)) == 0
	})
}

// currentSession is the ID of n's current session with peer (zero: none).
func currentSession(tb testing.TB, n *Node, peer protocol.ID) protocol.SessionID {
	tb.Helper()
	p := storedSessions(tb, n, peer)
	if p == nil || p.Current() == nil {
		return protocol.SessionID{}
	}
	return p.Current().ID()
}

// TestSessionChat: the first message starts a session (one RSA-signed
// envelope), everything after goes in it both ways, receipts included,
// and a restart in the middle of the conversation changes nothing.
func TestSessionChat(t *testing.T) {
	ctx := context.Background()
	cfgB := testConfig(t, "bob-2048")
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, cfgB, "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID

	sendAll(t, a, bID, []string{"hello"})
	checkReceived(t, a, b, []string{"hello"})
	sid := currentSession(t, a, bID)
	if sid.IsZero() || currentSession(t, b, aID) != sid {
		t.Fatalf("sessions after the first message: A %s, B %s", sid, currentSession(t, b, aID))
	}
	if !storedSessions(t, a, bID).Current().Initiator() || storedSessions(t, b, aID).Current().Initiator() {
		t.Fatal("A should be the initiator, B the responder")
	}

	// B answers in the session (its first reply certifies its session key).
	sendAll(t, b, aID, numbered("from B", 5))
	checkReceived(t, b, a, numbered("from B", 5))
	sendAll(t, a, bID, numbered("from A", 20))
	checkReceived(t, a, b, append([]string{"hello"}, numbered("from A", 20)...))
	if got := currentSession(t, a, bID); got != sid {
		t.Fatalf("the session changed without a reason: %s, was %s", got, sid)
	}
	// Read receipts travel in the session too.
	if err := b.MarkRead(ctx, aID, protocol.MsgID{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "A sees read", func() bool {
		for _, m := range convHistory(t, a, bID) {
			if m.Direction == store.Out && m.Status != store.StatusRead {
				return false
			}
		}
		return true
	})

	// B restarts mid-conversation; both go on in the same session.
	closeNode(t, b)
	sendAll(t, a, bID, numbered("while B is down", 5))
	b = unlockNode(t, cfgB)
	sendAll(t, b, aID, numbered("B is back", 3))
	want := append(append([]string{"hello"}, numbered("from A", 20)...), numbered("while B is down", 5)...)
	checkReceived(t, a, b, want)
	checkReceived(t, b, a, append(numbered("from B", 5), numbered("B is back", 3)...))
	if got := currentSession(t, b, aID); got != sid {
		t.Fatalf("B's session after the restart: %s, want %s", got, sid)
	}
}

// TestSessionLostState: B loses its session state (an old backup, say).
// A's next message cannot be opened; B asks for a reset, A seals it again
// in a new session with the same msg_id, and it arrives exactly once.
func TestSessionLostState(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sendAll(t, a, bID, numbered("before", 3))
	checkReceived(t, a, b, numbered("before", 3))
	old := currentSession(t, a, bID)

	sb := unlockedOf(t, b)
	if err := sb.st.PutSessions(ctx, store.SessionUpdate{Peer: aID}); err != nil {
		t.Fatal(err)
	}
	sb.msgs.mu.Lock()
	delete(sb.msgs.sessions, aID) // forget the cached copy too
	sb.msgs.mu.Unlock()

	sendAll(t, a, bID, numbered("after", 3))
	// Each message B could not open is sealed again as its stale ack
	// arrives, so these three may arrive in another order; each exactly
	// once.
	waitFor(t, 30*time.Second, "the messages sealed again arrive", func() bool {
		return len(convHistory(t, b, aID)) == 6
	})
	hist := convHistory(t, b, aID)
	checkExactlyOnce(t, hist, bodies(hist)) // no message ID twice
	got := bodies(hist)
	slices.Sort(got[3:])
	if strings.Join(got, "|") != strings.Join(append(numbered("before", 3), numbered("after", 3)...), "|") {
		t.Fatalf("history %q", bodies(hist))
	}
	waitFor(t, 10*time.Second, "A sees them delivered", func() bool {
		return allStatus(convHistory(t, a, bID), store.StatusDelivered) && len(queuedFor(t, a, bID)) == 0
	})
	nw := currentSession(t, a, bID)
	if nw.IsZero() || nw == old || currentSession(t, b, aID) != nw {
		t.Fatalf("sessions after the reset: A %s (was %s), B %s", nw, old, currentSession(t, b, aID))
	}
	// And B's answers go in the new session.
	sendAll(t, b, aID, []string{"got them"})
	checkReceived(t, b, a, []string{"got them"})
}

// TestSessionStrictRSA: with --strict-rsa-signatures every session message
// is signed with the identity key; the friend verifies it.
func TestSessionStrictRSA(t *testing.T) {
	cfgA := testConfig(t, "alice-2048")
	cfgA.StrictRSASignatures = true
	a := startNode(t, cfgA, "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sendAll(t, a, bID, numbered("strict", 4))
	checkReceived(t, a, b, numbered("strict", 4))
	sendAll(t, b, aID, []string{"relaxed"})
	checkReceived(t, b, a, []string{"relaxed"})
	sendAll(t, a, bID, []string{"strict again"})
	checkReceived(t, a, b, append(numbered("strict", 4), "strict again"))
}

// TestSessionCrossingStarts: both send their first message while the other
// is held unreachable, so two starts cross. Both messages arrive, and both
// sides settle on the same session.
func TestSessionCrossingStarts(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sa, sb := unlockedOf(t, a), unlockedOf(t, b)
	for _, x := range []struct {
		s    *unlocked
		peer protocol.ID
	}{{sa, bID}, {sb, aID}} {
		x.s.outbox.Hold(x.peer)
	}
	sendAll(t, a, bID, []string{"hi from A"})
	sendAll(t, b, aID, []string{"hi from B"})
	if currentSession(t, a, bID) == currentSession(t, b, aID) {
		t.Fatal("the two starts are the same session")
	}
	sa.outbox.Rush(bID)
	sb.outbox.Rush(aID)
	checkReceived(t, a, b, []string{"hi from A"})
	checkReceived(t, b, a, []string{"hi from B"})
	waitFor(t, 10*time.Second, "both settle on one session", func() bool {
		return currentSession(t, a, bID) == currentSession(t, b, aID)
	})
	// The conversation goes on in it, both ways.
	sendAll(t, a, bID, numbered("then A", 3))
	sendAll(t, b, aID, numbered("then B", 3))
	checkReceived(t, a, b, append([]string{"hi from A"}, numbered("then A", 3)...))
	checkReceived(t, b, a, append([]string{"hi from B"}, numbered("then B", 3)...))
}

// TestSessionQueuesSessionMessages: after the start, what A queues for B
// are session messages (no RSA), and with sessions off single envelopes.
func TestSessionQueuesSessionMessages(t *testing.T) {
	for _, off := range []bool{false, true} {
		cfgA := testConfig(t, "alice-2048")
		cfgA.DisableSessions = off
		a := startNode(t, cfgA, "Alice")
		b := startNode(t, testConfig(t, "bob-2048"), "Bob")
		befriend(t, a, b)
		bID := meOf(t, b).UserID
		sendAll(t, a, bID, []string{"start"})
		checkReceived(t, a, b, []string{"start"})
		sa := unlockedOf(t, a)
		sa.outbox.Hold(bID)
		sendAll(t, a, bID, numbered("queued", 5))
		q := queuedFor(t, a, bID)
		if len(q) != 5 {
			t.Fatalf("sessions off %v: %d queued", off, len(q))
		}
		for _, e := range q {
			if e.Session == off {
				t.Errorf("sessions off %v: entry %s is a session message: %v", off, e.MsgID, e.Session)
			}
			if _, err := sa.msgs.frame(e); err != nil {
				t.Errorf("entry %s does not parse: %v", e.MsgID, err)
			}
		}
		sa.outbox.Rush(bID)
		checkReceived(t, a, b, append([]string{"start"}, numbered("queued", 5)...))
	}
}

// TestConcurrentSendsInOrder sends to one friend from several goroutines
// at once, with RSA signatures made outside the friend's lock: single
// envelopes (sessions off) and session messages signed with the identity
// key (--strict-rsa-signatures). They are queued in the order of their
// timestamps, each once, and the friend stores them in that order.
func TestConcurrentSendsInOrder(t *testing.T) {
	for _, mode := range []string{"envelopes", "strict"} {
		t.Run(mode, func(t *testing.T) {
			cfgA, cfgB := testConfig(t, "alice-2048"), testConfig(t, "bob-2048")
			cfgA.DisableSessions = mode == "envelopes"
			cfgA.StrictRSASignatures = mode == "strict"
			a, b := startNode(t, cfgA, "Alice"), startNode(t, cfgB, "Bob")
			befriend(t, a, b)
			bID := meOf(t, b).UserID
			var want []string
			if mode == "strict" {
				sendAll(t, a, bID, []string{"start"})
				checkReceived(t, a, b, []string{"start"})
				want = append(want, "start")
			}
			unlockedOf(t, a).outbox.Hold(bID)
			const senders, each = 6, 4
			var wg sync.WaitGroup
			errs := make(chan error, senders*each)
			for g := range senders {
				wg.Go(func() {
					for i := range each {
						if _, err := a.Send(context.Background(), bID, fmt.Sprintf("sender %d message %d", g, i)); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("Send: %v", err)
			}
			q := queuedFor(t, a, bID)
			if len(q) != senders*each {
				t.Fatalf("%d queued, want %d", len(q), senders*each)
			}
			var last int64
			for _, e := range q {
				stamp := queuedStamp(t, e, mode == "strict")
				if stamp <= last {
					t.Fatalf("entry %s sealed at %d, queued after one sealed at %d", e.MsgID, stamp, last)
				}
				last = stamp
			}
			hist := convHistory(t, a, bID)[len(want):]
			for i, m := range hist {
				if m.ID != q[i].MsgID {
					t.Fatalf("history entry %d is %s, queue entry %s", i, m.ID, q[i].MsgID)
				}
				want = append(want, string(m.Body))
			}
			unlockedOf(t, a).outbox.Rush(bID)
			checkReceived(t, a, b, want)
		})
	}
}

// queuedStamp is the timestamp of a queued envelope, or of a session
// message signed with the identity key (strict).
func queuedStamp(tb testing.TB, e store.OutboxEntry, strict bool) int64 {
	tb.Helper()
	if !strict {
		env, err := protocol.ParseEnvelope(e.Envelope)
		if err != nil || e.Session {
			tb.Fatalf("entry %s is not an envelope: %v", e.MsgID, err)
		}
		return env.Timestamp
	}
	m, err := protocol.ParseSessionMessage(e.Envelope)
	if err != nil || !e.Session || m.SigAlg != protocol.SigIdentity {
		tb.Fatalf("entry %s is not a strict session message: %v", e.MsgID, err)
	}
	return m.Timestamp
}

// TestSessionStoredStateSecrecy inspects B's sealed session state through
// the store: once a message is opened its key is gone (the stored state
// cannot open it again), and a copy of the state taken before the next DH
// ratchet step cannot open what A sends after it.
func TestSessionStoredStateSecrecy(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sa := unlockedOf(t, a)
	aKey := fixtureKey(t, "alice-2048").Public()
	sendAll(t, a, bID, []string{"start"})
	checkReceived(t, a, b, []string{"start"})

	// held queues one message while B is unreachable and returns it as
	// it goes on the wire.
	held := func(text string) *protocol.SessionMessage {
		t.Helper()
		sa.outbox.Hold(bID)
		sendAll(t, a, bID, []string{text})
		q := queuedFor(t, a, bID)
		if len(q) != 1 || !q[0].Session {
			t.Fatalf("queued %d entries", len(q))
		}
		sm, err := protocol.ParseSessionMessage(q[0].Envelope)
		if err != nil {
			t.Fatal(err)
		}
		sa.outbox.Rush(bID)
		return sm
	}
	m1 := held("one")
	checkReceived(t, a, b, []string{"start", "one"})
	after1 := storedSessions(t, b, aID)
	if _, err := after1.Open(m1, aKey, time.Now()); !isErr(err, protocol.ErrMessageKeyGone) {
		t.Fatalf("B's stored state opens a message it already opened: %v", err)
	}

	// A copy of B's state, stolen now. The conversation goes on: B's
	// next DH ratchet step comes when A's next ratchet key arrives
	// ("two"); what A sends once it has B's key from that step ("three")
	// the stolen copy cannot open.
	stolen := storedSessions(t, b, aID)
	sendAll(t, b, aID, []string{"reply"})
	checkReceived(t, b, a, []string{"reply"})
	held("two")
	checkReceived(t, a, b, []string{"start", "one", "two"})
	sendAll(t, b, aID, []string{"reply 2"})
	checkReceived(t, b, a, []string{"reply", "reply 2"})
	m3 := held("three")
	checkReceived(t, a, b, []string{"start", "one", "two", "three"})
	if _, err := stolen.Open(m3, aKey, time.Now()); err == nil {
		t.Fatal("a copy of B's state from before its DH ratchet step opened a message sent after it")
	}
	// B's own state opened it, once.
	if _, err := storedSessions(t, b, aID).Open(m3, aKey, time.Now()); !isErr(err, protocol.ErrMessageKeyGone) {
		t.Fatalf("B's state after opening three: %v", err)
	}
}

// deliverSession writes one Delivery frame carrying a session message.
func (hs *hostileStream) deliverSession(raw []byte) {
	hs.tb.Helper()
	var buf bytes.Buffer
	if err := protocol.WriteDelivery(&buf, &protocol.Delivery{Session: raw}); err != nil {
		hs.tb.Fatalf("WriteDelivery: %v", err)
	}
	hs.write(buf.Bytes())
}

// TestSessionDuplicatesAndTampering pushes A's session messages at B by
// hand, back to back on one stream (so that they are committed as one
// batch): a copy of a message is a replay, never lost state (no reset,
// the session goes on); a tampered copy is refused with auth; and nothing
// is stored twice or stored from a refused frame.
func TestSessionDuplicatesAndTampering(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sendAll(t, a, bID, []string{"start"})
	checkReceived(t, a, b, []string{"start"})
	sid := currentSession(t, b, aID)

	// Seal three without delivering them.
	sa := unlockedOf(t, a)
	sa.outbox.Hold(bID)
	sendAll(t, a, bID, numbered("pushed", 3))
	q := queuedFor(t, a, bID)
	if len(q) != 3 {
		t.Fatalf("%d queued", len(q))
	}
	var msgs []*protocol.SessionMessage
	for _, e := range q {
		m, err := protocol.ParseSessionMessage(e.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(x, y *protocol.SessionMessage) int { return int(x.Number) - int(y.Number) })
	tampered := slices.Clone(msgs[2].Marshal())
	tampered[len(tampered)-70] ^= 0x01 // inside the ciphertext or signature

	hs := newAttacker(t, b).open(t)
	hs.deliverSession(msgs[0].Marshal())
	hs.deliverSession(msgs[0].Marshal()) // the same, at once
	hs.deliverSession(msgs[1].Marshal())
	hs.deliverSession(tampered)
	hs.deliverSession(msgs[1].Marshal()) // again, after
	hs.expectAck(msgs[0].MsgID, protocol.AckOK)
	hs.expectAck(msgs[0].MsgID, protocol.AckReplay)
	hs.expectAck(msgs[1].MsgID, protocol.AckOK)
	if a := hs.ack(); a.Code != protocol.AckAuth && a.Code != protocol.AckMalformed {
		t.Fatalf("tampered session message: ack %s, want auth (or malformed)", a.Code)
	}
	hs.expectAck(msgs[1].MsgID, protocol.AckReplay)
	// The untampered third still opens: the refused copy changed nothing.
	hs.deliverSession(msgs[2].Marshal())
	hs.expectAck(msgs[2].MsgID, protocol.AckOK)
	hs.finish()

	checkExactlyOnce(t, convHistory(t, b, aID), append([]string{"start"}, numbered("pushed", 3)...))
	if got := currentSession(t, b, aID); got != sid {
		t.Fatalf("B's session changed (a reset?): %s, was %s", got, sid)
	}
	if n := len(queuedFor(t, b, aID)); n != 0 {
		t.Fatalf("B queued %d entries for A (a reset request?)", n)
	}
}
