package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// TestGroupOpenVerified: a message checked by a topic validator
// (ChainPublic.Check) opens with OpenVerified from the proof alone, and
// the proof is of the bytes that were checked: changing the message
// after the check changes nothing of what opens, and a proof made with
// another chain than the one opening is verified again in full.
func TestGroupOpenVerified(t *testing.T) {
	f := newGroupFixture(t)
	chains := groupMembersChains(t, f)
	a, b, c := f.alice.ID(), f.bob.ID(), f.carol.ID()
	m, _, err := chains[a][a].Seal(KindText, []byte("checked once"), goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseGroupMessage(m.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	v, err := chains[a][b].Public().Check(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if v.Header() != m.GroupHeader {
		t.Fatalf("the proof's header %+v, want %+v", v.Header(), m.GroupHeader)
	}

	// The checked message is changed afterwards, every part of it: the
	// proof kept its own copy.
	parsed.Ciphertext[0] ^= 1
	parsed.Signature[0] ^= 1
	parsed.Iteration++
	p, next, err := chains[a][b].OpenVerified(v)
	if err != nil {
		t.Fatalf("OpenVerified after the message changed: %v", err)
	}
	if string(p.Body) != "checked once" || p.Sender != a {
		t.Fatalf("opened %q from %s", p.Body, p.Sender)
	}
	if _, _, err := next.OpenVerified(v); !errors.Is(err, ErrGroupReplay) {
		t.Fatalf("the proof opened twice = %v, want ErrGroupReplay", err)
	}

	// A proof of bob's message, made with bob's chain, opened with
	// alice's chain: verified in full, refused.
	bm, _, err := chains[b][b].Seal(KindText, []byte("bob"), goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	bv, err := chains[b][c].Public().Check(bm)
	if err != nil {
		t.Fatal(err)
	}
	before := chains[a][c].Marshal()
	if _, _, err := chains[a][c].OpenVerified(bv); !errors.Is(err, ErrGroupWrongSender) {
		t.Fatalf("a proof of another chain = %v, want ErrGroupWrongSender", err)
	}
	if !bytes.Equal(chains[a][c].Marshal(), before) {
		t.Fatal("a refused proof changed the chain")
	}

	// What does not verify gets no proof.
	bad := *m
	bad.Signature = bytes.Clone(m.Signature)
	bad.Signature[10] ^= 1
	if v, err := chains[a][b].Public().Check(&bad); !errors.Is(err, ErrAuth) || v != nil {
		t.Fatalf("Check of a bad signature = %v, %v; want ErrAuth and no proof", v, err)
	}
}
