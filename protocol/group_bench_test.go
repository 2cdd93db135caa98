package protocol

import (
	"fmt"
	"testing"
)

// Group message benchmarks: sealing (derive, AES-GCM, Ed25519 sign),
// verifying (what a topic validator does: parse and Ed25519 verify) and
// opening (parse, verify, derive, decrypt), for a short and a long body.
//
//	go test ./protocol/ -run '^$' -bench 'Group' -benchmem

var groupBenchSizes = []int{256, 4 << 10}

func BenchmarkGroupSeal(b *testing.B) {
	f := newGroupFixture(b)
	own, err := NewSenderChain(f.state, f.alice.ID())
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range groupBenchSizes {
		body := make([]byte, n)
		b.Run(fmt.Sprintf("body=%d", n), func(b *testing.B) {
			c := own
			b.SetBytes(int64(n))
			for b.Loop() {
				m, next, err := c.Seal(KindText, body, goldenNow)
				if err != nil {
					b.Fatal(err)
				}
				_ = m.Marshal()
				c = next
			}
		})
	}
}

// groupBenchMessages seals count messages of size n on a's chain and
// returns them encoded with bob's receiving chain before them.
func groupBenchMessages(b *testing.B, f *groupFixture, n, count int) ([][]byte, *SenderChain) {
	b.Helper()
	chains := groupMembersChains(b, f)
	own := chains[f.alice.ID()][f.alice.ID()]
	raws := make([][]byte, count)
	for i := range raws {
		m, next, err := own.Seal(KindText, make([]byte, n), goldenNow)
		if err != nil {
			b.Fatal(err)
		}
		raws[i], own = m.Marshal(), next
	}
	return raws, chains[f.alice.ID()][f.bob.ID()]
}

func BenchmarkGroupVerify(b *testing.B) {
	f := newGroupFixture(b)
	for _, n := range groupBenchSizes {
		raws, chain := groupBenchMessages(b, f, n, 1)
		b.Run(fmt.Sprintf("body=%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				m, err := ParseGroupMessage(raws[0])
				if err != nil {
					b.Fatal(err)
				}
				if err := chain.Verify(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGroupOpen(b *testing.B) {
	f := newGroupFixture(b)
	for _, n := range groupBenchSizes {
		const batch = 1024
		raws, start := groupBenchMessages(b, f, n, batch)
		b.Run(fmt.Sprintf("body=%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			c, i := start, 0
			for b.Loop() {
				if i == batch {
					c, i = start, 0
				}
				m, err := ParseGroupMessage(raws[i])
				if err != nil {
					b.Fatal(err)
				}
				_, next, err := c.Open(m)
				if err != nil {
					b.Fatal(err)
				}
				c, i = next, i+1
			}
		})
	}
}
