package protocol

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
)

// goldenRelaySync is the golden relay sync request: the golden ticket of
// epoch 1 asking for alice's chain (seed 0x01) from iteration 0 and bob's
// (seed 0x02) from iteration 7, as one frame (uvarint length ‖
// pb.RelaySyncRequest), in testdata/golden/relay-tickets/sync-request.bin.
// Regenerate with go test ./protocol/ -run '^TestGoldenRelaySync' -update.
const goldenRelaySyncFile = "sync-request.bin"

func goldenRelaySyncRequest(t *testing.T) *RelaySyncRequest {
	t.Helper()
	t1, _ := goldenTicketPair(t)
	s1, _ := goldenTicketStates(t)
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	a1, b1 := seededChain(s1, alice.ID(), 1), seededChain(s1, bob.ID(), 2)
	return &RelaySyncRequest{Ticket: t1, Wants: []RelaySyncWant{{Chain: a1.ID()}, {Chain: b1.ID(), From: 7}}}
}

// goldenSpecRelaySync encodes a request frame by hand, as doc.go says:
// field 1 the ticket, field 2 per want {1: chain, 2: from (omitted when
// 0)}, in order.
func goldenSpecRelaySync(r *RelaySyncRequest) []byte {
	field := func(b []byte, n byte, v []byte) []byte {
		return append(binary.AppendUvarint(append(b, n<<3|2), uint64(len(v))), v...)
	}
	b := field(nil, 1, r.Ticket.Marshal())
	for _, w := range r.Wants {
		x := field(nil, 1, w.Chain[:])
		if w.From != 0 {
			x = binary.AppendUvarint(append(x, 2<<3), uint64(w.From))
		}
		b = field(b, 2, x)
	}
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}

func TestGoldenRelaySync(t *testing.T) {
	r := goldenRelaySyncRequest(t)
	var buf bytes.Buffer
	if err := WriteRelaySyncRequest(&buf, r); err != nil {
		t.Fatal(err)
	}
	if *goldenUpdate {
		if err := os.WriteFile(goldenPath(goldenTicketDir, goldenRelaySyncFile), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw := goldenRead(t, goldenTicketDir, goldenRelaySyncFile)
	if !bytes.Equal(raw, buf.Bytes()) || !bytes.Equal(raw, goldenSpecRelaySync(r)) {
		t.Fatal("today's code, or the documented layout, makes other request bytes than the golden ones")
	}
	got, err := ReadRelaySyncRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Ticket.Hash() != r.Ticket.Hash() || len(got.Wants) != 2 || got.Wants[1] != r.Wants[1] {
		t.Fatal("the golden request reads back otherwise")
	}
	s1, _ := goldenTicketStates(t)
	admin := func(c ChainID) bool { return c == r.Ticket.Signer }
	if err := got.Ticket.VerifyFor(s1, admin); err != nil {
		t.Fatalf("a member of epoch 1 refuses the golden request: %v", err)
	}
}

// TestRelaySyncRefused: a member refuses a ticket of another epoch, for
// another topic, forged or signed by no admin of its state; malformed
// requests do not read.
func TestRelaySyncRefused(t *testing.T) {
	t1, t2 := goldenTicketPair(t)
	s1, s2 := goldenTicketStates(t)
	admins := map[ChainID]bool{t1.Signer: true}
	admin := func(c ChainID) bool { return admins[c] }
	_, mallory, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherTopic := *t1
	otherTopic.Proof = TopicProof{9}
	forged := *t1
	forged.raw = nil
	forged.Signature = bytes.Clone(t1.Signature)
	forged.Signature[0] ^= 1
	for _, tc := range []struct {
		name string
		t    *RelayTicket
		st   *GroupState
		want error
	}{
		{"the next epoch's ticket at a member of epoch 1", t2, s1, ErrGroupEpoch},
		{"epoch 1's ticket at a member of epoch 2", t1, s2, ErrGroupEpoch},
		{"a ticket for another topic", signTicket(&otherTopic, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))), s1, ErrNotForMe},
		{"a forged signature", &forged, s1, ErrAuth},
		{"signed by no admin", signTicket(t1, mallory), s1, ErrGroupNotAdmin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.t.VerifyFor(tc.st, admin); !errors.Is(err, tc.want) {
				t.Fatalf("VerifyFor = %v, want %v", err, tc.want)
			}
		})
	}

	good := goldenRelaySyncRequest(t)
	for name, r := range map[string]*RelaySyncRequest{
		"no wants":                  {Ticket: t1},
		"a chain not in the ticket": {Ticket: t1, Wants: []RelaySyncWant{{Chain: ChainID{5}}}},
		"a chain twice":             {Ticket: t1, Wants: []RelaySyncWant{good.Wants[0], good.Wants[0]}},
	} {
		if err := WriteRelaySyncRequest(&bytes.Buffer{}, r); !errors.Is(err, ErrMalformed) {
			t.Errorf("writing %s: %v, want ErrMalformed", name, err)
		}
		// The same, written by hand, does not read.
		if _, err := ReadRelaySyncRequest(bufio.NewReader(bytes.NewReader(goldenSpecRelaySync(r)))); !errors.Is(err, ErrMalformed) {
			t.Errorf("reading %s: %v, want ErrMalformed", name, err)
		}
	}
	junk := goldenSpecRelaySync(&RelaySyncRequest{Ticket: &RelayTicket{raw: []byte("not a ticket")}})
	if _, err := ReadRelaySyncRequest(bufio.NewReader(bytes.NewReader(junk))); !errors.Is(err, ErrMalformed) {
		t.Errorf("a request with a junk ticket: %v, want ErrMalformed", err)
	}
}

// FuzzReadRelaySyncRequest: no panic; an error is a read error or wraps a
// sentinel; what reads writes back to the same frame (one encoding).
func FuzzReadRelaySyncRequest(f *testing.F) {
	fuzzAddBytes(f, fuzzGoldenFiles(f, "relay-tickets/sync-request.bin")...)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ReadRelaySyncRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				fuzzCheckErr(t, "ReadRelaySyncRequest", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteRelaySyncRequest(&buf, r); err != nil {
			t.Fatalf("a request that read does not write: %v", err)
		}
		if !bytes.HasPrefix(b, buf.Bytes()) {
			t.Fatal("ReadRelaySyncRequest accepted a non-canonical encoding")
		}
	})
}
