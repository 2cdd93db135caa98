package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

// Golden vectors of relay tickets, in testdata/golden/relay-tickets: the
// ticket of the golden group's epoch 1 (alice's chain of epoch 1, seed
// 0x01, with bob's chain, seed 0x02) and of epoch 2, which follows it
// (signed by alice's chain of epoch 1, listing her chain of epoch 2, seed
// 0x03). Ed25519 is deterministic, so regenerating writes the same bytes:
//
//	go test ./protocol/ -run '^TestGoldenRelayTicket' -update

const goldenTicketDir = "relay-tickets"

type goldenTickets struct {
	Ticket1    string `json:"ticket1"`
	Ticket2    string `json:"ticket2"`
	Hash1      string `json:"hash1"`
	Topic2     string `json:"topic2"`
	Canonical2 string `json:"canonical2"`
}

// seededChain is an own chain of st's epoch with a fixed Ed25519 key.
func seededChain(st *GroupState, sender ID, seed byte) *SenderChain {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return &SenderChain{group: st.Group, epoch: st.Epoch, sender: sender, chain: ChainID(priv.Public().(ed25519.PublicKey)), signing: priv}
}

// goldenTicketStates returns the golden group's two states.
func goldenTicketStates(t *testing.T) (*GroupState, *GroupState) {
	t.Helper()
	var s [2]*GroupState
	for i, f := range []string{"state1.bin", "state2.bin"} {
		st, err := ParseGroupState(goldenRead(t, goldenGroupDir, f))
		if err != nil {
			t.Fatal(err)
		}
		s[i] = st
	}
	return s[0], s[1]
}

func goldenTicketPair(t *testing.T) (t1, t2 *RelayTicket) {
	t.Helper()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	s1, s2 := goldenTicketStates(t)
	a1, b1, a2 := seededChain(s1, alice.ID(), 1), seededChain(s1, bob.ID(), 2), seededChain(s2, alice.ID(), 3)
	t1, err := NewRelayTicket(a1, a1, s1, []RelayKey{{Chain: b1.ID()}}, nil, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	t2, err = NewRelayTicket(a1, a2, s2, nil, t1, goldenNow.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return t1, t2
}

// goldenSpecTicket encodes a ticket's signed bytes as doc.go says.
func goldenSpecTicket(tk *RelayTicket) []byte {
	b := append([]byte{tk.Version}, tk.Proof[:]...)
	b = binary.BigEndian.AppendUint64(b, tk.Epoch)
	b = binary.BigEndian.AppendUint32(b, tk.Members)
	b = binary.BigEndian.AppendUint32(b, uint32(len(tk.Previous)))
	b = append(b, tk.Previous...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(tk.Keys)))
	for _, k := range tk.Keys {
		admin := byte(0)
		if k.Admin {
			admin = 1
		}
		b = append(append(b, k.Chain[:]...), admin)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(tk.Issued))
	return append(b, tk.Signer[:]...)
}

func TestGoldenRelayTicket(t *testing.T) {
	t1, t2 := goldenTicketPair(t)
	if *goldenUpdate {
		if err := os.MkdirAll(goldenPath(goldenTicketDir), 0o755); err != nil {
			t.Fatal(err)
		}
		h1 := t1.Hash()
		g := goldenTickets{Ticket1: "ticket1.bin", Ticket2: "ticket2.bin", Hash1: hex.EncodeToString(h1[:]),
			Topic2: t2.Topic(), Canonical2: hex.EncodeToString(t2.Canonical())}
		for name, b := range map[string][]byte{g.Ticket1: t1.Marshal(), g.Ticket2: t2.Marshal()} {
			if err := os.WriteFile(goldenPath(goldenTicketDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := goldenSessionWriteJSON(g, goldenTicketDir, "tickets.json"); err != nil {
			t.Fatal(err)
		}
	}
	var g goldenTickets
	goldenReadJSON(t, &g, goldenTicketDir, "tickets.json")
	raw1, raw2 := goldenRead(t, goldenTicketDir, g.Ticket1), goldenRead(t, goldenTicketDir, g.Ticket2)
	if !bytes.Equal(raw1, t1.Marshal()) || !bytes.Equal(raw2, t2.Marshal()) {
		t.Fatal("today's code makes other ticket bytes than the golden ones")
	}
	p1, err := ParseRelayTicket(raw1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParseRelayTicket(raw2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p2.Marshal(), raw2) || hex.EncodeToString(p2.Canonical()) != g.Canonical2 ||
		!bytes.Equal(goldenSpecTicket(p2), p2.Canonical()) {
		t.Fatal("RelayTicket.Canonical disagrees with the manifest or the documented layout")
	}
	h1 := sha256.Sum256(slices.Concat([]byte("parley/v1/ticket-hash"), raw1))
	if hex.EncodeToString(h1[:]) != g.Hash1 || !bytes.Equal(p2.Previous, h1[:]) {
		t.Fatal("the documented ticket hash is not the next ticket's previous")
	}
	_, s2 := goldenTicketStates(t)
	if p2.Topic() != g.Topic2 || p2.Topic() != Topic(s2) {
		t.Fatal("the ticket's topic is not the epoch's")
	}
	if !ed25519.Verify(ed25519.PublicKey(p2.Signer[:]), slices.Concat([]byte("parley/v1/relay-ticket"), goldenSpecTicket(p2)), p2.Signature) {
		t.Fatal("the documented signed bytes do not verify")
	}
	if a, err := CheckRelayTicket(p1, nil, nil, false); err != nil || a {
		t.Fatalf("first ticket: anchored %v, %v", a, err)
	}
	if a, err := CheckRelayTicket(p2, nil, p1, false); err != nil || !a {
		t.Fatalf("next epoch's ticket: anchored %v, %v", a, err)
	}
}

// signTicket re-signs a copy of tk with priv as its signer.
func signTicket(tk *RelayTicket, priv ed25519.PrivateKey) *RelayTicket {
	c := *tk
	c.raw = nil
	c.Signer = ChainID(priv.Public().(ed25519.PublicKey))
	c.Signature = ed25519.Sign(priv, append([]byte(LabelRelayTicket), c.Canonical()...))
	return &c
}

func TestRelayTicketRefused(t *testing.T) {
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	s1, s2 := goldenTicketStates(t)
	a1, b1, a2 := seededChain(s1, alice.ID(), 1), seededChain(s1, bob.ID(), 2), seededChain(s2, alice.ID(), 3)
	t1, t2 := goldenTicketPair(t)
	later := func(tk *RelayTicket, d time.Duration) *RelayTicket {
		c := *tk
		c.Issued += d.Milliseconds()
		return &c
	}
	tampered := later(t2, time.Second) // fields changed, signature kept
	tampered.raw = nil
	mallory := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	byBob := signTicket(t1, b1.signing)     // first ticket signed by a member's key
	byBobNext := signTicket(t2, b1.signing) // next epoch signed by a non-admin of the previous
	byMallory := signTicket(t2, mallory)    // lineage named, signer unknown
	skip := later(t2, 0)                    // epoch 3 after epoch 1
	skip.Epoch = 3
	skip = signTicket(skip, a1.signing)
	update, err := NewRelayTicket(a2, a2, s2, []RelayKey{{Chain: ChainID(bytes.Repeat([]byte{7}, 32))}}, nil, goldenNow.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	squat := signTicket(later(update, time.Minute), mallory) // an update by someone else
	squat.Keys = sortRelayKeys(append(slices.Clone(squat.Keys), RelayKey{Chain: squat.Signer, Admin: true}))
	squat = signTicket(squat, mallory)
	for name, tc := range map[string]struct {
		next, cur, prev *RelayTicket
		anchored        bool
		want            error
	}{
		"tampered":                     {next: tampered, want: ErrAuth},
		"wrong signer (first)":         {next: byBob, want: ErrGroupNotAdmin},
		"wrong signer (next epoch)":    {next: byBobNext, prev: t1, want: ErrGroupNotAdmin},
		"wrong lineage (unknown prev)": {next: byMallory, want: ErrTicketLineage},
		"wrong lineage (other prev)":   {next: t2, prev: update, want: ErrTicketLineage},
		"stale epoch (skips one)":      {next: skip, prev: t1, want: ErrGroupEpoch},
		"replayed":                     {next: t2, cur: t2, anchored: true, want: ErrTicketStale},
		"older":                        {next: t2, cur: update, anchored: true, want: ErrTicketStale},
		"update by a stranger":         {next: squat, cur: update, anchored: true, want: ErrGroupNotAdmin},
	} {
		if _, err := CheckRelayTicket(tc.next, tc.cur, tc.prev, tc.anchored); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// A ticket of another epoch for a held topic, properly signed.
	other := signTicket(later(t1, time.Hour), a1.signing)
	if _, err := CheckRelayTicket(other, t2, nil, true); !errors.Is(err, ErrGroupEpoch) {
		t.Errorf("ticket of epoch 1 on a topic of epoch 2: %v, want ErrGroupEpoch", err)
	}
	// The lineage wins over a first ticket for the topic, and not the
	// other way round.
	first := signTicket(later(update, -3*time.Minute), mallory)
	first.Keys = []RelayKey{{Chain: first.Signer, Admin: true}}
	first = signTicket(first, mallory)
	if a, err := CheckRelayTicket(first, nil, nil, false); err != nil || a {
		t.Fatalf("a member's first ticket: %v, %v", a, err)
	}
	if a, err := CheckRelayTicket(t2, first, t1, false); err != nil || !a {
		t.Fatalf("the admin's ticket after a member's first one: anchored %v, %v", a, err)
	}
	if a, err := CheckRelayTicket(update, t2, nil, true); err != nil || !a {
		t.Fatalf("the admin's update: anchored %v, %v", a, err)
	}
	if _, err := CheckRelayTicket(signTicket(later(first, time.Hour), mallory), update, nil, true); !errors.Is(err, ErrGroupNotAdmin) {
		t.Fatalf("the member's ticket after the admin's: %v, want ErrGroupNotAdmin", err)
	}
	// Making one: only an admin, with a chain of its own, in lineage.
	if _, err := NewRelayTicket(b1, b1, s1, nil, nil, goldenNow); !errors.Is(err, ErrGroupNotAdmin) {
		t.Errorf("a member's ticket: %v, want ErrGroupNotAdmin", err)
	}
	if _, err := NewRelayTicket(b1, a2, s2, nil, t1, goldenNow); !errors.Is(err, ErrTicketLineage) {
		t.Errorf("following with a member's chain: %v, want ErrTicketLineage", err)
	}
	if _, err := NewRelayTicket(a2, a2, s2, nil, t2, goldenNow); !errors.Is(err, ErrTicketLineage) {
		t.Errorf("following a ticket of the same epoch: %v, want ErrTicketLineage", err)
	}
}

func TestParseRelayTicketRefused(t *testing.T) {
	_, t2 := goldenTicketPair(t)
	raw := t2.Marshal()
	noProof := *t2
	noProof.raw, noProof.Proof = nil, TopicProof{}
	unordered := *t2
	unordered.raw = nil
	unordered.Keys = []RelayKey{t2.Keys[0], t2.Keys[0]}
	overfull := *t2
	overfull.raw, overfull.Members = nil, 0
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":          {nil, ErrMalformed},
		"truncated":      {raw[:len(raw)-3], ErrMalformed},
		"no proof":       {noProof.Marshal(), ErrMalformed},
		"keys unordered": {unordered.Marshal(), ErrMalformed},
		"keys > members": {overfull.Marshal(), ErrMalformed},
		"trailing":       {append(slices.Clone(raw), 0), ErrMalformed},
		"oversized":      {make([]byte, MaxRelayTicketSize+1), ErrTooLarge},
	} {
		if tk, err := ParseRelayTicket(tc.b); !errors.Is(err, tc.want) || tk != nil {
			t.Errorf("%s: %v, %v; want %v", name, tk, err, tc.want)
		}
	}
}
