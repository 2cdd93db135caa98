package groupguard

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/parley-chat/parley/protocol"
)

// clock is a hand-moved clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newGuard(t *testing.T, cfg Config) (*Guard, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = c.now
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

func chainID(b byte) protocol.ChainID { return protocol.ChainID{b} }

// admitted counts how many of n messages of size bytes pass f.
func admitted(n int, f func() bool) int {
	ok := 0
	for range n {
		if f() {
			ok++
		}
	}
	return ok
}

func TestChainRatePerKey(t *testing.T) {
	g, c := newGuard(t, Config{Chain: Rate{Msgs: 2, BurstMsgs: 5}})
	a, b := chainID(1), chainID(2)
	if n := admitted(10, func() bool { return g.AdmitChain(a, 100) }); n != 5 {
		t.Fatalf("a burst of 10 on one chain: %d admitted, want the burst of 5", n)
	}
	// Another chain has its own bucket.
	if n := admitted(10, func() bool { return g.AdmitChain(b, 100) }); n != 5 {
		t.Fatalf("another chain: %d admitted, want 5", n)
	}
	// Two messages a second come back.
	c.advance(time.Second)
	if n := admitted(10, func() bool { return g.AdmitChain(a, 100) }); n != 2 {
		t.Fatalf("after a second: %d admitted, want 2", n)
	}
	c.advance(time.Hour) // refills to the burst, no more
	if n := admitted(10, func() bool { return g.AdmitChain(a, 100) }); n != 5 {
		t.Fatalf("after an hour: %d admitted, want the burst of 5", n)
	}
	s := g.Stats()
	// b, unused for an hour, was forgotten on the way.
	if s.ChainAdmitted != 17 || s.ChainDropped != 23 || s.Chains != 1 || s.Expired != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestChainBytes(t *testing.T) {
	g, c := newGuard(t, Config{Chain: Rate{Msgs: 100, BurstMsgs: 100, Bytes: 10_000, BurstBytes: protocol.MaxGroupMessageSize}})
	a := chainID(1)
	big := protocol.MaxGroupMessageSize / 2
	if !g.AdmitChain(a, big) || !g.AdmitChain(a, big) {
		t.Fatal("two halves of the byte burst refused")
	}
	if g.AdmitChain(a, 1000) {
		t.Fatal("a message past the byte burst admitted")
	}
	c.advance(100 * time.Millisecond) // 1,000 bytes back
	if !g.AdmitChain(a, 1000) {
		t.Fatal("a message within the refilled bytes refused")
	}
	if g.AdmitChain(a, 10) {
		t.Fatal("a message past the refilled bytes admitted")
	}
	// A refused message spends nothing.
	c.advance(time.Second)
	if !g.AdmitChain(a, 10_000) {
		t.Fatal("a second's bytes refused after a refusal")
	}
}

func TestPeerRateAndStrikes(t *testing.T) {
	cfg := Config{Peer: Rate{Msgs: 10, BurstMsgs: 20}, StrikeHalfLife: time.Minute}
	g, c := newGuard(t, cfg)
	honest, flooder := peer.ID("honest"), peer.ID("flooder")
	if n := admitted(20, func() bool { return g.AdmitPeer(honest, 100) }); n != 20 {
		t.Fatalf("honest peer within its burst: %d of 20", n)
	}
	if n := admitted(1000, func() bool { return g.AdmitPeer(flooder, 100) }); n != 20 {
		t.Fatalf("flooder: %d admitted, want 20", n)
	}
	if p := g.Penalty(honest); p != 0 {
		t.Fatalf("honest peer's penalty = %v, want 0", p)
	}
	p := g.Penalty(flooder)
	if want := -StrikeWeight * 980; p != want {
		t.Fatalf("flooder's penalty = %v, want %v", p, want)
	}
	if p >= GraylistThreshold {
		t.Fatalf("980 strikes (%v) do not graylist", p)
	}
	// Strikes fade: a minute halves them.
	c.advance(time.Minute)
	if got := g.Penalty(flooder); got < p/2-1e-6 || got > p/2+1e-6 {
		t.Fatalf("after a half-life: %v, want %v", got, p/2)
	}
	if g.Penalty("stranger") != 0 {
		t.Fatal("an unknown peer has a penalty")
	}
	// The peer's and the chain's budgets are apart: a chain's runs out
	// while its peer's lasts, and the peer's runs out for every chain.
	g2, _ := newGuard(t, Config{Peer: Rate{Msgs: 1, BurstMsgs: 3}, Chain: Rate{Msgs: 1, BurstMsgs: 1}})
	both := func(c protocol.ChainID) bool { return g2.AdmitPeer(honest, 10) && g2.AdmitChain(c, 10) }
	if !both(chainID(1)) || both(chainID(1)) || !both(chainID(2)) || both(chainID(3)) {
		t.Fatal("the peer's and the chain's rates are not both applied")
	}
}

func TestEviction(t *testing.T) {
	g, c := newGuard(t, Config{MaxPeers: 3, MaxChains: 2, Idle: time.Minute, Peer: Rate{Msgs: 1, BurstMsgs: 1}})
	for _, p := range []peer.ID{"a", "b", "c"} {
		g.AdmitPeer(p, 1)
		c.advance(time.Second)
	}
	g.AdmitPeer("a", 1) // a is now the most recently used; b the least
	c.advance(time.Second)
	g.AdmitPeer("d", 1) // at the cap: b goes
	if s := g.Stats(); s.Peers != 3 || s.Evicted != 1 {
		t.Fatalf("after a fourth peer: %+v", s)
	}
	// b was forgotten: it comes back with a full bucket.
	if !g.AdmitPeer("b", 1) {
		t.Fatal("a forgotten peer does not start with a full bucket")
	}
	// Chains are capped on their own.
	for i := range 5 {
		g.AdmitChain(chainID(byte(i)), 1)
	}
	if s := g.Stats(); s.Chains != 2 {
		t.Fatalf("chains tracked = %d, want the cap of 2", s.Chains)
	}
	// Keys unused for Idle are forgotten as others come and go.
	c.advance(2 * time.Minute)
	for range 3 {
		g.AdmitPeer("e", 1)
		g.AdmitChain(chainID(9), 1)
	}
	if s := g.Stats(); s.Peers != 1 || s.Chains != 1 || s.Expired == 0 {
		t.Fatalf("after idling: %+v, want only the keys in use", s)
	}
}

func TestConfigDefaultsAndBounds(t *testing.T) {
	c := DefaultConfig()
	if c.Chain.Msgs != DefaultChainMsgs || c.Peer.BurstBytes != DefaultPeerBurstBytes || c.MaxPeers != DefaultMaxPeers || c.Now == nil {
		t.Fatalf("defaults = %+v", c)
	}
	// A burst follows a rate set above it.
	g, _ := newGuard(t, Config{Chain: Rate{Msgs: 100}})
	if b := g.Config().Chain.BurstMsgs; b != 100 {
		t.Fatalf("burst for 100 msg/s = %d, want 100", b)
	}
	if _, err := New(Config{Chain: Rate{BurstBytes: 1000}}); err == nil {
		t.Fatal("a byte burst below the largest message accepted")
	}
}

// TestScoreClaims holds the documented figures to the parameters.
func TestScoreClaims(t *testing.T) {
	p4 := func(n float64) float64 { return InvalidMessageWeight * n * n }
	if !(p4(2) > GossipThreshold && p4(3) < GossipThreshold && p4(5) >= GraylistThreshold && p4(6) < GraylistThreshold) {
		t.Fatal("P4: 3 invalid messages should cross the gossip threshold and 6 the graylist")
	}
	// One invalid message is outweighed by what an honest mesh peer earns.
	if p4(1)+TopicScoreCap < GossipThreshold {
		t.Fatal("one invalid message cuts off an honest peer")
	}
	p6 := func(n float64) float64 {
		if n <= IPColocationThreshold {
			return 0
		}
		d := n - IPColocationThreshold
		return IPColocationWeight * d * d
	}
	if !(p6(54) >= GossipThreshold && p6(55) < GossipThreshold && p6(82) >= GraylistThreshold && p6(83) < GraylistThreshold) {
		t.Fatal("P6: 55 peers on one address should cross the gossip threshold and 83 the graylist")
	}
	p7 := func(n float64) float64 {
		d := max(0, n-BehaviourPenaltyThreshold)
		return BehaviourPenaltyWeight * d * d
	}
	if !(p7(7) >= GossipThreshold && p7(8) < GossipThreshold) {
		t.Fatal("P7: 8 broken promises should cross the gossip threshold")
	}
	if DefaultPeerBurstMsgs >= DefaultValidateQueue || DefaultPeerBurstMsgs >= DefaultValidateThrottle {
		t.Fatal("one peer's burst can fill the validation queue")
	}
	if err := routerAcceptsParams(); err != nil {
		t.Fatal(err)
	}
}

// routerAcceptsParams builds a router with PubSubOptions on a mock host
// and joins a topic with TopicScoreParams, which validates them all.
func routerAcceptsParams() error {
	mn := mocknet.New()
	defer mn.Close()
	h, err := mn.GenPeer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := New(Config{})
	if err != nil {
		return err
	}
	ps, err := pubsub.NewGossipSub(ctx, h, PubSubOptions(g)...)
	if err != nil {
		return err
	}
	top, err := ps.Join("t")
	if err != nil {
		return err
	}
	return top.SetScoreParams(TopicScoreParams())
}

func TestInspectorKeepsMessagesWithinRate(t *testing.T) {
	g, _ := newGuard(t, Config{Peer: Rate{Msgs: 1, BurstMsgs: 3}})
	rpc := &pubsub.RPC{}
	for range 5 {
		rpc.Publish = append(rpc.Publish, &pb.Message{Data: []byte("x")})
	}
	rpc.Control = &pb.ControlMessage{Ihave: []*pb.ControlIHave{{MessageIDs: []string{"id"}}}}
	if err := g.inspectRPC("p", rpc); err != nil {
		t.Fatal(err)
	}
	if len(rpc.Publish) != 3 || rpc.Control == nil {
		t.Fatalf("after inspection: %d messages (want 3), control %v", len(rpc.Publish), rpc.Control)
	}
	if p := g.Penalty("p"); p != -2*StrikeWeight {
		t.Fatalf("penalty = %v, want two strikes", p)
	}
}
