package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestGroupBenchSmoke runs the group benchmarks' networks small, so that
// make test keeps them working (the benchmarks themselves run in make
// bench): a fan-out of 6 members with a relay, Parley's path and raw
// gossipsub, the fan-out's floor network, and a simulated group of 40;
// every message reaches every member, and the floor network refuses a
// forgery (so that its figures include the verification).
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
	t.Run("floor", func(t *testing.T) {
		const n = 6
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		edges, degree := groupFanoutGraph(n)
		fl := newFloorNet(ctx, t, edges, degree, true)
		wire := groupWireSize(t)
		for i := range n {
			if _, err := fl.one(ctx, i, wire); err != nil {
				t.Fatal(err)
			}
		}
		// An attacker linked to member 0 publishes a payload under a
		// signature of other bytes: member 0 rejects it, and nobody
		// stores it.
		ah, aps := newBenchPubSubHost(ctx, t, false, nil)
		at := drainTopic(ctx, t, aps, ah.ID(), floorTopic, nil)
		h0 := fl.hosts[0]
		if err := ah.Connect(ctx, peer.AddrInfo{ID: h0.ID(), Addrs: h0.Addrs()}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the attacker sees member 0 on the topic", func() bool { return len(at.ListPeers()) > 0 })
		bad := make([]byte, wire)
		if _, err := rand.Read(bad[floorHead:]); err != nil {
			t.Fatal(err)
		}
		copy(bad[1:floorHead], ed25519.Sign(fl.keys[1], []byte("other bytes")))
		bad[0] = 1
		if err := at.Publish(ctx, bad); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "member 0 rejects the forgery", func() bool { return fl.meshes[0].rejects() > 0 })
		for i, l := range fl.logs {
			if got := l.off.Load(); got != n {
				t.Errorf("member %d stored %d messages, want %d", i, got, n)
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
		// The relay carries the topic: it has a mesh (its members' scores
		// are not below the graylist, see simPeer).
		if got := s.tracers[n].meshSize(s.relay.String()); got == 0 {
			t.Fatalf("the relay's mesh is empty (of %d peers on the topic)", len(s.relay.ListPeers()))
		}
	})
}
