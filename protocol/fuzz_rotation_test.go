package protocol

import (
	"bytes"
	"testing"
	"time"
)

// fuzzChain returns a chain alice-2048 → alice-3072 → bob-2048 and a card
// signed by its last key, made at setup (signatures are randomised, so these
// seeds are not kept in files).
func fuzzChain(f *testing.F) ([]*Rotation, *Card) {
	f.Helper()
	genesis := testKey(f, "alice-2048")
	keys := []*PrivateKey{genesis, testKey(f, "alice-3072"), testKey(f, "bob-2048")}
	var chain []*Rotation
	for i := 1; i < len(keys); i++ {
		r, err := NewRotation(genesis.ID(), keys[i-1], keys[i], uint64(i), advT0)
		if err != nil {
			f.Fatal(err)
		}
		chain = append(chain, r)
	}
	pk := advPrekey(f, keys[2], advT0)
	c, err := NewChainedCard(keys[2], genesis.Public(), chain, "Alice", [][]byte{advPeerID(1)}, advAddrs, &pk.Signed, advT0)
	if err != nil {
		f.Fatal(err)
	}
	return chain, c
}

func FuzzParseRotation(f *testing.F) {
	chain, _ := fuzzChain(f)
	fuzzAddBytes(f, chain[0].Marshal(), chain[1].Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRotation(b)
		if err != nil {
			if r != nil {
				t.Fatal("ParseRotation returned a rotation and an error")
			}
			fuzzCheckErr(t, "ParseRotation", err)
			return
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("ParseRotation accepted a non-canonical encoding:\n in %x\nout %x", b, r.Marshal())
		}
		if r.Seq == 0 || r.NewKey == nil {
			t.Fatal("parsed rotation has sequence 0 or no key")
		}
		// A link that verifies must state what a seed states: nothing else
		// is signed by a fixture key. (The signatures themselves may differ:
		// each fuzzing process makes its own seeds, and RSA-PSS is
		// randomised; the signed statement is not.)
		for i, old := range []*PrivateKey{testKey(t, "alice-2048"), testKey(t, "alice-3072")} {
			if err := r.Verify(old.Public()); err == nil && !bytes.Equal(r.canonical(), chain[i].canonical()) {
				t.Fatalf("a rotation that is not a seed verifies: %x", b)
			}
		}
	})
}

// FuzzParseChainedCard runs ParseCard from cards that carry a chain.
func FuzzParseChainedCard(f *testing.F) {
	_, c := fuzzChain(f)
	fuzzAddBytes(f, c.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseCard(b)
		if err != nil {
			if got != nil {
				t.Fatal("ParseCard returned a card and an error")
			}
			fuzzCheckErr(t, "ParseCard", err)
			return
		}
		if !bytes.Equal(got.Marshal(), b) {
			t.Fatalf("ParseCard accepted a non-canonical encoding")
		}
		fuzzCheckCard(t, got)
		if got.Recipient(advT0.Add(time.Hour)).UserID != got.UserID {
			t.Fatal("recipient of another user")
		}
	})
}
