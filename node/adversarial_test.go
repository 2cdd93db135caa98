package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// attacker is a bare libp2p host, not a Parley node, that speaks
// /parley/msg/1.0.0 to a target node with whatever bytes the test wants.
type attacker struct {
	h      host.Host
	target peer.ID
}

func newAttacker(tb testing.TB, target *Node) *attacker {
	tb.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		tb.Fatalf("attacker host: %v", err)
	}
	tb.Cleanup(func() { h.Close() })
	info, err := target.Info(context.Background())
	if err != nil || len(info.Addrs) == 0 {
		tb.Fatalf("target Info: %+v, %v", info, err)
	}
	ai, err := peer.AddrInfoFromString(info.Addrs[0])
	if err != nil {
		tb.Fatalf("target address: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, *ai); err != nil {
		tb.Fatalf("attacker connect: %v", err)
	}
	return &attacker{h: h, target: ai.ID}
}

// hostileStream is one messaging stream from the attacker.
type hostileStream struct {
	tb testing.TB
	s  network.Stream
	br *bufio.Reader
}

func (a *attacker) open(tb testing.TB) *hostileStream {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.h.NewStream(ctx, a.target, msgProtocol)
	if err != nil {
		tb.Fatalf("attacker NewStream: %v", err)
	}
	tb.Cleanup(func() { s.Reset() })
	return &hostileStream{tb: tb, s: s, br: bufio.NewReader(s)}
}

func (hs *hostileStream) write(b []byte) {
	hs.tb.Helper()
	hs.s.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := hs.s.Write(b); err != nil {
		hs.tb.Fatalf("attacker write: %v", err)
	}
}

// deliver writes one well-formed Delivery frame.
func (hs *hostileStream) deliver(env, card []byte) {
	hs.tb.Helper()
	var buf bytes.Buffer
	if err := protocol.WriteDelivery(&buf, &protocol.Delivery{Envelope: env, SenderCard: card}); err != nil {
		hs.tb.Fatalf("WriteDelivery: %v", err)
	}
	hs.write(buf.Bytes())
}

// ack reads the next acknowledgement.
func (hs *hostileStream) ack() *protocol.Ack {
	hs.tb.Helper()
	hs.s.SetReadDeadline(time.Now().Add(15 * time.Second))
	a, err := protocol.ReadAck(hs.br)
	if err != nil {
		hs.tb.Fatalf("attacker ReadAck: %v", err)
	}
	return a
}

// expect delivers env (with card) and checks the ack's code and msg_id.
func (hs *hostileStream) expect(env *protocol.Envelope, card []byte, want protocol.AckCode) {
	hs.tb.Helper()
	hs.deliver(env.Marshal(), card)
	hs.expectAck(env.MsgID, want)
}

func (hs *hostileStream) expectAck(id protocol.MsgID, want protocol.AckCode) {
	hs.tb.Helper()
	a := hs.ack()
	if a.Code != want || a.MsgID != id {
		hs.tb.Fatalf("ack = {%s %s %q}, want {%s %s}", a.Code, a.MsgID, a.Detail, want, id)
	}
}

// expectEnd checks that the node sends nothing more and ends the stream.
func (hs *hostileStream) expectEnd() {
	hs.tb.Helper()
	hs.s.SetReadDeadline(time.Now().Add(15 * time.Second))
	a, err := protocol.ReadAck(hs.br)
	if err == nil {
		hs.tb.Fatalf("another ack after the end: %+v", a)
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		hs.tb.Fatalf("the node did not end the stream: %v", err)
	}
}

// finish ends the stream gracefully: the node answers what it read, then
// sees EOF and closes.
func (hs *hostileStream) finish() {
	hs.tb.Helper()
	hs.s.CloseWrite()
	hs.expectEnd()
	hs.s.Close()
}

// forge seals an envelope as from (on the attacker's device) to r.
func (a *attacker) forge(tb testing.TB, from *protocol.PrivateKey, r protocol.Recipient, kind protocol.Kind, body string, now time.Time) *protocol.Envelope {
	tb.Helper()
	s := protocol.Sender{UserID: from.ID(), Key: from, Device: []byte(a.h.ID())}
	env, err := protocol.Seal(s, r, kind, []byte(body), now)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return env
}

// mutate parses raw, changes it and encodes it again.
func mutate(tb testing.TB, env *protocol.Envelope, f func(e *protocol.Envelope)) []byte {
	tb.Helper()
	e, err := protocol.ParseEnvelope(env.Marshal())
	if err != nil {
		tb.Fatal(err)
	}
	f(e)
	return e.Marshal()
}

// honestTraffic is a friend sending steadily in the background: one
// message at a time, the next as soon as the last was delivered, so it
// never builds a backlog whatever the machine's speed.
type honestTraffic struct {
	mu   sync.Mutex
	sent map[protocol.MsgID]string
	errs []error
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func startHonestTraffic(tb testing.TB, a *Node, to protocol.ID) *honestTraffic {
	h := &honestTraffic{sent: make(map[protocol.MsgID]string), stop: make(chan struct{}), done: make(chan struct{})}
	events, cancel := a.Subscribe(context.Background())
	go func() {
		defer close(h.done)
		defer cancel()
		for i := 0; ; i++ {
			body := fmt.Sprintf("honest %d", i)
			m, err := a.Send(context.Background(), to, body)
			h.mu.Lock()
			if err != nil {
				h.errs = append(h.errs, err)
			} else {
				h.sent[m.ID] = body
			}
			h.mu.Unlock()
			if err != nil {
				return
			}
			for delivered := false; !delivered; {
				select {
				case <-h.stop:
					return
				case e := <-events:
					delivered = e.Type == EventOverflow || // lost track: go on
						e.Type == EventMessageStatus && e.Message.ID == m.ID && e.Message.Status == store.StatusDelivered
				}
			}
		}
	}()
	tb.Cleanup(h.halt)
	return h
}

func (h *honestTraffic) halt() {
	h.once.Do(func() { close(h.stop) })
	<-h.done
}

func (h *honestTraffic) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sent)
}

// keepsUp waits until the friend sent during the attack and everything
// it sent so far reached b.
func (h *honestTraffic) keepsUp(tb testing.TB, b *Node, from protocol.ID, before int) {
	tb.Helper()
	waitFor(tb, 10*time.Second, "the honest friend sends during the attack", func() bool { return h.count() > before })
	h.mu.Lock()
	want := make(map[protocol.MsgID]bool, len(h.sent))
	for id := range h.sent {
		want[id] = true
	}
	errs := h.errs
	h.mu.Unlock()
	if len(errs) > 0 {
		tb.Fatalf("honest Send failed: %v", errs)
	}
	waitFor(tb, 20*time.Second, "the honest friend's messages arrive during the attack", func() bool {
		n := 0
		for _, m := range convHistory(tb, b, from) {
			if want[m.ID] {
				n++
			}
		}
		return n == len(want)
	})
}

func TestAdversarialRawClient(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aliceKey, carolKey := fixtureKey(t, "alice-2048"), fixtureKey(t, "carol-2048")
	aID, carolID := aliceKey.ID(), carolKey.ID()
	bCard, err := protocol.ParseCardURI(meOf(t, b).Invite)
	if err != nil {
		t.Fatal(err)
	}
	aCard, err := protocol.ParseCardURI(meOf(t, a).Invite)
	if err != nil {
		t.Fatal(err)
	}
	toB := bCard.Recipient(time.Now()) // suite 2, B's prekey
	if toB.Prekey == nil {
		t.Fatal("B's card carries no prekey")
	}
	toBsuite1 := protocol.Recipient{UserID: bCard.UserID, Key: bCard.Key}
	toCarol := protocol.Recipient{UserID: carolID, Key: carolKey.Public()}

	events := watch(t, b)
	honest := startHonestTraffic(t, a, bCard.UserID)
	atk := newAttacker(t, b)
	legit := make(map[protocol.MsgID]string) // what the attacker may store, as A's other device

	// nothingStored checks B after an attack: A is B's only friend, A's
	// conversation the only one, and every message in it was sent by the
	// honest friend or is one of the legitimate envelopes, exactly once.
	nothingStored := func(t *testing.T, strict bool) {
		t.Helper()
		fs, err := b.Friends(ctx)
		if err != nil || len(fs) != 1 || fs[0].UserID != aID || fs[0].Status != store.FriendAccepted {
			t.Fatalf("B's friends changed: %+v, %v", fs, err)
		}
		cs, err := b.Conversations(ctx)
		if err != nil || len(cs) != 1 || cs[0].With != aID {
			t.Fatalf("B's conversations changed: %+v, %v", cs, err)
		}
		if ms := convHistory(t, b, carolID); len(ms) != 0 {
			t.Fatalf("B stored %d messages from carol", len(ms))
		}
		honest.mu.Lock()
		defer honest.mu.Unlock()
		seen := make(map[protocol.MsgID]bool)
		for _, m := range convHistory(t, b, aID) {
			if seen[m.ID] {
				t.Fatalf("message %s stored twice", m.ID)
			}
			seen[m.ID] = true
			want, ok := legit[m.ID]
			if !ok {
				want, ok = honest.sent[m.ID]
			}
			if !ok && !strict && bytes.HasPrefix(m.Body, []byte("honest ")) {
				continue // sent, Send has not returned to the sender yet
			}
			if !ok || string(m.Body) != want || m.From != aID {
				t.Fatalf("B stored an unexpected message %s from %s: %q", m.ID, m.From, m.Body)
			}
		}
		if e, ok := events.find(func(e Event) bool { return e.Friend.UserID == carolID }); ok {
			t.Fatalf("B published a friend event for carol: %+v", e)
		}
	}
	attack := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			before := honest.count()
			f(t)
			nothingStored(t, false)
			honest.keepsUp(t, b, aID, before)
		})
	}

	original := atk.forge(t, aliceKey, toB, protocol.KindText, "from A's other device", time.Now())
	attack("tampered", func(t *testing.T) {
		hs := atk.open(t)
		flips := map[string]func(e *protocol.Envelope){
			"ciphertext": func(e *protocol.Envelope) { e.Ciphertext[len(e.Ciphertext)/2] ^= 0x01 },
			"signature":  func(e *protocol.Envelope) { e.Signature[7] ^= 0x80 },
			"timestamp":  func(e *protocol.Envelope) { e.Timestamp-- },
			"wrapped key": func(e *protocol.Envelope) {
				e.WrappedKey[3] ^= 0x10
			},
			"ephemeral": func(e *protocol.Envelope) { e.Ephemeral[0] ^= 0x02 },
		}
		for what, f := range flips {
			hs.deliver(mutate(t, original, f), nil)
			if a := hs.ack(); a.Code != protocol.AckAuth || a.MsgID != original.MsgID {
				t.Fatalf("%s flipped: ack {%s %s}, want auth", what, a.Code, a.MsgID)
			}
		}
		// A tampered copy does not burn the msg_id: the real one goes through.
		hs.expect(original, nil, protocol.AckOK)
		legit[original.MsgID] = "from A's other device"
		hs.finish()
	})

	attack("replay", func(t *testing.T) {
		hs := atk.open(t)
		hs.expect(original, nil, protocol.AckReplay) // on a new stream, after the stream that delivered it ended
		// Back to back on one stream: the second is checked while the
		// first may still be on its way to the disk.
		again := atk.forge(t, aliceKey, toB, protocol.KindText, "twice", time.Now())
		raw := again.Marshal()
		hs.deliver(raw, nil)
		hs.deliver(raw, nil)
		hs.expectAck(again.MsgID, protocol.AckOK)
		legit[again.MsgID] = "twice"
		hs.expectAck(again.MsgID, protocol.AckReplay)
		hs.expect(again, nil, protocol.AckReplay)
		hs.finish()
		n := 0
		for _, m := range convHistory(t, b, aID) {
			if m.ID == original.MsgID || m.ID == again.MsgID {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("%d copies of the two replayed messages, want exactly one each", n)
		}
	})

	attack("misaddressed", func(t *testing.T) {
		hs := atk.open(t)
		hs.expect(atk.forge(t, aliceKey, toCarol, protocol.KindText, "for carol", time.Now()), nil, protocol.AckNotForMe)
		// B's user ID in the header, but wrapped to another key.
		wrongKey := protocol.Recipient{UserID: bCard.UserID, Key: carolKey.Public()}
		hs.expect(atk.forge(t, aliceKey, wrongKey, protocol.KindText, "for carol's key", time.Now()), nil, protocol.AckNotForMe)
		hs.finish()
	})

	attack("oversized frame", func(t *testing.T) {
		hs := atk.open(t)
		frame := binary.AppendUvarint(nil, protocol.MaxDeliverySize+1)
		hs.write(append(frame, bytes.Repeat([]byte{0x0a}, 512)...))
		hs.expectAck(protocol.MsgID{}, protocol.AckTooLarge)
		hs.expectEnd() // it cannot find the next frame: the stream ends
		hs.s.Close()
	})

	attack("broken length prefix", func(t *testing.T) {
		hs := atk.open(t)
		// Eleven bytes of uvarint: more than 64 bits, no frame boundary
		// to find after it.
		hs.write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
		hs.expectAck(protocol.MsgID{}, protocol.AckMalformed)
		hs.expectEnd()
		hs.s.Close()
	})

	attack("oversized envelope", func(t *testing.T) {
		hs := atk.open(t)
		big := bytes.Repeat([]byte{0x08}, protocol.MaxEnvelopeSize+1)
		if len(big)+64 > protocol.MaxDeliverySize {
			t.Fatal("the envelope does not fit a frame")
		}
		hs.deliver(big, nil)
		hs.expectAck(protocol.MsgID{}, protocol.AckTooLarge)
		// The frame was read whole: the stream goes on.
		next := atk.forge(t, aliceKey, toB, protocol.KindText, "after a big one", time.Now())
		hs.expect(next, nil, protocol.AckOK)
		legit[next.MsgID] = "after a big one"
		hs.finish()
	})

	attack("truncated frame", func(t *testing.T) {
		hs := atk.open(t)
		env := atk.forge(t, aliceKey, toB, protocol.KindText, "cut short", time.Now())
		var buf bytes.Buffer
		if err := protocol.WriteDelivery(&buf, &protocol.Delivery{Envelope: env.Marshal()}); err != nil {
			t.Fatal(err)
		}
		hs.write(buf.Bytes()[:buf.Len()/2])
		hs.finish() // no ack: the node just ends the stream
		// The node still serves, and the envelope was not half-stored.
		hs = atk.open(t)
		hs.expect(env, nil, protocol.AckOK)
		legit[env.MsgID] = "cut short"
		hs.finish()
	})

	attack("garbage frame", func(t *testing.T) {
		hs := atk.open(t)
		rng := rand.New(rand.NewPCG(1, 2))
		junk := make([]byte, 300)
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		junk[0] = 0x07 // field 0, wire type 7: never valid protobuf
		hs.write(append(binary.AppendUvarint(nil, uint64(len(junk))), junk...))
		hs.expectAck(protocol.MsgID{}, protocol.AckMalformed)
		// A well-formed frame whose envelope is junk.
		hs.deliver(junk, nil)
		hs.expectAck(protocol.MsgID{}, protocol.AckMalformed)
		// An envelope with a field out of range.
		hs.deliver(mutate(t, original, func(e *protocol.Envelope) { e.Nonce = e.Nonce[:4] }), nil)
		hs.expectAck(protocol.MsgID{}, protocol.AckMalformed)
		// The stream stays in step and serves the next frame.
		next := atk.forge(t, aliceKey, toB, protocol.KindText, "after garbage", time.Now())
		hs.expect(next, nil, protocol.AckOK)
		legit[next.MsgID] = "after garbage"
		hs.finish()
	})

	attack("too many rejects", func(t *testing.T) {
		hs := atk.open(t)
		junk := []byte{0x07, 0x01, 0x02}
		for range maxRejects {
			hs.deliver(junk, nil)
		}
		for range maxRejects {
			hs.expectAck(protocol.MsgID{}, protocol.AckMalformed)
		}
		hs.expectEnd() // a stream of nothing but rejects is closed
		hs.s.Close()
	})

	attack("stale", func(t *testing.T) {
		hs := atk.open(t)
		// Seal checks the prekey against the sealing time, so an old
		// envelope is suite 1.
		hs.expect(atk.forge(t, aliceKey, toBsuite1, protocol.KindText, "old", time.Now().Add(-15*24*time.Hour)), nil, protocol.AckStale)
		hs.expect(atk.forge(t, aliceKey, toBsuite1, protocol.KindText, "future", time.Now().Add(time.Hour)), nil, protocol.AckStale)
		hs.finish()
	})

	attack("not a friend", func(t *testing.T) {
		hs := atk.open(t)
		hs.expect(atk.forge(t, carolKey, toB, protocol.KindText, "hi, stranger", time.Now()), nil, protocol.AckNotAFriend)
		hs.expect(atk.forge(t, carolKey, toB, protocol.KindReceipt, string(protocol.MarshalReceipt(original.MsgID)), time.Now()), nil, protocol.AckNotAFriend)
		// An accept nobody asked for, even with carol's own card.
		carolCard, err := protocol.NewCard(carolKey, "Carol", [][]byte{[]byte(atk.h.ID())}, nil, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hs.expect(atk.forge(t, carolKey, toB, protocol.KindContactAccept, string(carolCard.Marshal()), time.Now()), carolCard.Marshal(), protocol.AckNotAFriend)
		// Text signed by carol but claiming to be from A: it names a key
		// that is not A's pinned one, which could be a rotation, so B
		// looks A's record up and asks the sender to retry; it is never
		// stored (finish checks).
		forged := atk.forge(t, carolKey, toB, protocol.KindText, "I am alice", time.Now())
		hs.deliver(mutate(t, forged, func(e *protocol.Envelope) { e.Sender = aID }), nil)
		if a := hs.ack(); a.Code != protocol.AckUnavailable {
			t.Fatalf("carol posing as A: ack %s, want unavailable (retry once the directory was asked)", a.Code)
		}
		// Signed by carol, naming A's pinned key ID: the signature fails.
		forged = atk.forge(t, carolKey, toB, protocol.KindText, "I am alice", time.Now())
		hs.deliver(mutate(t, forged, func(e *protocol.Envelope) { e.Sender, e.SenderKey = aID, aliceKey.ID() }), nil)
		if a := hs.ack(); a.Code != protocol.AckAuth {
			t.Fatalf("carol posing as A with A's key ID: ack %s, want auth", a.Code)
		}
		hs.finish()
	})

	// A contact request whose card is another user's. Where the card sits
	// decides the code: the unsigned SenderCard that introduces a stranger
	// is checked before the envelope is opened (its user must be the
	// sender, else not-a-friend: B has no key to check the sender with);
	// the card in the signed body is checked after opening, against the
	// key that verified it (malformed).
	attack("contact request with another user's card", func(t *testing.T) {
		carolCard, err := protocol.NewCard(carolKey, "Carol", [][]byte{[]byte(atk.h.ID())}, nil, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hs := atk.open(t)
		req := atk.forge(t, carolKey, toB, protocol.KindContactRequest, string(carolCard.Marshal()), time.Now())
		hs.expect(req, aCard.Marshal(), protocol.AckNotAFriend)
		req = atk.forge(t, carolKey, toB, protocol.KindContactRequest, string(aCard.Marshal()), time.Now())
		hs.expect(req, carolCard.Marshal(), protocol.AckMalformed)
		hs.finish()
		if st := friendStatus(b, carolID); st != "" {
			t.Fatalf("carol is B's friend with status %s", st)
		}
	})

	honest.halt()
	honest.mu.Lock()
	want := len(honest.sent) + len(legit)
	errs := honest.errs
	honest.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("honest Send failed: %v", errs)
	}
	waitFor(t, 20*time.Second, "every honest message arrives once", func() bool {
		return len(convHistory(t, b, aID)) >= want
	})
	nothingStored(t, true)
	if n := len(convHistory(t, b, aID)); n != want {
		t.Fatalf("B holds %d messages from A, want %d", n, want)
	}
	waitFor(t, 10*time.Second, "A sees every honest message delivered", func() bool {
		return allStatus(convHistory(t, a, bCard.UserID), store.StatusDelivered)
	})
}
