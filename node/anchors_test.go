package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// streamFrom is a messaging stream from n's own libp2p host (one of its
// user's devices) to target.
func streamFrom(tb testing.TB, n, target *Node) *hostileStream {
	tb.Helper()
	a := &attacker{h: unlockedOf(tb, n).host, target: unlockedOf(tb, target).host.ID()}
	return a.open(tb)
}

// sessionsBlob is n's stored session state with peer (nil if none).
func sessionsBlob(tb testing.TB, n *Node, peer protocol.ID) []byte {
	tb.Helper()
	b, err := unlockedOf(tb, n).st.Sessions(context.Background(), peer)
	if isErr(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// unknownSessionMessage is a well-formed session message from sender to
// recipient naming a session nobody has: anyone can make one, no key is
// needed.
func unknownSessionMessage(tb testing.TB, sender, recipient protocol.ID) *protocol.SessionMessage {
	tb.Helper()
	m := &protocol.SessionMessage{
		SessionHeader: protocol.SessionHeader{
			Version: protocol.SessionVersion, SigAlg: protocol.SigSession, Kind: protocol.KindText,
			Timestamp: time.Now().UnixMilli(), Sender: sender, Recipient: recipient,
		},
		Ciphertext: make([]byte, 256+16),
		Signature:  make([]byte, 64),
	}
	for _, b := range [][]byte{m.MsgID[:], m.Session[:], m.RatchetKey[:], m.Ciphertext, m.Signature} {
		rand.Read(b)
	}
	return m
}

// TestUnknownSessionFromStranger: a host that is not one of A's devices
// sends B a session message that claims to be from A and names an unknown
// session. B refuses it (stale) and does nothing else: no reset is signed
// or queued, no state is stored. The same message from A's own device
// makes B ask A for a new session.
func TestUnknownSessionFromStranger(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	// A's outbox is held, so that B's reset (if any) stays in B's queue
	// only as long as B's courier needs; B's is held to look at it.
	unlockedOf(t, b).outbox.Hold(aID)
	before := sessionsBlob(t, b, aID)

	hs := newAttacker(t, b).open(t)
	for range 3 {
		m := unknownSessionMessage(t, aID, bID)
		hs.deliverSession(m.Marshal())
		hs.expectAck(m.MsgID, protocol.AckStale)
	}
	hs.finish()
	if q := queuedFor(t, b, aID); len(q) != 0 {
		t.Fatalf("a stranger's session message made B queue %d entries for A", len(q))
	}
	if after := sessionsBlob(t, b, aID); !bytes.Equal(after, before) {
		t.Fatal("a stranger's session message changed B's stored sessions")
	}

	// From A's own device: B refuses the session and queues a reset.
	m := unknownSessionMessage(t, aID, bID)
	own := streamFrom(t, a, b)
	own.deliverSession(m.Marshal())
	own.expectAck(m.MsgID, protocol.AckStale)
	own.finish()
	q := queuedFor(t, b, aID)
	if len(q) != 1 || !q[0].Control {
		t.Fatalf("B queued %+v for A after an unknown session from A's device, want one reset", q)
	}
	env, err := protocol.ParseEnvelope(q[0].Envelope)
	if err != nil || env.Kind != protocol.KindSessionReset {
		t.Fatalf("queued entry: %v, %v", env, err)
	}
	if id, err := protocol.ParseSessionReset(mustOpenReset(t, a, q[0].Envelope)); err != nil || id != m.Session {
		t.Fatalf("the reset names %s (%v), want %s", id, err, m.Session)
	}
}

// mustOpenReset opens a reset envelope addressed to n.
func mustOpenReset(tb testing.TB, n *Node, raw []byte) []byte {
	tb.Helper()
	s := unlockedOf(tb, n)
	env, err := protocol.ParseEnvelope(raw)
	if err != nil {
		tb.Fatal(err)
	}
	fe := s.friends.friend(env.Sender)
	if fe == nil {
		tb.Fatal("reset from a stranger")
	}
	o := protocol.Opener{
		UserID: s.me, Key: s.keys.identity(), Prekey: s.keys.prekeyByID,
		SenderKey: func(protocol.ID, protocol.ID) (*protocol.PublicKey, error) { return fe.key, nil },
	}
	m, err := o.Open(raw)
	if err != nil {
		tb.Fatalf("open the reset: %v", err)
	}
	return m.Body
}

// rotationPair starts a relay and two befriended nodes on test clocks
// with a one-minute KeyGrace; A rotates from g to k2 when asked.
func rotationPair(t *testing.T) (a, b *Node, ca, cb *testClock, g, k2 *protocol.PrivateKey, acfg, bcfg Config) {
	t.Helper()
	relay := startRelays(t, 1)[0]
	g, k2 = fixtureKey(t, "alice-2048"), fixtureKey(t, "alice-3072")
	ca, cb = newRunningClock(), newRunningClock()
	acfg = dirConfig(t, g, relay.Addrs()[0])
	acfg.NewKey, acfg.Now, acfg.KeyGrace = keyQueue(g, k2), ca.Now, time.Minute
	bcfg = dirConfig(t, fixtureKey(t, "bob-2048"), relay.Addrs()[0])
	bcfg.Now, bcfg.KeyGrace = cb.Now, time.Minute
	a = startNode(t, acfg, "Alice")
	b = startNode(t, bcfg, "Bob")
	waitPublished(t, a)
	waitPublished(t, b)
	befriend(t, a, b)
	return a, b, ca, cb, g, k2, acfg, bcfg
}

// pastGrace moves both clocks past the one-minute KeyGrace.
func pastGrace(ca, cb *testClock) {
	ca.Advance(2 * time.Minute)
	cb.Advance(2 * time.Minute)
}

// TestRotationEndsOldSessions: A's session with B is anchored in A's
// key g. A rotates to k2 and B pins k2. A message of that session (sealed
// before the rotation, and delivered late from A's device) still opens
// during g's grace, and is refused once the grace is over: nothing is
// stored, B drops the session. A's next message starts a new session
// anchored in k2, and arrives once.
func TestRotationEndsOldSessions(t *testing.T) {
	ctx := context.Background()
	a, b, ca, cb, g, k2, _, _ := rotationPair(t)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sendAndWait(t, a, b, "start")
	sendAndWait(t, b, a, "reply")
	s1 := currentSession(t, b, aID)
	if _, theirs := storedSessions(t, b, aID).Current().Keys(); theirs != g.ID() {
		t.Fatal("B's session is not anchored in A's genesis key")
	}

	// Two messages of the g session, taken out of A's queue to be
	// delivered by hand.
	sa := unlockedOf(t, a)
	sa.outbox.Hold(bID)
	sendAll(t, a, bID, []string{"late 1", "late 2"})
	var held [][]byte
	for _, e := range queuedFor(t, a, bID) {
		if !e.Session {
			t.Fatal("not a session message")
		}
		held = append(held, e.Envelope)
		if err := sa.st.RemoveOutbox(ctx, e.MsgID); err != nil {
			t.Fatal(err)
		}
	}
	if len(held) != 2 {
		t.Fatalf("%d held", len(held))
	}
	sa.outbox.Rush(bID)

	if err := a.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "B pins k2", func() bool {
		fe := unlockedOf(t, b).friends.friend(aID)
		return fe != nil && fe.key.Equal(k2.Public())
	})

	// In the grace: the g session still opens.
	m1, _ := protocol.ParseSessionMessage(held[0])
	m2, _ := protocol.ParseSessionMessage(held[1])
	if m1.Number > m2.Number {
		m1, m2 = m2, m1
	}
	hs := streamFrom(t, a, b)
	hs.deliverSession(m1.Marshal())
	hs.expectAck(m1.MsgID, protocol.AckOK)
	hs.finish()

	// Past the grace: refused, nothing stored, the session dropped.
	pastGrace(ca, cb)
	hs = streamFrom(t, a, b)
	hs.deliverSession(m2.Marshal())
	hs.expectAck(m2.MsgID, protocol.AckStale)
	hs.finish()
	if p := storedSessions(t, b, aID); p.Session(s1, cb.Now()) != nil {
		t.Fatal("B keeps the session anchored in A's retired key")
	}
	for _, m := range convHistory(t, b, aID) {
		if m.ID == m2.MsgID {
			t.Fatal("B stored a message of a session anchored in a retired key")
		}
	}

	// A new session, anchored in k2.
	sendAndWait(t, a, b, "after the grace")
	p := storedSessions(t, b, aID)
	if c := p.Current(); c == nil || c.ID() == s1 {
		t.Fatal("no new session")
	} else if mine, theirs := c.Keys(); theirs != k2.ID() || mine != unlockedOf(t, b).keys.identity().ID() {
		t.Fatal("the new session is not anchored in k2")
	}
	checkExactlyOnce(t, receivedOf(convHistory(t, b, aID)), []string{"start", "late 1", "after the grace"})
}

// receivedOf are the received messages of ms.
func receivedOf(ms []store.Message) []store.Message {
	var out []store.Message
	for _, m := range ms {
		if m.Direction == store.In {
			out = append(out, m)
		}
	}
	return out
}

// TestRotationRetiredKeyGraceAndReseal: B seals to A's previous key.
// In its grace, A opens a single envelope and accepts a session start
// sealed to it. Past the grace, such an envelope gets a retryable answer
// (unavailable, not not-for-me) once its signature verified (a forged
// one is auth); and a message B queued before A rotated, in the session
// anchored in A's previous key, reaches A after B seals it again (B
// learns the new key from A's answer), exactly once.
func TestRotationRetiredKeyGraceAndReseal(t *testing.T) {
	ctx := context.Background()
	a, b, ca, cb, g, k2, _, _ := rotationPair(t)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sendAndWait(t, a, b, "start")
	sendAndWait(t, b, a, "reply")
	sa, bs := unlockedOf(t, a), unlockedOf(t, b)
	oldPrekey := sa.keys.snapshot().prekey.Signed
	sender := protocol.Sender{UserID: bID, Key: bs.keys.identity(), Device: []byte(bs.host.ID())}

	// B queues a message for A, held; A rotates, and its notice to B
	// is dropped: B does not hear of the new key.
	bs.outbox.Hold(aID)
	sa.outbox.Hold(bID)
	if _, err := b.Send(ctx, aID, "queued before the rotation"); err != nil {
		t.Fatal(err)
	}
	if err := a.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sa.outbox.Drop(ctx, bID, "test: B must not learn the new key yet"); err != nil {
		t.Fatal(err)
	}
	sa.outbox.Rush(bID)

	// In the grace, from B's device: a single envelope and a session
	// start, both sealed to g, open.
	env, err := protocol.Seal(sender, protocol.Recipient{UserID: aID, Key: g.Public()}, protocol.KindText, []byte("envelope to g"), cb.Now())
	if err != nil {
		t.Fatal(err)
	}
	ps := protocol.NewPeerSessions(bID, aID)
	start, err := ps.Start(sender, protocol.Recipient{UserID: aID, Key: g.Public(), Prekey: &oldPrekey}, protocol.KindText, []byte("start to g"), cb.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs := streamFrom(t, b, a)
	hs.expect(env, nil, protocol.AckOK)
	hs.expect(start, nil, protocol.AckOK)
	hs.finish()

	// Past the grace: retryable once the signature verified. (Not from
	// B's device, so A sends no card for it.)
	pastGrace(ca, cb)
	late, err := protocol.Seal(sender, protocol.Recipient{UserID: aID, Key: g.Public()}, protocol.KindText, []byte("envelope to g, late"), cb.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged := mutate(t, late, func(e *protocol.Envelope) { e.Signature[3] ^= 1 })
	hs = newAttacker(t, a).open(t)
	hs.deliver(forged, nil)
	hs.expectAck(late.MsgID, protocol.AckAuth)
	hs.expect(late, nil, protocol.AckUnavailable)
	hs.finish()
	if q := queuedFor(t, a, bID); len(q) != 0 {
		t.Fatalf("A queued %d entries for B after a stream from a stranger", len(q))
	}

	// B's queued message goes now: A refuses its session (anchored in
	// g); B seals it again, to g, which A answers with unavailable and
	// its card; B then seals it to k2. It arrives once.
	bs.outbox.Rush(aID)
	waitFor(t, 60*time.Second, "the queued message delivered", func() bool {
		for _, m := range convHistory(t, b, aID) {
			if string(m.Body) == "queued before the rotation" {
				return m.Status == store.StatusDelivered
			}
		}
		return false
	})
	if fe := bs.friends.friend(aID); fe == nil || !fe.key.Equal(k2.Public()) {
		t.Fatal("B did not learn k2")
	}
	checkExactlyOnce(t, receivedOf(convHistory(t, a, bID)),
		[]string{"reply", "envelope to g", "start to g", "queued before the rotation"})
}

// TestSeenIDAfterSignature: whether a msg_id has arrived is told only to
// a sender whose signature verified. A stranger who reuses the msg_id of
// a message B stored gets auth (or stale, for a session B cannot check),
// never replay; A's own signed copy gets replay.
func TestSeenIDAfterSignature(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sendAll(t, a, bID, []string{"start", "second"})
	checkReceived(t, a, b, []string{"start", "second"})
	got := receivedOf(convHistory(t, b, aID))
	x, y := got[0].ID, got[1].ID // an envelope (the start), a session message
	sid := currentSession(t, b, aID)

	hs := newAttacker(t, b).open(t)
	for _, id := range []protocol.MsgID{x, y} {
		// A session message of the live session, with a forged signature.
		m := unknownSessionMessage(t, aID, bID)
		m.MsgID, m.Session = id, sid
		hs.deliverSession(m.Marshal())
		hs.expectAck(id, protocol.AckAuth)
		// One of an unknown session.
		m = unknownSessionMessage(t, aID, bID)
		m.MsgID = id
		hs.deliverSession(m.Marshal())
		hs.expectAck(id, protocol.AckStale)
	}
	// An envelope with A's key, the stored msg_id and a broken signature.
	alice := unlockedOf(t, a).keys.identity()
	env, err := protocol.SealWithID(protocol.Sender{UserID: aID, Key: alice}, unlockedOf(t, a).friends.recipient(unlockedOf(t, a).friends.friend(bID)),
		protocol.KindText, x, []byte("copy"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs.deliver(mutate(t, env, func(e *protocol.Envelope) { e.Signature[7] ^= 1 }), nil)
	hs.expectAck(x, protocol.AckAuth)
	// Signed by A: replay.
	hs.expect(env, nil, protocol.AckReplay)
	hs.finish()
	checkExactlyOnce(t, receivedOf(convHistory(t, b, aID)), []string{"start", "second"})
	if q := queuedFor(t, b, aID); len(q) != 0 {
		t.Fatalf("B queued %d entries for A", len(q))
	}
}
