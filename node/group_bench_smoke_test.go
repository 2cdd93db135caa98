package node

import "testing"

// TestGroupBenchSmoke runs the group benchmarks' networks small, so that
// make test keeps them working (the benchmarks themselves run in make
// bench): a fan-out of 6 members with a relay, Parley's path and raw
// gossipsub, and a simulated group of 40; every message reaches every
// member.
func TestGroupBenchSmoke(t *testing.T) {
	t.Run("fanout", func(t *testing.T) {
		f := newGroupFanout(t, 6)
		for i := range 6 {
			if _, err := f.parley(i); err != nil {
				t.Fatal(err)
			}
			if _, err := f.rawOne(i); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("sim", func(t *testing.T) {
		const n = 40
		s := newGroupSim(t, n, 4)
		for i := range 8 {
			if d, got := s.one(i); d == 0 || got != n-1 {
				t.Fatalf("message %d reached %d of %d members", i, got, n-1)
			}
		}
		if m, r := s.sentBytes(); m == 0 || r == 0 {
			t.Fatalf("no bytes counted: members %d, relay %d", m, r)
		}
	})
}
