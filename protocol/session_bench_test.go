package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"math"
	"testing"
	"time"
)

// Session benchmarks, in the style of bench_test.go: each session
// operation is timed in the same iterations as the bare primitives it
// cannot avoid, and reported as env-ns/op (the session operation),
// bare-ns/op and their ratio (target ≤ 1.2), see sessBenchInterleave:
//
//	ratchet step  vs X25519 GenerateKey + 2 × ECDH
//	seal          vs AES-256-GCM key setup and seal of the padded body +
//	              Ed25519 sign of a message as long as header ‖ ciphertext
//	open          vs AES-256-GCM key setup and open + Ed25519 verify of it
//	strict seal   vs the same with RSA-PSS (3072) sign
//	strict open   vs the same with RSA-PSS (3072) verify
//
// The bare side signs header ‖ ciphertext directly; the session signs
// SHA-256(ciphertext) instead. What the ratio counts beyond the bare
// operations: the chain KDF (HMAC-SHA256), the message-key expansion
// (HKDF), the ciphertext hash, the random msg_id, the header encoding,
// protobuf encoding and strict parsing, and the transactional copy.
//
//	go test -run '^$' -bench Session -benchtime 2s ./protocol/

var sessBenchBodies = []int{200, 4 << 10}

// sessBenchChunk is how many operations sessBenchInterleave times at once.
const sessBenchChunk = 16

// sessBenchInterleave runs env and bare b.N times each, in alternating
// chunks of sessBenchChunk, and reports the fastest chunk's time per
// operation of each (env-ns/op, bare-ns/op) and their ratio: on a loaded
// machine the fastest chunk is the one least disturbed, while a mean
// (ratio-mean, from the totals) moves with the load.
func sessBenchInterleave(b *testing.B, env, bare func()) {
	b.Helper()
	envMin, bareMin := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	var envT, bareT time.Duration
	run := func(f func(), k int) time.Duration {
		t0 := time.Now()
		for range k {
			f()
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += sessBenchChunk {
		k := min(sessBenchChunk, b.N-done)
		e, r := run(env, k), run(bare, k)
		envT, bareT = envT+e, bareT+r
		if k == sessBenchChunk || done == 0 {
			envMin, bareMin = min(envMin, e/time.Duration(k)), min(bareMin, r/time.Duration(k))
		}
	}
	b.ReportMetric(float64(envMin.Nanoseconds()), "env-ns/op")
	b.ReportMetric(float64(bareMin.Nanoseconds()), "bare-ns/op")
	b.ReportMetric(float64(envMin)/float64(bareMin), "ratio")
	b.ReportMetric(float64(envT)/float64(bareT), "ratio-mean")
}

// sessBenchPair returns alice and bob with a session in which both have
// sent, so that it is in its steady state.
func sessBenchPair(b *testing.B, bits int) (*sessSide, *sessSide) {
	b.Helper()
	alice, bob := sessPair(b, fmt.Sprintf("alice-%d", bits), fmt.Sprintf("bob-%d", bits))
	bob.mustAccept(b, alice.start(b, bob, KindText, []byte("hi"), sessT0), alice, sessT0)
	alice.mustOpen(b, bob.seal(b, "b", sessT0), bob, "b", sessT0)
	bob.mustOpen(b, alice.seal(b, "a", sessT0), alice, "a", sessT0)
	return alice, bob
}

// sessBenchGCM sets up AES-256-GCM with key, as each message, which has
// a key of its own, must.
func sessBenchGCM(key []byte) cipher.AEAD {
	block, _ := aes.NewCipher(key[:32])
	gcm, _ := cipher.NewGCM(block)
	return gcm
}

// sessBenchSigned returns a message of the size the bare signature
// covers: a header of ~150 bytes and the ciphertext of body.
func sessBenchSigned(body int) []byte {
	return make([]byte, 150+len(padSession(make([]byte, body)))+gcmTag)
}

func BenchmarkSessionRatchetStep(b *testing.B) {
	alice, _ := ecdh.X25519().GenerateKey(rand.Reader)
	bob, _ := ecdh.X25519().GenerateKey(rand.Reader)
	r := ratchet{}.withSelf(alice)
	remote := pubOf(bob)
	bobPub := bob.PublicKey()
	var sink ratchet
	env := func() {
		next, err := r.dhStep(remote)
		if err != nil {
			b.Fatal(err)
		}
		sink = next
	}
	bare := func() {
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		alice.ECDH(bobPub)
		k.ECDH(bobPub)
	}
	sessBenchInterleave(b, env, bare)
	_ = sink
}

func BenchmarkSessionSeal(b *testing.B) {
	for _, strict := range []bool{false, true} {
		for _, n := range sessBenchBodies {
			b.Run(fmt.Sprintf("strict=%v/body=%d", strict, n), func(b *testing.B) {
				alice, _ := sessBenchPair(b, 3072)
				body := benchBody(n)
				var signer Signer
				if strict {
					signer = alice.key
				}
				_, edKey, _ := ed25519.GenerateKey(nil)
				key := make([]byte, 32+NonceSize)
				pt := padSession(body)
				signed := sessBenchSigned(n)
				var sink []byte
				env := func() {
					m, err := alice.ps.Seal(KindText, body, sessT0, signer)
					if err != nil {
						b.Fatal(err)
					}
					sink = m.Marshal()
				}
				bare := func() {
					sink = sessBenchGCM(key).Seal(sink[:0], key[32:], pt, signed[:150])
					if strict {
						if _, err := alice.key.Sign(LabelSessSig, signed); err != nil {
							b.Fatal(err)
						}
					} else {
						ed25519.Sign(edKey, signed)
					}
				}
				sessBenchInterleave(b, env, bare)
			})
		}
	}
}

func BenchmarkSessionOpen(b *testing.B) {
	for _, strict := range []bool{false, true} {
		for _, n := range sessBenchBodies {
			b.Run(fmt.Sprintf("strict=%v/body=%d", strict, n), func(b *testing.B) {
				alice, bob := sessBenchPair(b, 3072)
				body := benchBody(n)
				var signer Signer
				if strict {
					signer = alice.key
				}
				raws := make([][]byte, b.N)
				for i := range raws {
					m, err := alice.ps.Seal(KindText, body, sessT0, signer)
					if err != nil {
						b.Fatal(err)
					}
					raws[i] = m.Marshal()
				}
				edPub, edKey, _ := ed25519.GenerateKey(nil)
				signed := sessBenchSigned(n)
				edSig := ed25519.Sign(edKey, signed)
				rsaSig, _ := alice.key.Sign(LabelSessSig, signed)
				key := make([]byte, 32+NonceSize)
				ct := sessBenchGCM(key).Seal(nil, key[32:], padSession(body), signed[:150])
				pub := alice.key.Public()
				i := 0
				env := func() {
					m, err := ParseSessionMessage(raws[i])
					if err != nil {
						b.Fatal(err)
					}
					if _, err := bob.ps.Open(m, pub, sessT0); err != nil {
						b.Fatal(err)
					}
					i++
				}
				bare := func() {
					if strict {
						if err := pub.Verify(LabelSessSig, signed, rsaSig); err != nil {
							b.Fatal(err)
						}
					} else if !ed25519.Verify(edPub, signed, edSig) {
						b.Fatal("verify")
					}
					if _, err := sessBenchGCM(key).Open(nil, key[32:], ct, signed[:150]); err != nil {
						b.Fatal(err)
					}
				}
				sessBenchInterleave(b, env, bare)
			})
		}
	}
}

// BenchmarkPeerSessionsStore: what storing a friend's sessions costs per
// message besides the crypto, Marshal and ParsePeerSessions of a blob in
// its steady state (no skipped keys), and its size.
func BenchmarkPeerSessionsStore(b *testing.B) {
	alice, _ := sessBenchPair(b, 3072)
	for b.Loop() {
		if _, err := ParsePeerSessions(alice.ps.Marshal(), alice.ps.me, alice.ps.peer); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(alice.ps.Marshal())), "blob-bytes")
}
