package node

import (
	"bytes"
	"context"
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
