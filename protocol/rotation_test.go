package protocol

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// testChain returns the chain of user alice-2048 through the given keys, in
// order, with sequences 1, 2, ….
func testChain(t *testing.T, names ...string) (genesis *PrivateKey, keys []*PrivateKey, chain []*Rotation) {
	t.Helper()
	genesis = testKey(t, "alice-2048")
	keys = []*PrivateKey{genesis}
	for i, n := range names {
		next := testKey(t, n)
		r, err := NewRotation(genesis.ID(), keys[i], next, uint64(i+1), advT0.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatalf("NewRotation %d: %v", i, err)
		}
		keys = append(keys, next)
		chain = append(chain, r)
	}
	return genesis, keys, chain
}

func TestRotationChainVerifies(t *testing.T) {
	t.Parallel()
	for _, names := range [][]string{nil, {"alice-3072"}, {"alice-3072", "bob-2048"}, {"alice-3072", "bob-2048", "carol-2048"}} {
		genesis, keys, chain := testChain(t, names...)
		cur, err := VerifyChain(genesis.ID(), genesis.Public(), chain)
		if err != nil {
			t.Fatalf("%d links: VerifyChain: %v", len(chain), err)
		}
		if !cur.Equal(keys[len(keys)-1].Public()) {
			t.Fatalf("%d links: VerifyChain returned %s, want the last key", len(chain), cur)
		}
		for i, r := range chain {
			if r.UserID != genesis.ID() {
				t.Fatalf("link %d names user %s, want the genesis ID", i, r.UserID)
			}
			got, err := ParseRotation(r.Marshal())
			if err != nil {
				t.Fatalf("ParseRotation: %v", err)
			}
			if !bytes.Equal(got.Marshal(), r.Marshal()) {
				t.Fatal("rotation changed in a round trip")
			}
		}
	}
}

func TestRotationChainRefused(t *testing.T) {
	t.Parallel()
	genesis, keys, chain := testChain(t, "alice-3072", "bob-2048", "carol-2048")
	uid, gpub := genesis.ID(), genesis.Public()
	other := testKey(t, "bob-3072")
	resign := func(r *Rotation, old, next *PrivateKey) *Rotation {
		c := *r
		var err error
		if c.OldSignature, err = old.Sign(LabelRotateOld, c.canonical()); err != nil {
			t.Fatal(err)
		}
		if c.NewSignature, err = next.Sign(LabelRotateNew, c.canonical()); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	with := func(i int, r *Rotation) []*Rotation {
		c := append([]*Rotation(nil), chain...)
		c[i] = r
		return c
	}
	forked, err := NewRotation(uid, keys[1], other, 3, advT0)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		user    ID
		genesis *PublicKey
		chain   []*Rotation
		auth    bool // also ErrAuth
	}{
		"genesis is another key": {uid, keys[1].Public(), chain, true},
		"user ID is another's":   {other.ID(), gpub, chain, true},
		"swapped order":          {uid, gpub, []*Rotation{chain[1], chain[0], chain[2]}, true},
		"link missing":           {uid, gpub, []*Rotation{chain[0], chain[2]}, true},
		"link repeated":          {uid, gpub, []*Rotation{chain[0], chain[0]}, false},
		"old signature flipped":  {uid, gpub, with(1, func() *Rotation { c := *chain[1]; c.OldSignature = advFlip(c.OldSignature, 3, 1); return &c }()), true},
		"new signature flipped":  {uid, gpub, with(1, func() *Rotation { c := *chain[1]; c.NewSignature = advFlip(c.NewSignature, 3, 1); return &c }()), true},
		"signatures swapped": {uid, gpub, with(0, func() *Rotation {
			c := *chain[0]
			c.OldSignature, c.NewSignature = c.NewSignature, c.OldSignature
			return &c
		}()), true},
		"new key replaced": {uid, gpub, with(2, func() *Rotation { c := *chain[2]; c.NewKey = other.Public(); return &c }()), true},
		"new key not counter-signed": {uid, gpub, with(2, func() *Rotation {
			c := *resign(chain[2], keys[2], keys[3])
			c.NewSignature = chain[1].NewSignature
			return &c
		}()), true},
		"seq tampered":                {uid, gpub, with(0, func() *Rotation { c := *chain[0]; c.Seq = 9; return &c }()), true},
		"seq not increasing":          {uid, gpub, with(1, func() *Rotation { c := *chain[1]; c.Seq = 1; return resign(&c, keys[1], keys[2]) }()), false},
		"link for another user":       {uid, gpub, with(1, func() *Rotation { c := *chain[1]; c.UserID = other.ID(); return resign(&c, keys[1], keys[2]) }()), true},
		"fork from an earlier key":    {uid, gpub, []*Rotation{chain[0], chain[1], forked}, true},
		"return to the genesis key":   {uid, gpub, []*Rotation{chain[0], resign(&Rotation{UserID: uid, OldKey: keys[1].ID(), NewKey: gpub, Seq: 2, Time: advT0}, keys[1], genesis)}, false},
		"nil link":                    {uid, gpub, []*Rotation{chain[0], nil}, false},
		"time tampered":               {uid, gpub, with(2, func() *Rotation { c := *chain[2]; c.Time = c.Time.Add(time.Second); return &c }()), true},
		"old key ID of another start": {uid, gpub, with(0, func() *Rotation { c := *chain[0]; c.OldKey = other.ID(); return &c }()), true},
	} {
		cur, err := VerifyChain(tc.user, tc.genesis, tc.chain)
		if !errors.Is(err, ErrBadChain) || cur != nil {
			t.Errorf("%s: VerifyChain = %v, %v; want nil, ErrBadChain", name, cur, err)
			continue
		}
		if tc.auth && !errors.Is(err, ErrAuth) {
			t.Errorf("%s: %v, want ErrAuth too", name, err)
		}
	}
	long := make([]*Rotation, MaxChainLength+1)
	if _, err := VerifyChain(uid, gpub, long); !errors.Is(err, ErrBadChain) || !errors.Is(err, ErrTooLarge) {
		t.Errorf("chain over MaxChainLength: %v, want ErrBadChain and ErrTooLarge", err)
	}
	if _, err := VerifyChain(uid, nil, nil); !errors.Is(err, ErrBadChain) {
		t.Errorf("no genesis key: %v, want ErrBadChain", err)
	}
}

func TestNewRotationRejects(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	if _, err := NewRotation(alice.ID(), alice, alice, 1, advT0); !errors.Is(err, ErrMalformed) {
		t.Errorf("rotation to the same key: %v, want ErrMalformed", err)
	}
	if _, err := NewRotation(alice.ID(), alice, bob, 0, advT0); !errors.Is(err, ErrMalformed) {
		t.Errorf("sequence 0: %v, want ErrMalformed", err)
	}
	// A signer that names one key and signs with another.
	liar := advLyingSigner{pub: alice.Public(), k: testKey(t, "carol-2048")}
	if _, err := NewRotation(alice.ID(), liar, bob, 1, advT0); !errors.Is(err, ErrAuth) {
		t.Errorf("lying old signer: %v, want ErrAuth", err)
	}
}

func TestParseRotationRejectsForm(t *testing.T) {
	t.Parallel()
	_, _, chain := testChain(t, "alice-3072")
	good := chain[0].toPB()
	raw := chain[0].Marshal()
	mod := func(f func(m *pb.Rotation)) []byte {
		m := chain[0].toPB()
		f(m)
		return marshal(m)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"version 0":       {mod(func(m *pb.Rotation) { m.Version = 0 }), ErrMalformed},
		"version 2":       {mod(func(m *pb.Rotation) { m.Version = 2 }), ErrMalformed},
		"short user ID":   {mod(func(m *pb.Rotation) { m.UserId = good.UserId[1:] }), ErrMalformed},
		"short old key":   {mod(func(m *pb.Rotation) { m.OldKey = good.OldKey[1:] }), ErrMalformed},
		"no new key":      {mod(func(m *pb.Rotation) { m.NewKey = nil }), ErrMalformed},
		"sequence 0":      {mod(func(m *pb.Rotation) { m.Seq = 0 }), ErrMalformed},
		"short signature": {mod(func(m *pb.Rotation) { m.OldSignature = good.OldSignature[:100] }), ErrMalformed},
		"no counter-sig":  {mod(func(m *pb.Rotation) { m.NewSignature = nil }), ErrMalformed},
		"weak new key":    {mod(func(m *pb.Rotation) { m.NewKey = weakPublicDER(t) }), ErrKeySize},
		"unknown field":   {append(bytes.Clone(raw), 0x48, 0x01), ErrMalformed},
		"duplicate field": {append(bytes.Clone(raw), raw[:2]...), ErrMalformed},
		"truncated":       {raw[:len(raw)-1], ErrMalformed},
		"oversized":       {make([]byte, maxRotationSize+1), ErrTooLarge},
	} {
		if got, err := ParseRotation(tc.b); !errors.Is(err, tc.want) || got != nil {
			t.Errorf("%s: ParseRotation = %v, %v; want nil, %v", name, got, err, tc.want)
		}
	}
}

// weakPublicDER returns the SubjectPublicKeyInfo of the 1024-bit fixture key.
func weakPublicDER(t *testing.T) []byte {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(testKeyDER(t, "weak-1024.pem"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.(*rsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
