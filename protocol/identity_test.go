package protocol

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base32"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestFixtureKeysAccepted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		bits int
	}{
		{"alice-2048", 2048},
		{"bob-2048", 2048},
		{"carol-2048", 2048},
		{"alice-3072", 3072},
		{"bob-3072", 3072},
		{"carol-3072", 3072},
		{"big-4096", 4096},
		{"big-8192", 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := ParsePrivateKey(testKeyDER(t, tc.name+".pem"))
			if err != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
			pub := k.Public()
			if pub.Bits() != tc.bits {
				t.Fatalf("Bits = %d, want %d", pub.Bits(), tc.bits)
			}
			if pub.Size() != tc.bits/8 {
				t.Fatalf("Size = %d, want %d", pub.Size(), tc.bits/8)
			}
			// Public key: DER round trip keeps the key and its ID.
			p2, err := ParsePublicKey(pub.Bytes())
			if err != nil {
				t.Fatalf("ParsePublicKey(Bytes()): %v", err)
			}
			if !p2.Equal(pub) || p2.ID() != pub.ID() || p2.ID() != k.ID() {
				t.Fatalf("public key round trip changed the key")
			}
			if p2.String() != k.ID().String() {
				t.Fatalf("String() = %q, want the ID %q", p2.String(), k.ID())
			}
			// Private key: PKCS #8 round trip keeps the key.
			k2, err := ParsePrivateKey(k.Bytes())
			if err != nil {
				t.Fatalf("ParsePrivateKey(Bytes()): %v", err)
			}
			if k2.ID() != k.ID() || !k2.Public().Equal(pub) {
				t.Fatalf("private key round trip changed the key")
			}
			// Bytes returns a copy: changing it does not change the key.
			b := pub.Bytes()
			b[len(b)-1] ^= 1
			if !bytes.Equal(pub.Bytes(), p2.Bytes()) {
				t.Fatalf("PublicKey.Bytes aliases the key's encoding")
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	k, err := GenerateKey(MinRSABits)
	if err != nil {
		t.Fatalf("GenerateKey(%d): %v", MinRSABits, err)
	}
	if k.Public().Bits() != MinRSABits {
		t.Fatalf("generated %d bits, want %d", k.Public().Bits(), MinRSABits)
	}
	k2, err := ParsePrivateKey(k.Bytes())
	if err != nil {
		t.Fatalf("ParsePrivateKey of a generated key: %v", err)
	}
	if k2.ID() != k.ID() {
		t.Fatalf("generated key changed in a round trip")
	}
	sig, err := k.Sign("parley/test", []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k2.Public().Verify("parley/test", []byte("m"), sig); err != nil {
		t.Fatalf("generated key's signature does not verify after a round trip: %v", err)
	}
}

func TestGenerateKeyRejectsSizes(t *testing.T) {
	t.Parallel()
	// These fail before any work: none of them would finish quickly
	// otherwise (16384 bits), or at all (0, negative).
	for _, bits := range []int{-1, 0, 512, 1024, MinRSABits - 1, MaxRSABits + 1, 16384} {
		k, err := GenerateKey(bits)
		if !errors.Is(err, ErrKeySize) {
			t.Errorf("GenerateKey(%d) = %v, want ErrKeySize", bits, err)
		}
		if k != nil {
			t.Errorf("GenerateKey(%d) returned a key with its error", bits)
		}
	}
}

func TestWeakKeyRejected(t *testing.T) {
	t.Parallel()
	der := testKeyDER(t, "weak-1024.pem")
	k, err := ParsePrivateKey(der)
	if !errors.Is(err, ErrKeySize) || k != nil {
		t.Fatalf("ParsePrivateKey(weak-1024) = %v, %v; want nil, ErrKeySize", k, err)
	}
	raw, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	rk := raw.(*rsa.PrivateKey)
	if rk.N.BitLen() != 1024 {
		t.Fatalf("fixture weak-1024 has %d bits", rk.N.BitLen())
	}
	spki, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ParsePublicKey(spki); !errors.Is(err, ErrKeySize) || p != nil {
		t.Fatalf("ParsePublicKey(weak-1024) = %v, %v; want nil, ErrKeySize", p, err)
	}
	if p, err := NewPublicKey(&rk.PublicKey); !errors.Is(err, ErrKeySize) || p != nil {
		t.Fatalf("NewPublicKey(weak-1024) = %v, %v; want nil, ErrKeySize", p, err)
	}
}

func TestHugeKeyRejected(t *testing.T) {
	t.Parallel()
	if p, err := ParsePublicKey(testKeyDER(t, "huge-16384.pub.pem")); !errors.Is(err, ErrKeySize) || p != nil {
		t.Fatalf("ParsePublicKey(huge-16384) = %v, %v; want nil, ErrKeySize", p, err)
	}
	if k, err := ParsePrivateKey(testKeyDER(t, "huge-16384.pem")); !errors.Is(err, ErrKeySize) || k != nil {
		t.Fatalf("ParsePrivateKey(huge-16384) = %v, %v; want nil, ErrKeySize", k, err)
	}
	// The same key handed over as a parsed *rsa.PublicKey is refused by the
	// bit-length check rather than the encoding cap.
	pk, err := x509.ParsePKIXPublicKey(testKeyDER(t, "huge-16384.pub.pem"))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	rk := pk.(*rsa.PublicKey)
	if rk.N.BitLen() != 16384 {
		t.Fatalf("fixture huge-16384 has %d bits", rk.N.BitLen())
	}
	if p, err := NewPublicKey(rk); !errors.Is(err, ErrKeySize) || p != nil {
		t.Fatalf("NewPublicKey(16384 bits) = %v, %v; want nil, ErrKeySize", p, err)
	}
}

func TestPublicKeyExponent(t *testing.T) {
	t.Parallel()
	n := testKey(t, "alice-2048").k.N
	for _, e := range []int{3, 17, 65539} {
		rk := &rsa.PublicKey{N: n, E: e}
		der, err := x509.MarshalPKIXPublicKey(rk)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := ParsePublicKey(der); !errors.Is(err, ErrKeySize) || p != nil {
			t.Errorf("ParsePublicKey(E=%d) = %v, %v; want nil, ErrKeySize", e, p, err)
		}
		if p, err := NewPublicKey(rk); !errors.Is(err, ErrKeySize) || p != nil {
			t.Errorf("NewPublicKey(E=%d) = %v, %v; want nil, ErrKeySize", e, p, err)
		}
	}
}

func TestNewPublicKeyNil(t *testing.T) {
	t.Parallel()
	for _, k := range []*rsa.PublicKey{nil, {E: 65537}} {
		if p, err := NewPublicKey(k); !errors.Is(err, ErrMalformed) || p != nil {
			t.Errorf("NewPublicKey(%v) = %v, %v; want nil, ErrMalformed", k, p, err)
		}
	}
}

func TestParsePublicKeyNonCanonical(t *testing.T) {
	t.Parallel()
	der := testKey(t, "alice-2048").Public().Bytes()
	// A 2048-bit SPKI is a SEQUENCE with 290 bytes of contents: 30 82 01 22 ….
	if der[0] != 0x30 || der[1] != 0x82 {
		t.Fatalf("unexpected SPKI header % x", der[:4])
	}
	longForm := append([]byte{0x30, 0x83, 0x00, der[2], der[3]}, der[4:]...)
	for name, b := range map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("not a key"),
		"trailing byte":  append(bytes.Clone(der), 0),
		"trailing SEQ":   append(bytes.Clone(der), 0x30, 0x00),
		"truncated":      der[:len(der)-1],
		"long-form BER":  longForm,
		"indefinite BER": append(append([]byte{0x30, 0x80}, der[4:]...), 0, 0),
		"PKCS #1 body":   x509.MarshalPKCS1PublicKey(&testKey(t, "alice-2048").k.PublicKey),
	} {
		if p, err := ParsePublicKey(b); !errors.Is(err, ErrMalformed) || p != nil {
			t.Errorf("%s: ParsePublicKey = %v, %v; want nil, ErrMalformed", name, p, err)
		}
	}
}

func TestParseKeyNonRSA(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]any{"ecdsa": &ec.PublicKey, "ed25519": edPub} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := ParsePublicKey(der); !errors.Is(err, ErrMalformed) || p != nil {
			t.Errorf("ParsePublicKey(%s) = %v, %v; want nil, ErrMalformed", name, p, err)
		}
	}
	for name, priv := range map[string]any{"ecdsa": ec, "ed25519": edPriv} {
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if k, err := ParsePrivateKey(der); !errors.Is(err, ErrMalformed) || k != nil {
			t.Errorf("ParsePrivateKey(%s) = %v, %v; want nil, ErrMalformed", name, k, err)
		}
	}
	for name, b := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not a key"),
		"PKCS #1": x509.MarshalPKCS1PrivateKey(testKey(t, "alice-2048").k),
		"SPKI":    testKey(t, "alice-2048").Public().Bytes(),
	} {
		if k, err := ParsePrivateKey(b); !errors.Is(err, ErrMalformed) || k != nil {
			t.Errorf("ParsePrivateKey(%s) = %v, %v; want nil, ErrMalformed", name, k, err)
		}
	}
}

func TestUserIDIsHashOfSPKI(t *testing.T) {
	t.Parallel()
	k := testKey(t, "alice-3072")
	spki, err := x509.MarshalPKIXPublicKey(&k.k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := ID(sha256.Sum256(spki)); k.ID() != want || k.Public().ID() != want {
		t.Fatalf("ID = %x, want SHA-256(SPKI) = %x", k.ID(), want)
	}
	s := k.ID().String()
	if len(s) != 52 {
		t.Fatalf("ID string %q has %d characters, want 52", s, len(s))
	}
	id := k.ID()
	if want := strings.ToLower(base32.StdEncoding.EncodeToString(id[:])); s != strings.TrimRight(want, "=") {
		t.Fatalf("ID string %q, want lower-case unpadded base32 %q", s, want)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			t.Fatalf("ID string %q has %q, outside lower-case base32", s, c)
		}
	}
	if k.ID().IsZero() || !(ID{}).IsZero() {
		t.Fatalf("IsZero is wrong")
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"alice-2048", "bob-3072", "big-8192"} {
		id := testKey(t, name).ID()
		for _, s := range []string{id.String(), strings.ToUpper(id.String())} {
			got, err := ParseID(s)
			if err != nil || got != id {
				t.Fatalf("ParseID(%q) = %v, %v; want %v", s, got, err, id)
			}
		}
	}
	good := testKey(t, "alice-2048").ID().String()
	for name, s := range map[string]string{
		"empty":          "",
		"one short":      good[:51],
		"one long":       good + "a",
		"padded":         good + "====",
		"digit 0":        "0" + good[1:],
		"digit 1":        good[:10] + "1" + good[11:],
		"digit 8":        good[:20] + "8" + good[21:],
		"digit 9":        good[:51] + "9",
		"punctuation":    good[:30] + "!" + good[31:],
		"space":          good[:30] + " " + good[31:],
		"padding inside": good[:50] + "==",
		"hex":            strings.Repeat("f", 64),
		"non-ASCII":      good[:50] + "é",
	} {
		if _, err := ParseID(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseID(%s %q) = %v, want ErrMalformed", name, s, err)
		}
	}
}

func TestIDFromBytes(t *testing.T) {
	t.Parallel()
	id := testKey(t, "alice-2048").ID()
	got, err := IDFromBytes(id[:])
	if err != nil || got != id {
		t.Fatalf("IDFromBytes = %v, %v", got, err)
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := IDFromBytes(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("IDFromBytes(%d bytes) = %v, want ErrMalformed", n, err)
		}
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	const label = "parley/test/sig"
	msg := []byte("attack at dawn")
	sig, err := alice.Sign(label, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != alice.Public().Size() {
		t.Fatalf("signature of %d bytes, want %d", len(sig), alice.Public().Size())
	}
	if err := alice.Public().Verify(label, msg, sig); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// PSS is randomised: two signatures differ, both verify.
	sig2, err := alice.Sign(label, msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sig, sig2) {
		t.Fatalf("two PSS signatures are equal")
	}
	// The signature is RSA-PSS-SHA256 with salt 32 over SHA-256(label ‖ msg),
	// checked here by the standard library rather than by Verify.
	d := sha256.Sum256(append([]byte(label), msg...))
	if err := rsa.VerifyPSS(&alice.k.PublicKey, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
		t.Fatalf("signature is not RSA-PSS(SHA-256(label ‖ msg)) with salt 32: %v", err)
	}

	big := testKey(t, "alice-3072")
	bigSig, err := big.Sign(label, msg)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		key   *PublicKey
		label string
		msg   []byte
		sig   []byte
	}{
		"wrong label":       {alice.Public(), label + "x", msg, sig},
		"empty label":       {alice.Public(), "", msg, sig},
		"wrong message":     {alice.Public(), label, []byte("attack at dusk"), sig},
		"empty message":     {alice.Public(), label, nil, sig},
		"wrong key":         {bob.Public(), label, msg, sig},
		"other size key":    {alice.Public(), label, msg, bigSig},
		"truncated":         {alice.Public(), label, msg, sig[:len(sig)-1]},
		"extended":          {alice.Public(), label, msg, append(bytes.Clone(sig), 0)},
		"leading zero":      {alice.Public(), label, msg, append([]byte{0}, sig[:len(sig)-1]...)},
		"empty":             {alice.Public(), label, msg, nil},
		"flipped first bit": {alice.Public(), label, msg, advFlip(sig, 0, 0x80)},
		"flipped last bit":  {alice.Public(), label, msg, advFlip(sig, len(sig)-1, 1)},
		"all zero":          {alice.Public(), label, msg, make([]byte, len(sig))},
		"all ones":          {alice.Public(), label, msg, bytes.Repeat([]byte{0xff}, len(sig))},
	} {
		if err := tc.key.Verify(tc.label, tc.msg, tc.sig); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: Verify = %v, want ErrAuth", name, err)
		}
	}
}

// Verification uses exactly salt length 32, with no automatic detection: a
// signature that is valid PSS over the same digest but with another salt
// length is refused.
func TestVerifyPSSSaltLengthIsExactly32(t *testing.T) {
	t.Parallel()
	k := testKey(t, "alice-2048")
	const label = "parley/test/salt"
	msg := []byte("salted")
	d := sha256.Sum256(append([]byte(label), msg...))
	sign := func(salt int) []byte {
		sig, err := rsa.SignPSS(rand.Reader, k.k, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: salt})
		if err != nil {
			t.Fatalf("SignPSS(salt %d): %v", salt, err)
		}
		return sig
	}
	// Control: the standard library's salt-32 signature over the same digest
	// verifies, so the refusals below are about the salt alone.
	if err := k.Public().Verify(label, msg, sign(32)); err != nil {
		t.Fatalf("salt 32 signature: %v", err)
	}
	for _, salt := range []int{0, 20, 31, 33, 64, rsa.PSSSaltLengthAuto} {
		if err := k.Public().Verify(label, msg, sign(salt)); !errors.Is(err, ErrAuth) {
			t.Errorf("salt %d signature: Verify = %v, want ErrAuth", salt, err)
		}
	}
}

// Domain separation rests on the labels: what is signed is label ‖ message,
// so no label may be a prefix of another.
func TestLabelsArePrefixFree(t *testing.T) {
	t.Parallel()
	labels := []string{LabelEnvSig, LabelOAEP, LabelEnvKey, LabelPrekey, LabelCard, LabelSafety}
	for i, a := range labels {
		if !strings.HasPrefix(a, "parley/v1/") {
			t.Errorf("label %q is outside parley/v1/", a)
		}
		for j, b := range labels {
			if i != j && strings.HasPrefix(b, a) {
				t.Errorf("label %q is a prefix of %q", a, b)
			}
		}
	}
}

func TestOAEPUnwrap(t *testing.T) {
	t.Parallel()
	bob, carol := testKey(t, "bob-2048"), testKey(t, "carol-2048")
	secret := advBody(32)
	label := []byte("parley/v1/oaep-test")
	w, err := bob.Public().encryptOAEP(secret, label)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bob.decryptOAEP(w, label)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("decryptOAEP = %x, %v", got, err)
	}
	for name, tc := range map[string]struct {
		k     *PrivateKey
		w     []byte
		label []byte
	}{
		"wrong label": {bob, w, []byte("parley/v1/oaep-tesT")},
		"wrong key":   {carol, w, label},
		"flipped":     {bob, advFlip(w, 100, 1), label},
		"truncated":   {bob, w[1:], label},
		"extended":    {bob, append(bytes.Clone(w), 0), label},
	} {
		if s, err := tc.k.decryptOAEP(tc.w, tc.label); !errors.Is(err, ErrAuth) || s != nil {
			t.Errorf("%s: decryptOAEP = %x, %v; want nil, ErrAuth", name, s, err)
		}
	}
}

// encoding/x509 tolerates some non-canonical SPKI encodings (extra elements
// after the exponent, trailing bytes inside the BIT STRING); ParsePublicKey
// refuses them because they do not re-encode to the same bytes.
func TestParsePublicKeyX509Leniency(t *testing.T) {
	t.Parallel()
	k := testKey(t, "alice-2048")
	type rsaPub struct {
		N *big.Int
		E int
	}
	type rsaPubExtra struct {
		N     *big.Int
		E     int
		Extra int
	}
	spki := func(inner []byte) []byte {
		b, err := asn1.Marshal(struct {
			Algo      pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}{
			pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}, Parameters: asn1.NullRawValue},
			asn1.BitString{Bytes: inner, BitLength: 8 * len(inner)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mustASN1 := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain := mustASN1(rsaPub{k.k.N, k.k.E})
	if !bytes.Equal(spki(plain), k.Public().Bytes()) {
		t.Fatalf("the test's SPKI encoder does not match the canonical encoding")
	}
	for name, der := range map[string][]byte{
		"extra INTEGER in RSAPublicKey": spki(mustASN1(rsaPubExtra{k.k.N, k.k.E, 0})),
		"trailing NULL in BIT STRING":   spki(append(bytes.Clone(plain), 0x05, 0x00)),
	} {
		pk, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			t.Logf("%s: encoding/x509 now refuses it too (%v)", name, err)
		} else if !pk.(*rsa.PublicKey).Equal(&k.k.PublicKey) {
			t.Fatalf("%s: encoding/x509 read another key", name)
		}
		if p, err := ParsePublicKey(der); !errors.Is(err, ErrMalformed) || p != nil {
			t.Errorf("%s: ParsePublicKey = %v, %v; want nil, ErrMalformed", name, p, err)
		}
	}
}
