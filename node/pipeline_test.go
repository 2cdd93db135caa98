package node

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestAcceptThenTextOnOneStream: a friend's accept and their first
// message arrive back to back on one stream, so the message is opened
// while the accept is not stored yet. It must be taken once the accept
// has taken effect, in order; the same message without the accept is
// refused, and nothing of it stored.
func TestAcceptThenTextOnOneStream(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	atk := newAttacker(t, a)
	carolKey := fixtureKey(t, "carol-2048")
	var addrs []string
	for _, ad := range atk.h.Addrs() {
		addrs = append(addrs, ad.String())
	}
	carolCard, err := protocol.NewCard(carolKey, "Carol", [][]byte{[]byte(atk.h.ID())}, addrs, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddFriend(ctx, carolCard.URI()); err != nil {
		t.Fatal(err)
	}
	aCard, err := protocol.ParseCardURI(meOf(t, a).Invite)
	if err != nil {
		t.Fatal(err)
	}
	toA := aCard.Recipient(time.Now())

	// Before any accept: Carol is only someone Alice asked.
	hs := atk.open(t)
	early := atk.forge(t, carolKey, toA, protocol.KindText, "too early", time.Now())
	hs.expect(early, nil, protocol.AckNotAFriend)
	hs.finish()
	if ms := convHistory(t, a, carolKey.ID()); len(ms) != 0 {
		t.Fatalf("stored %d messages before the accept", len(ms))
	}

	accept := atk.forge(t, carolKey, toA, protocol.KindContactAccept, string(carolCard.Marshal()), time.Now())
	text := atk.forge(t, carolKey, toA, protocol.KindText, "right after", time.Now())
	var buf bytes.Buffer
	for _, env := range []*protocol.Envelope{accept, text} {
		if err := protocol.WriteDelivery(&buf, &protocol.Delivery{Envelope: env.Marshal()}); err != nil {
			t.Fatal(err)
		}
	}
	hs = atk.open(t)
	hs.write(buf.Bytes()) // one write: both frames reach the reader together
	hs.expectAck(accept.MsgID, protocol.AckOK)
	hs.expectAck(text.MsgID, protocol.AckOK)
	hs.finish()
	if got := friendStatus(a, carolKey.ID()); got != store.FriendAccepted {
		t.Fatalf("carol is %q, want accepted", got)
	}
	ms := convHistory(t, a, carolKey.ID())
	if len(ms) != 1 || string(ms[0].Body) != "right after" {
		t.Fatalf("history %q", bodies(ms))
	}
}

// TestEnvelopeBurstStoredOnce: a burst of a friend's chat envelopes on
// one stream, with a copy, a forged signature and a stranger's envelope
// among them, is answered in order, and each good envelope is stored
// once (the committer stores what is opened together in one
// transaction): the copy is a replay, the forgery and the stranger's
// are refused and stored nowhere.
func TestEnvelopeBurstStoredOnce(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aKey, carolKey := fixtureKey(t, "alice-2048"), fixtureKey(t, "carol-2048")
	bCard, err := protocol.ParseCardURI(meOf(t, b).Invite)
	if err != nil {
		t.Fatal(err)
	}
	toB := bCard.Recipient(time.Now())
	atk := newAttacker(t, b)
	type frame struct {
		raw  []byte
		id   protocol.MsgID
		want protocol.AckCode
	}
	var frames []frame
	var want []string
	good := func(text string) *protocol.Envelope {
		env := atk.forge(t, aKey, toB, protocol.KindText, text, time.Now())
		frames = append(frames, frame{env.Marshal(), env.MsgID, protocol.AckOK})
		want = append(want, text)
		return env
	}
	for i := range 4 {
		good(fmt.Sprintf("burst %d", i))
	}
	dup := good("burst 4")
	frames = append(frames, frame{dup.Marshal(), dup.MsgID, protocol.AckReplay})
	forged := atk.forge(t, aKey, toB, protocol.KindText, "forged", time.Now())
	forged.Signature[7] ^= 1
	frames = append(frames, frame{forged.Marshal(), forged.MsgID, protocol.AckAuth})
	for i := 5; i < 9; i++ {
		good(fmt.Sprintf("burst %d", i))
	}
	stranger := atk.forge(t, carolKey, toB, protocol.KindText, "stranger", time.Now())
	frames = append(frames, frame{stranger.Marshal(), stranger.MsgID, protocol.AckNotAFriend})
	for i := 9; i < 12; i++ {
		good(fmt.Sprintf("burst %d", i))
	}
	var buf bytes.Buffer
	for _, f := range frames {
		if err := protocol.WriteDelivery(&buf, &protocol.Delivery{Envelope: f.raw}); err != nil {
			t.Fatal(err)
		}
	}
	hs := atk.open(t)
	hs.write(buf.Bytes()) // one write: the frames reach the reader together
	for _, f := range frames {
		hs.expectAck(f.id, f.want)
	}
	hs.finish()
	aID := meOf(t, a).UserID
	var in []store.Message
	for _, m := range convHistory(t, b, aID) {
		if m.Direction == store.In {
			in = append(in, m)
		}
	}
	checkExactlyOnce(t, in, want)
	if ms := convHistory(t, b, carolKey.ID()); len(ms) != 0 {
		t.Fatalf("stored %d messages of a stranger", len(ms))
	}
}
