package groupguard

import (
	"container/list"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// Default limits. A person types a few messages a minute and pastes a
// burst now and then; a peer forwards the traffic of every group it
// shares with this node, so its limits are far above one sender's.
const (
	// DefaultChainMsgs and DefaultChainBurstMsgs: messages per second
	// one sender chain may post, and how many at once.
	DefaultChainMsgs      = 2.0
	DefaultChainBurstMsgs = 30
	// DefaultChainBytes and DefaultChainBurstBytes: bytes per second of
	// one sender chain, and at once (six messages of the largest size).
	DefaultChainBytes      = 32 << 10
	DefaultChainBurstBytes = 256 << 10
	// DefaultPeerMsgs and DefaultPeerBurstMsgs: messages per second one
	// forwarding peer may send, and at once.
	DefaultPeerMsgs      = 50.0
	DefaultPeerBurstMsgs = 200
	// DefaultPeerBytes and DefaultPeerBurstBytes: bytes per second one
	// forwarding peer may send, and at once.
	DefaultPeerBytes      = 512 << 10
	DefaultPeerBurstBytes = 2 << 20
	// DefaultMaxPeers and DefaultMaxChains cap the peers and chains
	// tracked; past the cap the least recently seen is forgotten.
	DefaultMaxPeers  = 4096
	DefaultMaxChains = 16384
	// DefaultIdle is how long a tracked key goes unused before it is
	// forgotten: by then its buckets are full and its strikes faded, as
	// a new key's are.
	DefaultIdle = 10 * time.Minute
	// DefaultStrikeHalfLife is how fast a peer's strikes (messages it
	// sent over its rate) fade.
	DefaultStrikeHalfLife = time.Minute
	// StrikeWeight is what one strike takes off a peer's score (P5):
	// about 50 messages over the rate take it below the gossip
	// threshold, about 250 below the graylist.
	StrikeWeight = 10.0
)

// Rate is a token bucket: a sustained rate per second and a burst.
type Rate struct {
	Msgs       float64 // messages per second
	BurstMsgs  int     // messages at once
	Bytes      float64 // bytes per second
	BurstBytes int     // bytes at once
}

// Config sets a Guard's limits. Zero fields take the defaults.
type Config struct {
	// Chain limits what one sender chain (a member's sender key of an
	// epoch) may post, counted at each node over what verified.
	Chain Rate
	// Peer limits what one forwarding peer may send, counted over every
	// message of every group topic before validation.
	Peer Rate
	// MaxPeers and MaxChains cap the keys tracked (bounded memory).
	MaxPeers, MaxChains int
	// Idle is how long an unused key is kept (DefaultIdle).
	Idle time.Duration
	// StrikeHalfLife is the half-life of a peer's strikes.
	StrikeHalfLife time.Duration
	// ScoreSample is how often the router's peer scores are copied for
	// Score (10 s).
	ScoreSample time.Duration
	// Now is the clock (time.Now); tests inject one.
	Now func() time.Time
}

// DefaultConfig is Config with every default filled in.
func DefaultConfig() Config {
	c, _ := Config{}.withDefaults()
	return c
}

func (c Config) withDefaults() (Config, error) {
	fill := func(r *Rate, msgs float64, burstMsgs int, bytes float64, burstBytes int) {
		if r.Msgs <= 0 {
			r.Msgs = msgs
		}
		if r.BurstMsgs <= 0 {
			r.BurstMsgs = max(burstMsgs, int(math.Ceil(r.Msgs)))
		}
		if r.Bytes <= 0 {
			r.Bytes = bytes
		}
		if r.BurstBytes <= 0 {
			r.BurstBytes = max(burstBytes, int(math.Ceil(r.Bytes)))
		}
	}
	fill(&c.Chain, DefaultChainMsgs, DefaultChainBurstMsgs, DefaultChainBytes, DefaultChainBurstBytes)
	fill(&c.Peer, DefaultPeerMsgs, DefaultPeerBurstMsgs, DefaultPeerBytes, DefaultPeerBurstBytes)
	if c.MaxPeers <= 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.MaxChains <= 0 {
		c.MaxChains = DefaultMaxChains
	}
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.StrikeHalfLife <= 0 {
		c.StrikeHalfLife = DefaultStrikeHalfLife
	}
	if c.ScoreSample <= 0 {
		c.ScoreSample = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// A burst smaller than the largest message would refuse it forever.
	for _, r := range []Rate{c.Chain, c.Peer} {
		if r.BurstBytes < protocol.MaxGroupMessageSize {
			return c, fmt.Errorf("groupguard: a byte burst of %d is below the largest group message (%d)", r.BurstBytes, protocol.MaxGroupMessageSize)
		}
	}
	return c, nil
}

// Stats are a Guard's counters since it was made.
type Stats struct {
	PeerAdmitted, PeerDropped   uint64 // messages from forwarding peers
	ChainAdmitted, ChainDropped uint64 // verified messages by sender chain
	Evicted                     uint64 // tracked keys forgotten at the cap
	Expired                     uint64 // tracked keys forgotten when idle
	Peers, Chains               int    // keys tracked now
}

// Guard holds the rate limits of group traffic at one node (member or
// relay) and the peer scores its router reports. It is safe for
// concurrent use.
type Guard struct {
	cfg Config

	mu     sync.Mutex
	peers  *table[peer.ID]
	chains *table[protocol.ChainID]

	peerAdmitted, peerDropped   atomic.Uint64
	chainAdmitted, chainDropped atomic.Uint64
	evicted, expired            atomic.Uint64

	scoresMu sync.Mutex
	scores   map[peer.ID]float64
}

// New makes a Guard; zero fields of cfg take the defaults.
func New(cfg Config) (*Guard, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Guard{cfg: c, peers: newTable[peer.ID](c.MaxPeers, c.Idle), chains: newTable[protocol.ChainID](c.MaxChains, c.Idle)}, nil
}

// Config returns the Guard's effective configuration.
func (g *Guard) Config() Config { return g.cfg }

// AdmitPeer reports whether a message of size bytes from the forwarding
// peer from is within that peer's rate, and takes it from the peer's
// budget if so. A message over the rate is a strike against the peer.
func (g *Guard) AdmitPeer(from peer.ID, size int) bool {
	now := g.cfg.Now()
	g.mu.Lock()
	e := g.peers.get(from, now, &g.evicted, &g.expired)
	ok := e.take(now, g.cfg.Peer, size)
	if !ok {
		e.strike(now, g.cfg.StrikeHalfLife)
	}
	g.mu.Unlock()
	if ok {
		g.peerAdmitted.Add(1)
	} else {
		g.peerDropped.Add(1)
	}
	return ok
}

// AdmitChain reports whether a verified message of size bytes on chain
// is within the chain's rate, and takes it from the chain's budget if so.
// Only call it for messages whose signature verified: a forger must not
// spend an honest member's budget.
func (g *Guard) AdmitChain(chain protocol.ChainID, size int) bool {
	now := g.cfg.Now()
	g.mu.Lock()
	e := g.chains.get(chain, now, &g.evicted, &g.expired)
	ok := e.take(now, g.cfg.Chain, size)
	g.mu.Unlock()
	if ok {
		g.chainAdmitted.Add(1)
	} else {
		g.chainDropped.Add(1)
	}
	return ok
}

// Penalty is peer p's application score (P5 in gossipsub's terms): minus
// StrikeWeight per strike, fading with StrikeHalfLife; 0 for a peer
// that kept to its rate.
func (g *Guard) Penalty(p peer.ID) float64 {
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.peers.peek(p)
	if !ok {
		return 0
	}
	return -StrikeWeight * e.strikesAt(now, g.cfg.StrikeHalfLife)
}

// Stats returns the counters.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	peers, chains := g.peers.len(), g.chains.len()
	g.mu.Unlock()
	return Stats{
		PeerAdmitted: g.peerAdmitted.Load(), PeerDropped: g.peerDropped.Load(),
		ChainAdmitted: g.chainAdmitted.Load(), ChainDropped: g.chainDropped.Load(),
		Evicted: g.evicted.Load(), Expired: g.expired.Load(), Peers: peers, Chains: chains,
	}
}

// Score returns peer p's score as the router last reported it (every
// Config.ScoreSample), and whether it reported one.
func (g *Guard) Score(p peer.ID) (float64, bool) {
	g.scoresMu.Lock()
	defer g.scoresMu.Unlock()
	s, ok := g.scores[p]
	return s, ok
}

// setScores is the router's peer score inspector.
func (g *Guard) setScores(s map[peer.ID]float64) {
	g.scoresMu.Lock()
	g.scores = s
	g.scoresMu.Unlock()
}

// bucket is a token bucket of messages and bytes.
type bucket struct {
	msgs, bytes float64
	last        time.Time
}

// entry is the state of one tracked key.
type entry struct {
	b        bucket
	strikes  float64 // peers only
	struckAt time.Time
}

// take refills the bucket to now and takes one message of size bytes if
// both budgets hold it.
func (e *entry) take(now time.Time, r Rate, size int) bool {
	b := &e.b
	if b.last.IsZero() {
		b.msgs, b.bytes = float64(r.BurstMsgs), float64(r.BurstBytes)
	} else if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.msgs = min(float64(r.BurstMsgs), b.msgs+dt*r.Msgs)
		b.bytes = min(float64(r.BurstBytes), b.bytes+dt*r.Bytes)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.msgs < 1 || b.bytes < float64(size) {
		return false
	}
	b.msgs--
	b.bytes -= float64(size)
	return true
}

func (e *entry) strikesAt(now time.Time, halfLife time.Duration) float64 {
	if e.strikes == 0 {
		return 0
	}
	dt := now.Sub(e.struckAt)
	if dt <= 0 {
		return e.strikes
	}
	return e.strikes * math.Exp2(-dt.Seconds()/halfLife.Seconds())
}

func (e *entry) strike(now time.Time, halfLife time.Duration) {
	e.strikes = e.strikesAt(now, halfLife) + 1
	e.struckAt = now
}

// table is a map of entries capped at max keys, least recently used
// first out, that also forgets keys unused for idle. A forgotten key
// starts again with a full bucket and no strikes, which is what it would
// have after a long idle spell anyway.
type table[K comparable] struct {
	max   int
	idle  time.Duration
	m     map[K]*list.Element
	order *list.List // front: most recently used
}

type slot[K comparable] struct {
	key  K
	used time.Time
	e    entry
}

func newTable[K comparable](max int, idle time.Duration) *table[K] {
	return &table[K]{max: max, idle: idle, m: map[K]*list.Element{}, order: list.New()}
}

func (t *table[K]) len() int { return len(t.m) }

func (t *table[K]) peek(k K) (*entry, bool) {
	el, ok := t.m[k]
	if !ok {
		return nil, false
	}
	return &el.Value.(*slot[K]).e, true
}

// get returns k's entry, making it if needed. Each call forgets up to two
// keys unused for idle (from the least recently used end), and a new key
// at the cap forgets the least recently used one.
func (t *table[K]) get(k K, now time.Time, evicted, expired *atomic.Uint64) *entry {
	for range 2 {
		old := t.order.Back()
		if old == nil || now.Sub(old.Value.(*slot[K]).used) < t.idle || old.Value.(*slot[K]).key == k {
			break
		}
		t.remove(old)
		expired.Add(1)
	}
	if el, ok := t.m[k]; ok {
		s := el.Value.(*slot[K])
		s.used = now
		t.order.MoveToFront(el)
		return &s.e
	}
	for len(t.m) >= t.max {
		t.remove(t.order.Back())
		evicted.Add(1)
	}
	s := &slot[K]{key: k, used: now}
	t.m[k] = t.order.PushFront(s)
	return &s.e
}

func (t *table[K]) remove(el *list.Element) {
	t.order.Remove(el)
	delete(t.m, el.Value.(*slot[K]).key)
}
