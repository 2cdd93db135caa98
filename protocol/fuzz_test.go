package protocol

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for every parser of untrusted input, and for Opener.Open.
// Their seed corpus is the golden files plus hand-made damage (empty,
// truncated, one byte flipped, one byte appended), and whatever is kept in
// testdata/fuzz/<FuzzName>. A plain `go test` runs the seeds only; fuzz one
// target with
//
//	go test -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s -fuzzminimizetime 3s ./protocol/
//
// (the default minimization budget, 60 s per new input, can eat a short
// run: the exec counter then sits at 0/sec while workers minimize).
//
// The common property: no panic, failures wrap a sentinel error, and a
// successful parse is of the one canonical encoding (it re-encodes to the
// input).

// fuzzSentinels are the errors a parser or Open may return, wrapped.
var fuzzSentinels = []error{ErrAuth, ErrMalformed, ErrTooLarge, ErrNotForMe, ErrStale, ErrUnknownPrekey, ErrUnknownSender, ErrKeySize, ErrBadChain}

func fuzzCheckErr(t *testing.T, what string, err error) {
	t.Helper()
	for _, s := range fuzzSentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("%s: error %q wraps no sentinel", what, err)
}

// fuzzDamaged returns b and damaged copies of it: truncated, with one byte
// flipped at a few places, and with a byte appended.
func fuzzDamaged(b []byte) [][]byte {
	out := [][]byte{b}
	if len(b) == 0 {
		return out
	}
	out = append(out, b[:len(b)/2], b[:len(b)-1], append(bytes.Clone(b), 0))
	for _, i := range []int{0, 1, len(b) / 3, len(b) / 2, len(b) - 1} {
		if i < len(b) {
			c := bytes.Clone(b)
			c[i] ^= 0x01
			out = append(out, c)
		}
	}
	return out
}

// fuzzAddBytes seeds f with nothing, a few junk inputs, and each golden
// input with its damaged copies.
func fuzzAddBytes(f *testing.F, golden ...[]byte) {
	f.Add([]byte{})
	f.Add([]byte{0x00})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	for _, g := range golden {
		for _, b := range fuzzDamaged(g) {
			f.Add(b)
		}
	}
}

// fuzzGoldenFiles reads golden files matching a glob under testdata/golden.
func fuzzGoldenFiles(f *testing.F, pattern string) [][]byte {
	f.Helper()
	files, err := filepath.Glob(goldenPath(pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden files match %s (%v)", pattern, err)
	}
	var out [][]byte
	for _, file := range files {
		rel, _ := filepath.Rel(goldenDir, file)
		out = append(out, goldenRead(f, rel))
	}
	return out
}

func FuzzParseEnvelope(f *testing.F) {
	fuzzAddBytes(f, fuzzGoldenFiles(f, "envelopes/*.bin")...)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b)
		if err != nil {
			if e != nil {
				t.Fatal("ParseEnvelope returned an envelope and an error")
			}
			fuzzCheckErr(t, "ParseEnvelope", err)
			return
		}
		if !bytes.Equal(e.Marshal(), b) {
			t.Fatalf("ParseEnvelope accepted a non-canonical encoding:\n in %x\nout %x", b, e.Marshal())
		}
		if e.Suite != SuiteRSA && e.Suite != SuiteRSAX25519 || e.Version != Version || e.Kind == 0 {
			t.Fatalf("ParseEnvelope accepted version %d suite %d kind %d", e.Version, e.Suite, e.Kind)
		}
		_ = e.Canonical()
	})
}

func FuzzOpen(f *testing.F) {
	golden := goldenEnvelopeBytes(f)
	var all [][]byte
	for _, name := range goldenEnvelopeNames {
		all = append(all, golden[name])
	}
	fuzzAddBytes(f, all...)

	senders := []*PrivateKey{testKey(f, "alice-2048"), testKey(f, "alice-3072"), testKey(f, "carol-2048")}
	openers := map[string]*Opener{} // fixture size → bob's opener
	for _, bits := range []string{"2048", "3072"} {
		bob := "bob-" + bits
		o := testOpener(testKey(f, bob), senders, goldenLoadPrekey(f, bob+".prekey.bin"))
		o.Now = func() time.Time { return goldenNow }
		openers[bits] = o
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for bits, o := range openers {
			msg, err := o.Open(b)
			if err != nil {
				if msg != nil {
					t.Fatal("Open returned a message and an error")
				}
				fuzzCheckErr(t, "Open", err)
				continue
			}
			// Only the golden envelopes to this bob may open: every byte
			// of an envelope is signed or checked.
			ok := false
			for name, g := range golden {
				ok = ok || bytes.Equal(b, g) && strings.Contains(name, "-"+bits+"-")
			}
			if !ok {
				t.Fatalf("bob-%s opened an input that is not a golden envelope to him: %x", bits, b)
			}
		}
	})
}

func FuzzParseCard(f *testing.F) {
	var cards [][]byte
	for _, u := range fuzzGoldenFiles(f, "cards/*.uri") {
		c, err := ParseCardURI(string(u))
		if err != nil {
			f.Fatalf("golden card: %v", err)
		}
		cards = append(cards, c.Marshal())
	}
	fuzzAddBytes(f, cards...)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCard(b)
		if err != nil {
			if c != nil {
				t.Fatal("ParseCard returned a card and an error")
			}
			fuzzCheckErr(t, "ParseCard", err)
			return
		}
		if !bytes.Equal(c.Marshal(), b) {
			t.Fatalf("ParseCard accepted a non-canonical encoding:\n in %x\nout %x", b, c.Marshal())
		}
		fuzzCheckCard(t, c)
	})
}

// fuzzCheckCard checks what a successfully parsed card promises.
func fuzzCheckCard(t *testing.T, c *Card) {
	t.Helper()
	if c.Key == nil {
		t.Fatal("parsed card has no key")
	}
	if c.Genesis == nil && (c.Chain != nil || c.Key.ID() != c.UserID) {
		t.Fatal("parsed card's key does not hash to its user ID")
	}
	if c.Genesis != nil {
		if cur, err := VerifyChain(c.UserID, c.Genesis, c.Chain); err != nil || !cur.Equal(c.Key) || len(c.Chain) == 0 {
			t.Fatalf("parsed card's chain does not lead to its key: %v", err)
		}
	}
	if err := c.Key.Verify(LabelCard, c.canonical(), c.Signature); err != nil {
		t.Fatalf("parsed card's signature does not verify: %v", err)
	}
	if c.Prekey != nil {
		if err := c.Prekey.VerifySignature(c.Key); err != nil {
			t.Fatalf("parsed card's prekey does not verify: %v", err)
		}
	}
	if err := CheckName(c.Name); err != nil {
		t.Fatalf("parsed card has a bad name: %v", err)
	}
}

func FuzzParseCardURI(f *testing.F) {
	f.Add("")
	f.Add(CardURIScheme)
	f.Add("parley:card")
	f.Add(CardURIScheme + "AAAA")
	for _, u := range fuzzGoldenFiles(f, "cards/*.uri") {
		s := strings.TrimSpace(string(u))
		for _, v := range []string{
			s, s[:len(s)/2], s[:len(s)-1], s + "A", strings.ToUpper(s[:len(CardURIScheme)]) + s[len(CardURIScheme):],
			" " + s + "\n", s[:len(s)/2] + "*" + s[len(s)/2+1:], s[:len(s)/2] + "\n" + s[len(s)/2:],
			s[:len(s)/2] + "\r" + s[len(s)/2:], fuzzBase64Alias(s),
		} {
			f.Add(v)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCardURI(s)
		if err != nil {
			if c != nil {
				t.Fatal("ParseCardURI returned a card and an error")
			}
			fuzzCheckErr(t, "ParseCardURI", err)
			return
		}
		fuzzCheckCard(t, c)
		// The link is the card's own link, up to what ParseCardURI
		// forgives on purpose: surrounding space and the case of the
		// scheme. (Base64 is strict and CR/LF are refused, so one card
		// has exactly one payload.)
		trimmed, uri := strings.TrimSpace(s), c.URI()
		if len(trimmed) != len(uri) || !strings.EqualFold(trimmed[:len(CardURIScheme)], CardURIScheme) ||
			trimmed[len(CardURIScheme):] != uri[len(CardURIScheme):] {
			t.Fatalf("ParseCardURI accepted a non-canonical link:\n in %q\nout %q", s, uri)
		}
		if c2, err := ParseCardURI(uri); err != nil || !bytes.Equal(c2.Marshal(), c.Marshal()) {
			t.Fatalf("a card's URI does not round-trip: %v", err)
		}
	})
}

// fuzzBase64Alias changes the lowest bit of the last base64url character
// of s. When the payload's length leaves unused bits in that character, a
// lenient decoder maps both spellings to the same bytes.
func fuzzBase64Alias(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	if i < 0 {
		return s
	}
	return s[:len(s)-1] + string(alphabet[i^1])
}

func FuzzParseSignedPrekey(f *testing.F) {
	fuzzAddBytes(f, fuzzGoldenFiles(f, "prekeys/*.signed-prekey.bin")...)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseSignedPrekey(b)
		if err != nil {
			if p != nil {
				t.Fatal("ParseSignedPrekey returned a prekey and an error")
			}
			fuzzCheckErr(t, "ParseSignedPrekey", err)
			return
		}
		if !bytes.Equal(p.Marshal(), b) {
			t.Fatalf("ParseSignedPrekey accepted a non-canonical encoding:\n in %x\nout %x", b, p.Marshal())
		}
		if p.ID == 0 || !p.NotBefore.Before(p.NotAfter) {
			t.Fatalf("ParseSignedPrekey accepted ID %d, validity %v..%v", p.ID, p.NotBefore, p.NotAfter)
		}
	})
}

func FuzzParsePrekey(f *testing.F) {
	fuzzAddBytes(f, fuzzGoldenFiles(f, "prekeys/*.prekey.bin")...)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePrekey(b)
		if err != nil {
			if p != nil {
				t.Fatal("ParsePrekey returned a prekey and an error")
			}
			fuzzCheckErr(t, "ParsePrekey", err)
			return
		}
		if !bytes.Equal(p.Marshal(), b) {
			t.Fatalf("ParsePrekey accepted a non-canonical encoding:\n in %x\nout %x", b, p.Marshal())
		}
		if !bytes.Equal(p.priv.PublicKey().Bytes(), p.Signed.Public[:]) {
			t.Fatal("ParsePrekey accepted mismatched halves")
		}
	})
}

// fuzzKeyFiles are the fixture keys used as seeds: accepted sizes and the
// rejected 1024-bit one.
var fuzzKeyFiles = []string{"alice-2048", "bob-3072", "big-4096", "weak-1024"}

func FuzzParsePublicKey(f *testing.F) {
	var seeds [][]byte
	for _, name := range fuzzKeyFiles {
		seeds = append(seeds, fuzzPublicDER(f, testKeyDER(f, name+".pem")))
	}
	seeds = append(seeds, testKeyDER(f, "huge-16384.pub.pem"))
	fuzzAddBytes(f, seeds...)
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePublicKey(b)
		if err != nil {
			if k != nil {
				t.Fatal("ParsePublicKey returned a key and an error")
			}
			fuzzCheckErr(t, "ParsePublicKey", err)
			return
		}
		if !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("ParsePublicKey accepted a non-canonical encoding:\n in %x\nout %x", b, k.Bytes())
		}
		if bits := k.Bits(); bits < MinRSABits || bits > MaxRSABits || k.k.E != rsaExponent {
			t.Fatalf("ParsePublicKey accepted a %d-bit key with exponent %d", bits, k.k.E)
		}
	})
}

// fuzzPublicDER returns the SubjectPublicKeyInfo of a PKCS #8 RSA key.
func fuzzPublicDER(tb testing.TB, der []byte) []byte {
	tb.Helper()
	k, err := ParsePrivateKey(der)
	if err == nil {
		return k.Public().Bytes()
	}
	// weak-1024 does not parse as an identity; encode its public half by hand.
	pub, err := fuzzSPKIOfPKCS8(der)
	if err != nil {
		tb.Fatalf("fixture key: %v", err)
	}
	return pub
}

// fuzzSPKIOfPKCS8 returns the SubjectPublicKeyInfo DER of a PKCS #8 key,
// whatever its size.
func fuzzSPKIOfPKCS8(der []byte) ([]byte, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("fixture is %T", k)
	}
	return x509.MarshalPKIXPublicKey(&rk.PublicKey)
}

func FuzzParsePrivateKey(f *testing.F) {
	var seeds [][]byte
	for _, name := range fuzzKeyFiles {
		seeds = append(seeds, testKeyDER(f, name+".pem"))
	}
	fuzzAddBytes(f, seeds...)
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePrivateKey(b)
		if err != nil {
			if k != nil {
				t.Fatal("ParsePrivateKey returned a key and an error")
			}
			fuzzCheckErr(t, "ParsePrivateKey", err)
			return
		}
		if bits := k.Public().Bits(); bits < MinRSABits || bits > MaxRSABits {
			t.Fatalf("ParsePrivateKey accepted a %d-bit key", bits)
		}
		// PKCS #8 is not required to be canonical, but what Bytes writes
		// must parse back to the same key ...
		k2, err := ParsePrivateKey(k.Bytes())
		if err != nil || !k2.Public().Equal(k.Public()) {
			t.Fatalf("ParsePrivateKey(k.Bytes()) = %v", err)
		}
		// ... and an accepted key must work: sign and verify.
		sig, err := k.Sign("parley/test/fuzz", b)
		if err != nil {
			t.Fatalf("an accepted key cannot sign: %v", err)
		}
		if err := k.Public().Verify("parley/test/fuzz", b, sig); err != nil {
			t.Fatalf("an accepted key makes bad signatures: %v", err)
		}
	})
}

func FuzzParseID(f *testing.F) {
	alice := testKey(f, "alice-2048").ID().String()
	// alias differs from alice only in the unused low bits of the last
	// character, which encoding/base32 ignores: ParseID must refuse it.
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	alias := alice[:51] + string(alphabet[strings.IndexByte(alphabet, alice[51])^1])
	for _, s := range []string{
		"", alice, strings.ToUpper(alice), alice[:51], alice + "a", alice[:51] + "=", alice[:51] + "1", alias,
		alice[:20] + "\n" + alice[21:], strings.Repeat("a", 52), strings.Repeat("7", 52), strings.Repeat("a", 56),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			fuzzCheckErr(t, "ParseID", err)
			return
		}
		printed := id.String()
		if !strings.EqualFold(printed, s) {
			t.Fatalf("ParseID(%q) = %s: accepted a non-canonical spelling", s, printed)
		}
		if back, err := ParseID(printed); err != nil || back != id {
			t.Fatalf("ParseID(%q) does not round-trip: %v", printed, err)
		}
	})
}
