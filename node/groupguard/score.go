package groupguard

import (
	"net"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Score thresholds (PeerScoreThresholds). A peer below GossipThreshold
// gets no gossip and its IHAVE/IWANT are ignored; below
// PublishThreshold it is not flood-published to; below GraylistThreshold
// every RPC it sends is dropped unread.
const (
	GossipThreshold   = -500.0
	PublishThreshold  = -1000.0
	GraylistThreshold = -2500.0
	// AcceptPXThreshold is above what any peer can score (TopicScoreCap
	// and no application bonus): peer exchange from strangers is never
	// followed (and the router does not ask for it).
	AcceptPXThreshold = 100.0
	// OpportunisticGraftThreshold: when the median mesh peer scores
	// below it, better peers are grafted.
	OpportunisticGraftThreshold = 1.0
)

// Topic score parameters of a group topic (TopicScoreParams).
const (
	// InvalidMessageWeight is P4's weight: n invalid messages in a
	// topic cost 100·n², so 3 take a peer below the gossip threshold and
	// 6 below the graylist. The count fades to 1% in an hour.
	InvalidMessageWeight = -100.0
	// TimeInMesh (P1): 0.1 per 10 s in the mesh, up to 10.
	TimeInMeshWeight  = 0.1
	TimeInMeshQuantum = 10 * time.Second
	TimeInMeshCap     = 100.0
	// FirstDeliveries (P2): 1 per message first delivered, up to 20,
	// fading to 1% in an hour.
	FirstDeliveriesWeight = 1.0
	FirstDeliveriesCap    = 20.0
	// TopicScoreCap caps what topics add to a score.
	TopicScoreCap = 50.0
)

// IP colocation (P6) and behaviour (P7) parameters.
const (
	// IPColocationThreshold is how many peers may share one public
	// address before P6 counts; each one past it costs
	// (n-threshold)²·|IPColocationWeight|: it takes 55 peers on one address
	// to fall below the gossip threshold, 83 below the graylist.
	IPColocationThreshold = 32
	IPColocationWeight    = -1.0
	// BehaviourPenalty (P7) counts broken IWANT promises (an IHAVE for
	// a message the peer then does not send) and GRAFTs during backoff:
	// past 2 of them, each costs 20·(n-2)², so a peer that advertises
	// bogus message IDs falls below the gossip threshold after 8
	// and is no longer listened to. It fades to 1% in 10 minutes.
	BehaviourPenaltyThreshold = 2.0
	BehaviourPenaltyWeight    = -20.0
)

// Router bounds.
const (
	// DefaultValidateQueue is the validation queue's length (messages
	// waiting for a validator); beyond it, messages are dropped.
	DefaultValidateQueue = 256
	// DefaultValidateThrottle is how many validations run at once; past
	// it, messages are dropped. Both are above DefaultPeerBurstMsgs, so
	// that one peer's burst cannot crowd out another's messages.
	DefaultValidateThrottle = 256
	// MaxIHaveLength is the most message IDs taken from one peer's IHAVEs
	// per heartbeat (and asked for with IWANT), and put in one IHAVE.
	MaxIHaveLength = 1000
	// MaxIHaveMessages is the most IHAVE messages taken from one peer
	// per heartbeat.
	MaxIHaveMessages = 10
)

// privateNets are the address ranges P6 does not count: loopback, RFC
// 1918, shared address space (RFC 6598, carrier-grade NAT inside),
// link-local and IPv6 unique local. A peer seen on one of them is on
// this node's own network.
var privateNets = []string{
	"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
	"::1/128", "fc00::/7", "fe80::/10",
}

// Thresholds are the peer score thresholds of a chat network.
func Thresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold: GossipThreshold, PublishThreshold: PublishThreshold, GraylistThreshold: GraylistThreshold,
		AcceptPXThreshold: AcceptPXThreshold, OpportunisticGraftThreshold: OpportunisticGraftThreshold,
	}
}

// PeerScoreParams are the peer score parameters of a chat network: P5
// from g's strikes (nil: none), P6 and P7 as above. Topics start empty;
// each group topic gets TopicScoreParams when joined.
func PeerScoreParams(g *Guard) *pubsub.PeerScoreParams {
	app := func(peer.ID) float64 { return 0 }
	if g != nil {
		app = g.Penalty
	}
	var white []*net.IPNet
	for _, s := range privateNets {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			panic(err) // a constant above
		}
		white = append(white, n)
	}
	return &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap:               TopicScoreCap,
		AppSpecificScore:            app,
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    IPColocationWeight,
		IPColocationFactorThreshold: IPColocationThreshold,
		IPColocationFactorWhitelist: white,
		BehaviourPenaltyWeight:      BehaviourPenaltyWeight,
		BehaviourPenaltyThreshold:   BehaviourPenaltyThreshold,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               pubsub.DefaultDecayInterval,
		DecayToZero:                 pubsub.DefaultDecayToZero,
		// A graylisted peer that reconnects with the same ID keeps its
		// score this long.
		RetainScore: time.Hour,
	}
}

// TopicScoreParams are the score parameters of one group topic, for
// members and relays alike (pubsub.Topic.SetScoreParams): P1 and P2
// reward time in the mesh and first deliveries a little; P3 (mesh
// delivery rate) is off, since a quiet group delivers nothing for hours
// and its peers must not be punished for it; P4 punishes invalid
// messages hard.
func TopicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                    1,
		TimeInMeshWeight:               TimeInMeshWeight,
		TimeInMeshQuantum:              TimeInMeshQuantum,
		TimeInMeshCap:                  TimeInMeshCap,
		FirstMessageDeliveriesWeight:   FirstDeliveriesWeight,
		FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(time.Hour),
		FirstMessageDeliveriesCap:      FirstDeliveriesCap,
		InvalidMessageDeliveriesWeight: InvalidMessageWeight,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
}

// GossipSubParams are gossipsub's defaults with IHAVE bounded for chat
// traffic.
func GossipSubParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.MaxIHaveLength = MaxIHaveLength
	p.MaxIHaveMessages = MaxIHaveMessages
	return p
}

// PubSubOptions are the gossipsub options of a node carrying group
// topics: peer scoring with the parameters above, the router's
// parameters, a bounded validation queue and, with g, the per-peer rate
// applied to every message before it is queued for validation (messages
// over the rate are dropped there and strike the peer) and the scores
// copied for g.Score. g nil leaves rates out (benchmarks of the router
// alone). Callers add their own options (signing policy, message IDs,
// size) beside these.
func PubSubOptions(g *Guard) []pubsub.Option {
	opts := []pubsub.Option{
		pubsub.WithGossipSubParams(GossipSubParams()),
		pubsub.WithPeerScore(PeerScoreParams(g), Thresholds()),
		pubsub.WithValidateQueueSize(DefaultValidateQueue),
		pubsub.WithValidateThrottle(DefaultValidateThrottle),
	}
	if g != nil {
		opts = append(opts,
			pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(g.setScores), g.cfg.ScoreSample),
			pubsub.WithAppSpecificRpcInspector(g.inspectRPC),
		)
	}
	return opts
}

// inspectRPC runs on every RPC a peer sends, before the router looks at
// it: it keeps the messages within the peer's rate and drops the rest
// (each a strike), so that one peer cannot fill the validation queue.
// Control messages pass.
func (g *Guard) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	msgs := rpc.GetPublish()
	if len(msgs) == 0 {
		return nil
	}
	kept := msgs[:0]
	for _, m := range msgs {
		if g.AdmitPeer(from, len(m.GetData())) {
			kept = append(kept, m)
		}
	}
	clear(msgs[len(kept):])
	rpc.Publish = kept
	return nil
}
