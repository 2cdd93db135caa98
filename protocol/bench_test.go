package protocol

import (
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

// Envelope benchmarks measure Seal and Open next to the bare RSA (and X25519)
// operations they cannot avoid, in the same iterations, so that a noisy
// machine moves both numbers together. Each iteration times the envelope
// operation and the bare operations with time.Now (nanoseconds, against
// milliseconds of RSA), alternating which goes first, and reports
//
//	env-ns/op   the envelope operation
//	bare-ns/op  the bare operations
//	ratio       env / bare: the cost of everything else (parsing, encoding,
//	            hashing, HKDF, AES-GCM, checks); the target is ≤ 1.05
//
// ns/op is the whole iteration (env + bare) and means little here. On a
// shared machine the ratio still moves by a few hundredths between runs (it
// is wall-clock time); use -count and compare medians before concluding.
//
//	go test -run '^$' -bench . -benchtime 2s ./protocol/

// benchCase is one envelope benchmark configuration.
type benchCase struct {
	suite Suite
	bits  int
	body  int
}

func (c benchCase) name() string {
	return fmt.Sprintf("suite=%d/rsa=%d/body=%d", c.suite, c.bits, c.body)
}

var benchCases = func() []benchCase {
	var cs []benchCase
	for _, s := range []Suite{SuiteRSA, SuiteRSAX25519} {
		for _, bits := range []int{2048, 3072} {
			for _, body := range []int{200, 4 << 10} {
				cs = append(cs, benchCase{s, bits, body})
			}
		}
	}
	return cs
}()

// benchParties returns the fixture keys and, for suite 2, a fresh prekey of
// the recipient valid at goldenNow.
func benchParties(b *testing.B, c benchCase) (alice, bob *PrivateKey, pk *Prekey) {
	b.Helper()
	alice, bob = testKey(b, fmt.Sprintf("alice-%d", c.bits)), testKey(b, fmt.Sprintf("bob-%d", c.bits))
	if c.suite == SuiteRSAX25519 {
		var err error
		if pk, err = GeneratePrekey(bob, goldenNow.Add(-time.Hour), 30*24*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return alice, bob, pk
}

func benchBody(n int) []byte {
	body := make([]byte, n)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	return body
}

// benchInterleave runs env and bare b.N times each, alternating which goes
// first, and reports their mean times and ratio.
func benchInterleave(b *testing.B, env, bare func()) {
	b.Helper()
	var envT, bareT time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			t0 := time.Now()
			env()
			t1 := time.Now()
			bare()
			envT, bareT = envT+t1.Sub(t0), bareT+time.Since(t1)
		} else {
			t0 := time.Now()
			bare()
			t1 := time.Now()
			env()
			bareT, envT = bareT+t1.Sub(t0), envT+time.Since(t1)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(envT.Nanoseconds())/n, "env-ns/op")
	b.ReportMetric(float64(bareT.Nanoseconds())/n, "bare-ns/op")
	b.ReportMetric(float64(envT)/float64(bareT), "ratio")
}

// benchOAEPLabel is a label of the length Seal uses.
var benchOAEPLabel = make([]byte, len(LabelOAEP)+2*IDSize+MsgIDSize)

// BenchmarkSeal: Seal (and Marshal, which puts it on the wire) against
// rsa.SignPSS + rsa.EncryptOAEP, plus X25519 GenerateKey + ECDH in suite 2.
func BenchmarkSeal(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name(), func(b *testing.B) {
			alice, bob, pk := benchParties(b, c)
			s := testSender(alice)
			var spk *SignedPrekey
			if pk != nil {
				spk = &pk.Signed
			}
			// A node builds the recipient once per friend (NewRecipient
			// checks the prekey signature) and seals many messages to it.
			r, err := NewRecipient(bob.ID(), bob.Public(), spk, goldenNow)
			if err != nil {
				b.Fatal(err)
			}
			body := benchBody(c.body)
			var prekeyPub *ecdh.PublicKey
			if pk != nil {
				prekeyPub = pk.priv.PublicKey()
			}
			digest := sha256.Sum256([]byte("parley/v1/env-sig and a canonical header"))
			var secret [32]byte
			pss := &rsa.PSSOptions{SaltLength: pssSaltLength}
			var sink []byte

			env := func() {
				e, err := Seal(s, r, KindText, body, goldenNow)
				if err != nil {
					b.Fatal(err)
				}
				sink = e.Marshal()
			}
			bare := func() {
				if prekeyPub != nil {
					eph, err := ecdh.X25519().GenerateKey(rand.Reader)
					if err != nil {
						b.Fatal(err)
					}
					if sink, err = eph.ECDH(prekeyPub); err != nil {
						b.Fatal(err)
					}
				}
				w, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &bob.k.PublicKey, secret[:], benchOAEPLabel)
				if err != nil {
					b.Fatal(err)
				}
				sig, err := rsa.SignPSS(rand.Reader, alice.k, crypto.SHA256, digest[:], pss)
				if err != nil {
					b.Fatal(err)
				}
				sink = append(w, sig...)
			}
			benchInterleave(b, env, bare)
			_ = sink
		})
	}
}

// BenchmarkOpen: Opener.Open of a marshalled envelope against rsa.VerifyPSS
// + rsa.DecryptOAEP, plus X25519 ECDH in suite 2.
func BenchmarkOpen(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name(), func(b *testing.B) {
			alice, bob, pk := benchParties(b, c)
			var prekeys []*Prekey
			if pk != nil {
				prekeys = append(prekeys, pk)
			}
			e, err := Seal(testSender(alice), testRecipient(bob, pk), KindText, benchBody(c.body), goldenNow)
			if err != nil {
				b.Fatal(err)
			}
			raw := e.Marshal()
			o := testOpener(bob, []*PrivateKey{alice}, prekeys...)
			o.Now = func() time.Time { return goldenNow }

			// Inputs of the bare operations, made with the same keys.
			var eph *ecdh.PublicKey
			if pk != nil {
				if eph, err = ecdh.X25519().NewPublicKey(e.Ephemeral); err != nil {
					b.Fatal(err)
				}
			}
			pss := &rsa.PSSOptions{SaltLength: pssSaltLength}
			digest := sha256.Sum256([]byte("parley/v1/env-sig and a canonical header"))
			sig, err := rsa.SignPSS(rand.Reader, alice.k, crypto.SHA256, digest[:], pss)
			if err != nil {
				b.Fatal(err)
			}
			var secret [32]byte
			wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &bob.k.PublicKey, secret[:], benchOAEPLabel)
			if err != nil {
				b.Fatal(err)
			}
			var sink []byte

			env := func() {
				m, err := o.Open(raw)
				if err != nil {
					b.Fatal(err)
				}
				sink = m.Body
			}
			bare := func() {
				if err := rsa.VerifyPSS(&alice.k.PublicKey, crypto.SHA256, digest[:], sig, pss); err != nil {
					b.Fatal(err)
				}
				s, err := rsa.DecryptOAEP(sha256.New(), nil, bob.k, wrapped, benchOAEPLabel)
				if err != nil {
					b.Fatal(err)
				}
				sink = s
				if eph != nil {
					if sink, err = pk.priv.ECDH(eph); err != nil {
						b.Fatal(err)
					}
				}
			}
			benchInterleave(b, env, bare)
			_ = sink
		})
	}
}

func BenchmarkParseEnvelope(b *testing.B) {
	for _, name := range []string{"s1-2048-text-empty", "s2-3072-text-multiblock"} {
		b.Run(name, func(b *testing.B) {
			raw := goldenRead(b, "envelopes", name+".bin")
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseEnvelope(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseCardURI includes the RSA-3072 verification of the card
// and of its prekey.
func BenchmarkParseCardURI(b *testing.B) {
	for _, name := range []string{"alice-3072", "alice-3072-prekey"} {
		b.Run(name, func(b *testing.B) {
			uri := string(goldenRead(b, "cards", name+".uri"))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseCardURI(uri); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSafetyNumber(b *testing.B) {
	for _, bits := range []int{2048, 3072} {
		b.Run(fmt.Sprintf("rsa=%d", bits), func(b *testing.B) {
			a, c := testKey(b, fmt.Sprintf("alice-%d", bits)), testKey(b, fmt.Sprintf("bob-%d", bits))
			b.ReportAllocs()
			for b.Loop() {
				SafetyNumber(a.ID(), a.Public(), c.ID(), c.Public())
			}
		})
	}
}

func BenchmarkGeneratePrekey(b *testing.B) {
	for _, bits := range []int{2048, 3072} {
		b.Run(fmt.Sprintf("rsa=%d", bits), func(b *testing.B) {
			owner := testKey(b, fmt.Sprintf("bob-%d", bits))
			for b.Loop() {
				if _, err := GeneratePrekey(owner, goldenNow, 7*24*time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerateKey3072 is slow (prime search, hundreds of milliseconds
// to seconds per key) and random in duration: expect few iterations and a
// wide spread between runs.
func BenchmarkGenerateKey3072(b *testing.B) {
	for b.Loop() {
		if _, err := GenerateKey(3072); err != nil {
			b.Fatal(err)
		}
	}
}
