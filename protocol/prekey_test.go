package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parley-chat/parley/protocol/pb"
)

func TestGeneratePrekey(t *testing.T) {
	t.Parallel()
	bob := testKey(t, "bob-2048")
	start := advT0 // has milliseconds: the prekey keeps whole seconds
	pk, err := GeneratePrekey(bob, start, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sp := pk.Signed
	if sp.ID == 0 || pk.ID() != sp.ID {
		t.Fatalf("prekey ID %d / %d", sp.ID, pk.ID())
	}
	if sp.Owner != bob.ID() {
		t.Fatalf("owner %v, want bob's key ID", sp.Owner)
	}
	if !sp.NotBefore.Equal(time.Unix(start.Unix(), 0)) || !sp.NotAfter.Equal(time.Unix(start.Add(7*24*time.Hour).Unix(), 0)) {
		t.Fatalf("validity %v–%v", sp.NotBefore, sp.NotAfter)
	}
	if sp.NotBefore.Nanosecond() != 0 || sp.NotAfter.Nanosecond() != 0 {
		t.Fatalf("validity is not in whole seconds")
	}
	if !bytes.Equal(pk.priv.PublicKey().Bytes(), sp.Public[:]) {
		t.Fatalf("public half does not match the private half")
	}
	if err := sp.Verify(bob.Public(), start.Add(time.Hour)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := sp.VerifySignature(bob.Public()); err != nil {
		t.Fatalf("VerifySignature: %v", err)
	}
	// The signature is the documented one over the documented bytes.
	c := newCanon(0)
	c.u64(sp.ID)
	c.bytes(sp.Public[:])
	c.i64(sp.NotBefore.Unix())
	c.i64(sp.NotAfter.Unix())
	c.bytes(sp.Owner[:])
	if !bytes.Equal(sp.canonical(), c.b) {
		t.Fatalf("prekey canonical bytes differ from the documented layout")
	}
	if err := bob.Public().Verify(LabelPrekey, c.b, sp.Signature); err != nil {
		t.Fatalf("signature is not over label ‖ canonical: %v", err)
	}
	// Two prekeys differ.
	pk2, err := GeneratePrekey(bob, start, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if pk2.ID() == pk.ID() || pk2.Signed.Public == sp.Public {
		t.Fatalf("two prekeys share an ID or a key")
	}
}

func TestGeneratePrekeyRejectsLifetime(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, -time.Second} {
		if pk, err := GeneratePrekey(testKey(t, "bob-2048"), advT0, d); !errors.Is(err, ErrMalformed) || pk != nil {
			t.Errorf("GeneratePrekey(lifetime %v) = %v, %v; want nil, ErrMalformed", d, pk, err)
		}
	}
}

func TestPrekeyValidityWindow(t *testing.T) {
	t.Parallel()
	bob := testKey(t, "bob-2048")
	pk, err := GeneratePrekey(bob, advT0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sp := &pk.Signed
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"at NotBefore", sp.NotBefore, nil},
		{"inside", sp.NotBefore.Add(12 * time.Hour), nil},
		{"just before NotAfter", sp.NotAfter.Add(-time.Nanosecond), nil},
		{"at NotAfter", sp.NotAfter, ErrExpired},
		{"after NotAfter", sp.NotAfter.Add(time.Second), ErrExpired},
		{"just before NotBefore", sp.NotBefore.Add(-time.Nanosecond), ErrExpired},
		{"long before", sp.NotBefore.Add(-365 * 24 * time.Hour), ErrExpired},
	} {
		err := sp.Verify(bob.Public(), tc.now)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
	// The signature alone does not depend on time.
	if err := sp.VerifySignature(bob.Public()); err != nil {
		t.Fatalf("VerifySignature: %v", err)
	}
}

func TestPrekeyWrongOwnerOrTampered(t *testing.T) {
	t.Parallel()
	bob, carol := testKey(t, "bob-2048"), testKey(t, "carol-2048")
	pk, err := GeneratePrekey(bob, advT0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := advT0.Add(time.Hour)
	// Signed by bob, checked against carol; and against nobody.
	if err := pk.Signed.Verify(carol.Public(), now); !errors.Is(err, ErrAuth) {
		t.Fatalf("Verify with the wrong owner = %v, want ErrAuth", err)
	}
	if err := pk.Signed.VerifySignature(nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("VerifySignature(nil) = %v, want ErrAuth", err)
	}
	// Claims carol as owner, still bob's signature.
	claimsCarol := pk.Signed
	claimsCarol.Owner = carol.ID()
	if err := claimsCarol.Verify(carol.Public(), now); !errors.Is(err, ErrAuth) {
		t.Fatalf("Verify of a re-owned prekey = %v, want ErrAuth", err)
	}
	for name, f := range map[string]func(p *SignedPrekey){
		"public":     func(p *SignedPrekey) { p.Public[31] ^= 1 },
		"id":         func(p *SignedPrekey) { p.ID++ },
		"not before": func(p *SignedPrekey) { p.NotBefore = p.NotBefore.Add(-time.Second) },
		"not after":  func(p *SignedPrekey) { p.NotAfter = p.NotAfter.Add(365 * 24 * time.Hour) },
		"owner":      func(p *SignedPrekey) { p.Owner[0] ^= 1 },
		"signature":  func(p *SignedPrekey) { p.Signature = advFlip(p.Signature, 20, 4) },
		"short sig":  func(p *SignedPrekey) { p.Signature = p.Signature[:255] },
		"no sig":     func(p *SignedPrekey) { p.Signature = nil },
	} {
		p := pk.Signed
		p.Signature = bytes.Clone(p.Signature)
		f(&p)
		if err := p.Verify(bob.Public(), now); !errors.Is(err, ErrAuth) {
			t.Errorf("tampered %s: Verify = %v, want ErrAuth", name, err)
		}
		if err := p.VerifySignature(bob.Public()); !errors.Is(err, ErrAuth) {
			t.Errorf("tampered %s: VerifySignature = %v, want ErrAuth", name, err)
		}
	}
	// A bad signature is ErrAuth even outside the validity window: the
	// signature is checked first.
	p := pk.Signed
	p.Public[0] ^= 1
	if err := p.Verify(bob.Public(), p.NotAfter.Add(time.Hour)); !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered and expired: Verify = %v, want ErrAuth", err)
	}
}

func TestSignedPrekeyMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	bob := testKey(t, "bob-3072")
	pk, err := GeneratePrekey(bob, advT0, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw := pk.Signed.Marshal()
	sp, err := ParseSignedPrekey(raw)
	if err != nil {
		t.Fatalf("ParseSignedPrekey: %v", err)
	}
	if sp.ID != pk.Signed.ID || sp.Public != pk.Signed.Public || !sp.NotBefore.Equal(pk.Signed.NotBefore) ||
		!sp.NotAfter.Equal(pk.Signed.NotAfter) || sp.Owner != pk.Signed.Owner || !bytes.Equal(sp.Signature, pk.Signed.Signature) {
		t.Fatalf("round trip changed the prekey: %+v", sp)
	}
	if !bytes.Equal(sp.Marshal(), raw) {
		t.Fatalf("Marshal(Parse(raw)) != raw")
	}
	if err := sp.Verify(bob.Public(), advT0.Add(time.Minute)); err != nil {
		t.Fatalf("parsed prekey does not verify: %v", err)
	}
	// The parsed signature does not alias the input.
	sig := bytes.Clone(sp.Signature)
	for i := range raw {
		raw[i] = 0
	}
	if !bytes.Equal(sp.Signature, sig) {
		t.Fatalf("parsed prekey aliases its input")
	}
}

func TestParseSignedPrekeyRejects(t *testing.T) {
	t.Parallel()
	pk, err := GeneratePrekey(testKey(t, "bob-2048"), advT0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good := pk.Signed.toPB()
	mod := func(f func(m *pb.SignedPrekey)) []byte {
		m := &pb.SignedPrekey{
			Id: good.Id, PublicKey: good.PublicKey, NotBefore: good.NotBefore, NotAfter: good.NotAfter,
			OwnerKey: good.OwnerKey, Signature: good.Signature,
		}
		f(m)
		return marshal(m)
	}
	raw := pk.Signed.Marshal()
	for name, b := range map[string][]byte{
		"empty":             nil,
		"id 0":              mod(func(m *pb.SignedPrekey) { m.Id = 0 }),
		"short public":      mod(func(m *pb.SignedPrekey) { m.PublicKey = m.PublicKey[:31] }),
		"long owner":        mod(func(m *pb.SignedPrekey) { m.OwnerKey = append(bytes.Clone(m.OwnerKey), 0) }),
		"short signature":   mod(func(m *pb.SignedPrekey) { m.Signature = m.Signature[:MinRSABits/8-1] }),
		"long signature":    mod(func(m *pb.SignedPrekey) { m.Signature = make([]byte, MaxRSABits/8+1) }),
		"empty validity":    mod(func(m *pb.SignedPrekey) { m.NotAfter = m.NotBefore }),
		"inverted validity": mod(func(m *pb.SignedPrekey) { m.NotAfter = m.NotBefore - 1 }),
		"unknown field":     protowire.AppendVarint(protowire.AppendTag(bytes.Clone(raw), 7, protowire.VarintType), 1),
		"duplicated id":     append(bytes.Clone(raw), raw[:9]...),
		"truncated":         raw[:len(raw)-1],
		"not_before re-set": append(bytes.Clone(raw), 0x18, 0x00),
	} {
		if sp, err := ParseSignedPrekey(b); !errors.Is(err, ErrMalformed) || sp != nil {
			t.Errorf("%s: ParseSignedPrekey = %v, %v; want nil, ErrMalformed", name, sp, err)
		}
	}
	if _, err := ParseSignedPrekey(make([]byte, 2049)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v, want ErrTooLarge", err)
	}
}

func TestPrekeyPrivateRoundTrip(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	pk, err := GeneratePrekey(bob, advT0.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw := pk.Marshal()
	got, err := ParsePrekey(raw)
	if err != nil {
		t.Fatalf("ParsePrekey: %v", err)
	}
	if got.ID() != pk.ID() || got.Signed.Public != pk.Signed.Public || !got.priv.Equal(pk.priv) {
		t.Fatalf("round trip changed the prekey")
	}
	if !bytes.Equal(got.Marshal(), raw) {
		t.Fatalf("Marshal(ParsePrekey(raw)) != raw")
	}
	// The parsed prekey opens what was sealed to the original.
	raw2 := advSeal(t, alice, bob, pk, KindText, []byte("fs"), advT0).Marshal()
	advOpenOK(t, advOpener(bob, []*PrivateKey{alice}, advT0, got), raw2)
}

func TestParsePrekeyRejects(t *testing.T) {
	t.Parallel()
	bob := testKey(t, "bob-2048")
	pk, err := GeneratePrekey(bob, advT0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	build := func(signed *pb.SignedPrekey, priv []byte) []byte {
		return marshal(&pb.PrekeyPrivate{Signed: signed, PrivateKey: priv})
	}
	badSigned := pk.Signed.toPB()
	badSigned.Id = 0
	for name, b := range map[string][]byte{
		"empty":                 nil,
		"mismatched halves":     build(pk.Signed.toPB(), other.Bytes()),
		"no public half":        build(nil, pk.priv.Bytes()),
		"no private half":       build(pk.Signed.toPB(), nil),
		"short private":         build(pk.Signed.toPB(), pk.priv.Bytes()[:31]),
		"malformed public half": build(badSigned, pk.priv.Bytes()),
		"empty public half":     build(&pb.SignedPrekey{}, pk.priv.Bytes()),
		"truncated":             pk.Marshal()[:40],
	} {
		if p, err := ParsePrekey(b); !errors.Is(err, ErrMalformed) || p != nil {
			t.Errorf("%s: ParsePrekey = %v, %v; want nil, ErrMalformed", name, p, err)
		}
	}
	// An unknown field nested inside the signed half.
	inner := protowire.AppendVarint(protowire.AppendTag(pk.Signed.Marshal(), 9, protowire.VarintType), 1)
	outer := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), inner)
	outer = protowire.AppendBytes(protowire.AppendTag(outer, 2, protowire.BytesType), pk.priv.Bytes())
	if p, err := ParsePrekey(outer); !errors.Is(err, ErrMalformed) || p != nil {
		t.Errorf("nested unknown field: ParsePrekey = %v, %v; want nil, ErrMalformed", p, err)
	}
	if _, err := ParsePrekey(make([]byte, 2049)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v, want ErrTooLarge", err)
	}
}
