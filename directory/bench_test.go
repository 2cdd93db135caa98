package directory

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parley-chat/parley/protocol"
)

// BenchmarkValidate measures the validator on a record at the default key
// size (RSA-3072) with one rotation link, two devices, two relays and a
// prekey, next to the bare signature checks it has to make: four RSA-PSS
// verifications (record, both signatures of the link, prekey) and two
// Ed25519 verifications (devices). The validate-vs-bare sub-benchmark
// alternates the two and reports Validate's cost as a multiple of the bare
// checks (x-bare):
//
//	go test -run '^$' -bench 'Validate' -benchtime 2s ./directory/
func BenchmarkValidate(b *testing.B) {
	genesis, cur := key(b, "alice-3072"), key(b, "bob-3072")
	r, chain := rotated(b, genesis, 1, cur)
	raw, k := r.Marshal(), Key(genesis.ID())
	v := Validator{Now: func() time.Time { return t0 }}
	if err := v.Validate(k, raw); err != nil {
		b.Fatal(err)
	}

	// The same number of signatures, by the same keys, over messages of the
	// same sizes, checked through the same primitives.
	type rsaCheck struct {
		key      *protocol.PublicKey
		label    string
		msg, sig []byte
	}
	sign := func(s protocol.Signer, label string, msg []byte) rsaCheck {
		sig, err := s.Sign(label, msg)
		if err != nil {
			b.Fatal(err)
		}
		return rsaCheck{s.Public(), label, msg, sig}
	}
	link := chain[0].Marshal()
	rsaChecks := []rsaCheck{
		sign(cur, LabelRecord, r.canonical()),
		sign(genesis, protocol.LabelRotateOld, link[:len(link)-2*384]),
		sign(cur, protocol.LabelRotateNew, link[:len(link)-2*384]),
		sign(cur, protocol.LabelPrekey, make([]byte, 120)),
	}
	type edCheck struct {
		key      crypto.PubKey
		msg, sig []byte
	}
	var edChecks []edCheck
	for _, d := range r.Devices() {
		pub, err := d.Peer.ExtractPublicKey()
		if err != nil {
			b.Fatal(err)
		}
		edChecks = append(edChecks, edCheck{pub, deviceMessage(r.UserID()), d.Sig})
	}

	bareChecks := func(b *testing.B) {
		for _, c := range rsaChecks {
			if err := c.key.Verify(c.label, c.msg, c.sig); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range edChecks {
			if ok, err := c.key.Verify(c.msg, c.sig); !ok || err != nil {
				b.Fatal("ed25519", err)
			}
		}
	}
	b.Run("bare-verifications", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bareChecks(b)
		}
	})
	// Validate and the bare checks alternate, one of each per iteration,
	// so that a busy machine slows both alike and the ratio holds.
	b.Run("validate-vs-bare", func(b *testing.B) {
		var tv, tb time.Duration
		for b.Loop() {
			start := time.Now()
			if err := v.Validate(k, raw); err != nil {
				b.Fatal(err)
			}
			mid := time.Now()
			bareChecks(b)
			tv, tb = tv+mid.Sub(start), tb+time.Since(mid)
		}
		b.ReportMetric(float64(tv.Nanoseconds())/float64(b.N), "validate-ns/op")
		b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), "bare-ns/op")
		b.ReportMetric(float64(tv)/float64(tb), "x-bare")
	})
	b.Run("rsa-pss-verify", func(b *testing.B) {
		c := rsaChecks[0]
		for b.Loop() {
			if err := c.key.Verify(c.label, c.msg, c.sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ed25519-verify", func(b *testing.B) {
		c := edChecks[0]
		for b.Loop() {
			if ok, _ := c.key.Verify(c.msg, c.sig); !ok {
				b.Fatal("ed25519")
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseRecord(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("validate", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if err := v.Validate(k, raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSelect measures Select over two valid records of the same user
// (what a storing peer does on every put of an existing key): only the
// better one is verified.
func BenchmarkSelect(b *testing.B) {
	alice := key(b, "alice-3072")
	v := Validator{Now: func() time.Time { return t0 }}
	values := [][]byte{
		mustRecord(b, alice, input(b, alice, 1), t0).Marshal(),
		mustRecord(b, alice, input(b, alice, 2), t0).Marshal(),
	}
	k := Key(alice.ID())
	b.ReportAllocs()
	for b.Loop() {
		if i, err := v.Select(k, values); i != 1 || err != nil {
			b.Fatal(i, err)
		}
	}
}
