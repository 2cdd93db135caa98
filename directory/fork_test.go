package directory

import (
	"testing"

	"github.com/parley-chat/parley/protocol"
)

func TestRecordConflicts(t *testing.T) {
	k := key(t, "alice-2048")
	in := input(t, k, 7)
	a, err := NewRecord(k, in, t0)
	if err != nil {
		t.Fatal(err)
	}
	// The same statement signed again: new signature bytes (RSA-PSS is
	// randomised), same history.
	again, err := NewRecord(k, in, t0)
	if err != nil {
		t.Fatal(err)
	}
	other := in
	other.Devices = other.Devices[:1]
	b, err := NewRecord(k, other, t0)
	if err != nil {
		t.Fatal(err)
	}
	next := in
	next.Seq = 8
	c, err := NewRecord(k, next, t0)
	if err != nil {
		t.Fatal(err)
	}
	bob := key(t, "bob-2048")
	d, err := NewRecord(bob, input(t, bob, 7), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		x, y *Record
		want bool
	}{
		{"same record", a, a, false},
		{"signed twice", a, again, false},
		{"two statements at one seq", a, b, true},
		{"other seq", a, c, false},
		{"other user", a, d, false},
	} {
		if got := tc.x.Conflicts(tc.y); got != tc.want {
			t.Errorf("%s: Conflicts = %v, want %v", tc.name, got, tc.want)
		}
		if got := tc.y.Conflicts(tc.x); got != tc.want {
			t.Errorf("%s (reversed): Conflicts = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestChainFork(t *testing.T) {
	g, k2, k3, k4 := key(t, "alice-2048"), key(t, "alice-3072"), key(t, "carol-2048"), key(t, "bob-2048")
	rot := func(old, next *protocol.PrivateKey, seq uint64) *protocol.Rotation {
		r, err := protocol.NewRotation(g.ID(), old, next, seq, t0)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	honest := []*protocol.Rotation{rot(g, k2, 1)}
	resigned := []*protocol.Rotation{rot(g, k2, 1), rot(k2, k4, 2)}
	forked := []*protocol.Rotation{rot(g, k3, 1)}
	lateFork := []*protocol.Rotation{rot(g, k2, 1), rot(k2, k3, 2)}
	if _, ok := ChainFork(honest, resigned); ok {
		t.Error("a chain and its continuation (re-signed) fork")
	}
	if _, ok := ChainFork(nil, forked); ok {
		t.Error("an empty chain forks")
	}
	f, ok := ChainFork(honest, forked)
	if !ok || f.A.Seq != 1 || !f.A.NewKey.Equal(k2.Public()) || !f.B.NewKey.Equal(k3.Public()) {
		t.Fatalf("ChainFork(honest, forked) = %+v, %v", f, ok)
	}
	f, ok = ChainFork(resigned, lateFork)
	if !ok || f.A.Seq != 2 || !f.A.NewKey.Equal(k4.Public()) || !f.B.NewKey.Equal(k3.Public()) {
		t.Fatalf("ChainFork(resigned, lateFork) = %+v, %v", f, ok)
	}
}
