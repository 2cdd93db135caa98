package node

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// TestPipelineByteBudget pushes more bytes down one stream, all at once,
// than a stream's pipeline may hold (pipelineBytes): the node reads on as
// it stores and answers, and loses nothing. Small envelopes go more than
// eight deep (up to pipelineDepth); large ones wait for room.
func TestPipelineByteBudget(t *testing.T) {
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aliceKey := fixtureKey(t, "alice-2048")
	bCard, err := protocol.ParseCardURI(meOf(t, b).Invite)
	if err != nil {
		t.Fatal(err)
	}
	toB := bCard.Recipient(time.Now())
	atk := newAttacker(t, b) // as A's second device

	frame := func(env []byte) []byte {
		var buf bytes.Buffer
		if err := protocol.WriteDelivery(&buf, &protocol.Delivery{Envelope: env}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	// Large text messages (a body of the largest size), refused
	// envelopes of the largest size (read whole, AckTooLarge), small
	// messages: the pipeline holds far less than all of them at once.
	type sent struct {
		id   protocol.MsgID
		text string
		want protocol.AckCode
	}
	var all []sent
	var stream bytes.Buffer
	big := strings.Repeat("b", protocol.MaxBodySize-64)
	tooBig := bytes.Repeat([]byte{0x08}, protocol.MaxEnvelopeSize+1)
	for i := range 60 {
		var text string
		switch {
		case i%6 == 5:
			stream.Write(frame(tooBig))
			all = append(all, sent{want: protocol.AckTooLarge})
			continue
		case i%3 == 0:
			text = fmt.Sprintf("%03d %s", i, big)
		default:
			text = fmt.Sprintf("%03d small", i)
		}
		env := atk.forge(t, aliceKey, toB, protocol.KindText, text, time.Now())
		stream.Write(frame(env.Marshal()))
		all = append(all, sent{id: env.MsgID, text: text, want: protocol.AckOK})
	}
	if stream.Len() < 2*pipelineBytes {
		t.Fatalf("%d bytes on the stream: not more than the pipeline holds", stream.Len())
	}
	hs := atk.open(t)
	done := make(chan error, 1)
	go func() {
		hs.s.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := hs.s.Write(stream.Bytes())
		done <- err
	}()
	for _, m := range all {
		hs.expectAck(m.id, m.want)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hs.finish()

	// Every message stored once, in stream order.
	var want []string
	for _, m := range all {
		if m.want == protocol.AckOK {
			want = append(want, m.text)
		}
	}
	var got []string
	for _, m := range convHistory(t, b, aliceKey.ID()) {
		got = append(got, string(m.Body))
	}
	if len(got) != len(want) {
		t.Fatalf("B stored %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d is %.12q, want %.12q", i, got[i], want[i])
		}
	}
	// The peer's next stream gets its memory reservation, and works.
	hs = atk.open(t)
	env := atk.forge(t, aliceKey, toB, protocol.KindText, "after", time.Now())
	hs.expect(env, nil, protocol.AckOK)
	hs.finish()
}
