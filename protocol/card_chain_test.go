package protocol

import (
	"bytes"
	"errors"
	"testing"

	"github.com/parley-chat/parley/protocol/pb"
)

// chainedCard returns a card of user alice-2048 after rotating through
// names, signed by the last key, with a prekey, two devices and four addrs.
func chainedCard(t *testing.T, names ...string) (*Card, []*PrivateKey) {
	t.Helper()
	genesis, keys, chain := testChain(t, names...)
	cur := keys[len(keys)-1]
	pk := advPrekey(t, cur, advT0)
	c, err := NewChainedCard(cur, genesis.Public(), chain, "Alice", [][]byte{advPeerID(1), advPeerID(2)}, advAddrs, &pk.Signed, advT0)
	if err != nil {
		t.Fatalf("NewChainedCard: %v", err)
	}
	return c, keys
}

func TestChainedCardRoundTrip(t *testing.T) {
	t.Parallel()
	for _, names := range [][]string{{"alice-3072"}, {"alice-3072", "bob-3072"}, {"alice-3072", "bob-3072", "carol-3072"}} {
		c, keys := chainedCard(t, names...)
		genesis, cur := keys[0], keys[len(keys)-1]
		if c.UserID != genesis.ID() || !c.Key.Equal(cur.Public()) || !c.Genesis.Equal(genesis.Public()) || len(c.Chain) != len(names) {
			t.Fatalf("%d links: card fields: user %s key %s", len(names), c.UserID, c.Key)
		}
		b := c.Marshal()
		t.Logf("card with %d rotations at RSA-3072: %d bytes, link of %d characters", len(names), len(b), len(c.URI()))
		for _, parse := range []func() (*Card, error){
			func() (*Card, error) { return ParseCard(b) },
			func() (*Card, error) { return ParseCardURI(c.URI()) },
		} {
			got, err := parse()
			if err != nil {
				t.Fatalf("%d links: %v", len(names), err)
			}
			advCardsEqual(t, got, c)
			if !got.Genesis.Equal(c.Genesis) || len(got.Chain) != len(c.Chain) || !bytes.Equal(got.Marshal(), b) {
				t.Fatalf("%d links: chain changed in a round trip", len(names))
			}
			// The card's recipient is the current key, under the genesis user ID.
			r := got.Recipient(advT0)
			if r.UserID != genesis.ID() || !r.Key.Equal(cur.Public()) || r.Prekey == nil {
				t.Fatalf("%d links: recipient %s key %s", len(names), r.UserID, r.Key)
			}
		}
	}
}

// A card without a chain encodes exactly as parley.v1.Card, as before
// rotation existed; NewChainedCard with an empty chain makes that card.
func TestChainlessCardEncodingUnchanged(t *testing.T) {
	t.Parallel()
	alice := testKey(t, "alice-2048")
	pk := advPrekey(t, alice, advT0)
	for _, genesis := range []*PublicKey{nil, alice.Public()} {
		c, err := NewChainedCard(alice, genesis, nil, "Alice", [][]byte{advPeerID(1)}, advAddrs, &pk.Signed, advT0)
		if err != nil {
			t.Fatal(err)
		}
		old := marshal(&pb.Card{
			Version: CardVersion, UserId: c.UserID[:], Name: c.Name, PublicKey: c.Key.Bytes(),
			Devices: c.Devices, Addrs: c.Addrs, Prekey: c.Prekey.toPB(), IssuedAt: c.IssuedAt.Unix(), Signature: c.Signature,
		})
		if !bytes.Equal(c.Marshal(), old) || c.Genesis != nil || c.Chain != nil {
			t.Fatal("a chainless card does not encode as parley.v1.Card")
		}
		if err := alice.Public().Verify(LabelCard, c.canonical(), c.Signature); err != nil || c.canonical()[0] != CardVersion {
			t.Fatal("a chainless card's canonical form changed")
		}
	}
}

func TestChainedCardRefused(t *testing.T) {
	t.Parallel()
	c, keys := chainedCard(t, "alice-3072", "bob-3072")
	other := testKey(t, "carol-2048")
	cur := keys[len(keys)-1]
	// resigned re-signs the modified card with signer, as its holder could.
	resigned := func(f func(c *Card), signer *PrivateKey) []byte {
		cc := *c
		cc.Chain = append([]*Rotation(nil), c.Chain...)
		f(&cc)
		var err error
		if cc.Signature, err = signer.Sign(LabelCard, cc.canonical()); err != nil {
			t.Fatal(err)
		}
		return cc.Marshal()
	}
	forked, err := NewRotation(c.UserID, keys[1], other, 2, advT0)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want []error
	}{
		"chain order swapped": {resigned(func(c *Card) { c.Chain[0], c.Chain[1] = c.Chain[1], c.Chain[0] }, cur), []error{ErrBadChain, ErrAuth}},
		"link dropped":        {resigned(func(c *Card) { c.Chain = c.Chain[1:] }, cur), []error{ErrBadChain, ErrAuth}},
		"last link dropped":   {resigned(func(c *Card) { c.Chain = c.Chain[:1] }, cur), []error{ErrBadChain, ErrAuth}},
		"link tampered": {resigned(func(c *Card) {
			l := *c.Chain[1]
			l.OldSignature = advFlip(l.OldSignature, 0, 1)
			c.Chain[1] = &l
		}, cur), []error{ErrBadChain, ErrAuth}},
		// carol holds no key of the chain: she forks it from keys[1],
		// which she does not hold either, so the fork's signature fails.
		"card of another key claiming the chain": {resigned(func(c *Card) { c.Key = other.Public() }, other), []error{ErrBadChain, ErrAuth}},
		// The holder of a retired key forks the chain: the chain is valid
		// but ends at another key than the card's.
		"fork ending elsewhere":     {resigned(func(c *Card) { c.Chain[1] = forked }, cur), []error{ErrBadChain, ErrAuth}},
		"genesis of another user":   {resigned(func(c *Card) { c.Genesis = other.Public() }, cur), []error{ErrBadChain, ErrAuth}},
		"user ID of another":        {resigned(func(c *Card) { c.UserID = other.ID() }, cur), []error{ErrBadChain, ErrAuth}},
		"signed by the genesis key": {resigned(func(*Card) {}, keys[0]), []error{ErrAuth}},
		"chain stripped":            {resigned(func(c *Card) { c.Genesis, c.Chain = nil, nil }, cur), []error{ErrAuth}},
		"genesis without chain":     {resigned(func(c *Card) { c.Chain = nil }, cur), []error{ErrMalformed}},
		"chain without genesis": {func() []byte {
			m := &pb.ChainedCard{}
			if err := unmarshalCanonical(c.Marshal(), m); err != nil {
				t.Fatal(err)
			}
			m.GenesisKey = nil
			return marshal(m)
		}(), []error{ErrMalformed}},
		"version 1 with a chain": {func() []byte {
			small, _ := chainedCard(t, "alice-3072") // under MaxCardSize
			m := &pb.ChainedCard{}
			if err := unmarshalCanonical(small.Marshal(), m); err != nil {
				t.Fatal(err)
			}
			m.Version = CardVersion
			return marshal(m)
		}(), []error{ErrMalformed}},
		"weak genesis key": {func() []byte {
			m := &pb.ChainedCard{}
			if err := unmarshalCanonical(c.Marshal(), m); err != nil {
				t.Fatal(err)
			}
			m.GenesisKey = weakPublicDER(t)
			return marshal(m)
		}(), []error{ErrKeySize}},
	} {
		got, err := ParseCard(tc.b)
		if got != nil || err == nil {
			t.Errorf("%s: ParseCard = %v, %v; want an error", name, got, err)
			continue
		}
		for _, w := range tc.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: ParseCard: %v, want %v", name, err, w)
			}
		}
	}
	// Every byte of the encoding matters.
	b := c.Marshal()
	for i := range b {
		if got, err := ParseCard(advFlip(b, i, 0x01)); err == nil || got != nil {
			t.Fatalf("byte %d flipped: ParseCard accepted the card", i)
		}
	}
}

func TestNewChainedCardRejects(t *testing.T) {
	t.Parallel()
	genesis, keys, chain := testChain(t, "alice-3072")
	other := testKey(t, "carol-2048")
	for name, tc := range map[string]struct {
		signer  Signer
		genesis *PublicKey
		chain   []*Rotation
		want    error
	}{
		"signer is not the chain's end":     {other, genesis.Public(), chain, ErrBadChain},
		"signer is the genesis, with chain": {genesis, genesis.Public(), chain, ErrBadChain},
		"chain without genesis":             {keys[1], nil, chain, ErrBadChain},
		"genesis of another user, no chain": {keys[1], genesis.Public(), nil, ErrBadChain},
		"broken chain":                      {keys[1], other.Public(), chain, ErrBadChain},
	} {
		if c, err := NewChainedCard(tc.signer, tc.genesis, tc.chain, "Alice", nil, nil, nil, advT0); !errors.Is(err, tc.want) || c != nil {
			t.Errorf("%s: NewChainedCard = %v, %v; want nil, %v", name, c, err, tc.want)
		}
	}
}

// Cards with a chain may exceed MaxCardSize, up to MaxChainedCardSize; the
// larger cap applies only to input that starts as a version-2 card.
func TestChainedCardSizeCaps(t *testing.T) {
	t.Parallel()
	c, _ := chainedCard(t, "alice-3072", "bob-3072", "carol-3072")
	b := c.Marshal()
	if len(b) <= MaxCardSize {
		t.Fatalf("fixture card of %d bytes does not exceed MaxCardSize", len(b))
	}
	if _, err := ParseCard(b); err != nil {
		t.Fatalf("ParseCard of a %d-byte chained card: %v", len(b), err)
	}
	for name, tc := range map[string][]byte{
		"version-1 prefix over MaxCardSize": append([]byte{0x08, 0x01}, make([]byte, MaxCardSize)...),
		"version-2 prefix over the cap":     append([]byte{0x08, 0x02}, make([]byte, MaxChainedCardSize)...),
	} {
		if _, err := ParseCard(tc); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", name, err)
		}
	}
	if _, err := ParseCard(append([]byte{0x08, 0x02}, make([]byte, MaxCardSize)...)); !errors.Is(err, ErrMalformed) {
		t.Errorf("version-2 prefix under the cap: %v, want ErrMalformed (parsed, not refused for size)", err)
	}
}
