package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	gomaps "maps"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/internal/benchdata"
	"github.com/parley-chat/parley/protocol"
)

// The simulated large group of issue 16. 500 members on real hosts would
// be 500 TCP listeners, about 2,000 Noise handshakes and yamux sessions
// and 500 badger stores on the machine's two cores, which measures the
// machine rather than the group; so the members' hosts are libp2p's mock
// network (mocknet: in-memory links without latency, no transport
// security or muxer), each running Parley's gossipsub router
// (newGroupPubSub) with the groups part's real topic validator
// ((*groups).validate: parse, topic, time window, Ed25519 verification
// with the sender's chain key). Nothing is opened or stored: what a
// member's store costs is measured by BenchmarkGroupFanout50.

// groupSimSenders is how many members of the simulation post, in turn.
const groupSimSenders = 20

// simTracer follows a router's mesh and counts the bytes of the RPCs it
// sends.
type simTracer struct {
	*meshTracer
	sent atomic.Int64
}

func (t *simTracer) SendRPC(rpc *pubsub.RPC, _ peer.ID) { t.sent.Add(int64(proto.Size(&rpc.RPC))) }

// simSender is a posting member: its host and its own sender chain.
type simSender struct {
	host  int
	chain *protocol.SenderChain
}

// groupSim is a simulated group: n members and a relay on a mock network.
type groupSim struct {
	tb      testing.TB
	ctx     context.Context
	topics  []*pubsub.Topic // the members'
	relay   *pubsub.Topic   // the relay's
	tracers []*simTracer    // the members', then the relay's
	senders []simSender
	body    []byte
	// got gets a message's pubsub ID each time a member has it.
	got  arrivals
	wire int
}

// newGroupSim starts n members and a relay with the fan-out benchmark's
// topology (each member dials the relay and 3 others, fixed seed) on a
// mock network, waits until the mesh has formed and sends a few messages
// unmeasured.
func newGroupSim(tb testing.TB, n, senders int) *groupSim {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	mn := mocknet.New()
	tb.Cleanup(func() { mn.Close() })
	s := &groupSim{tb: tb, ctx: ctx, body: []byte(strings.Repeat("x", groupFanoutSize)), got: make(arrivals, 8192)}

	// The group: a state listing n members (one fixture identity signs;
	// the others are IDs only), and the posting members' chains.
	admin := fixtureKey(tb, "alice-2048")
	users := []protocol.ID{admin.ID()}
	var list []protocol.GroupMember
	for range n - 1 {
		var id protocol.ID
		if _, err := rand.Read(id[:]); err != nil {
			tb.Fatal(err)
		}
		users = append(users, id)
		list = append(list, protocol.GroupMember{User: id, Role: protocol.RoleMember})
	}
	st, err := protocol.NewGroupState(admin, admin.ID(), "simulated", list, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	known := map[protocol.ChainID]protocol.ChainPublic{}
	for j := range min(senders, n) {
		i := j * n / min(senders, n)
		c, err := protocol.NewSenderChain(st, users[i])
		if err != nil {
			tb.Fatal(err)
		}
		s.senders = append(s.senders, simSender{host: i, chain: c})
		known[c.ID()] = c.Public()
	}
	name := protocol.Topic(st)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// n members and the relay (the last): each its own router and its
	// own validator holding the posting members' chains.
	routers := make([]*pubsub.Topic, n+1)
	peers := make([]peer.ID, n+1)
	for i := range n + 1 {
		h, err := simPeer(mn, i)
		if err != nil {
			tb.Fatal(err)
		}
		peers[i] = h.ID()
		tr := &simTracer{meshTracer: &meshTracer{mesh: map[string]map[peer.ID]bool{}}}
		s.tracers = append(s.tracers, tr)
		ps, err := newGroupPubSub(ctx, h, false, nil, pubsub.WithRawTracer(tr))
		if err != nil {
			tb.Fatal(err)
		}
		v := newGroups()
		v.log, v.now = log, time.Now
		gomaps.Copy(v.known, known)
		validate := func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
			return v.validate(ctx, st.Group, st.Epoch, from, msg)
		}
		if err := ps.RegisterTopicValidator(name, validate); err != nil {
			tb.Fatal(err)
		}
		var got func(*pubsub.Message)
		if i < n {
			got = func(msg *pubsub.Message) { s.got.put(msg.ID) }
		}
		routers[i] = drainTopic(ctx, tb, ps, h.ID(), name, got)
	}
	s.topics = routers[:n]
	s.relay = routers[n]
	edges, degree := groupFanoutGraph(n)
	for i := range n {
		edges = append(edges, [2]int{i, n})
	}
	for _, e := range edges {
		if _, err := mn.LinkPeers(peers[e[0]], peers[e[1]]); err != nil {
			tb.Fatal(err)
		}
		if _, err := mn.ConnectPeers(peers[e[0]], peers[e[1]]); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n {
		waitFor(tb, 60*time.Second, fmt.Sprintf("simulated member %d's mesh", i), func() bool {
			return meshReady(s.tracers[i].meshTracer, s.topics[i], name, degree[i])
		})
	}
	for i := range 3 {
		if _, got := s.one(i); got < n-1 {
			tb.Fatalf("warm-up message %d reached %d of %d members", i, got, n-1)
		}
	}
	return s
}

// simPeer adds peer i to mn on an address of its own /64 network
// (2001:db8::/32, for documentation: mocknet carries nothing off this
// process). mocknet's own addresses (GenPeer) all lie in 100::/64, and
// gossipsub's IP colocation counts an IPv6 /64 as one address: the relay
// would see 500 peers on one network, score them far below the graylist
// threshold and carry nothing. Members of a real group reach a relay from
// networks of their own.
func simPeer(mn mocknet.Mocknet, i int) (host.Host, error) {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	a, err := ma.NewMultiaddr(fmt.Sprintf("/ip6/2001:db8:%x:%x::1/tcp/4242", i>>16, i&0xffff))
	if err != nil {
		return nil, err
	}
	return mn.AddPeer(k, a)
}

// simTimeout bounds the wait for one message of the simulation.
const simTimeout = 10 * time.Second

// one publishes the next message of sender i mod senders and returns the
// time until every other member had it (0 if some never did, within
// simTimeout) and how many had it.
func (s *groupSim) one(i int) (time.Duration, int) {
	snd := &s.senders[i%len(s.senders)]
	m, next, err := snd.chain.Seal(protocol.KindText, s.body, time.Now())
	if err != nil {
		s.tb.Fatal(err)
	}
	snd.chain = next
	raw := m.Marshal()
	s.wire = len(raw)
	id := sha256.Sum256(raw)
	need := len(s.topics) - 1
	start := time.Now()
	if err := s.topics[snd.host].Publish(s.ctx, raw); err != nil {
		s.tb.Fatal(err)
	}
	got, at := s.got.wait(string(id[:]), need, simTimeout)
	if got < need {
		return 0, got
	}
	return at.Sub(start), got
}

// sentBytes are the bytes the members' routers and the relay's have
// sent so far.
func (s *groupSim) sentBytes() (members, relay int64) {
	for _, t := range s.tracers[:len(s.topics)] {
		members += t.sent.Load()
	}
	return members, s.tracers[len(s.topics)].sent.Load()
}

// BenchmarkGroupSim500: a group of 500 members and one relay on libp2p's
// mock network (see above for why not real hosts), with the fan-out
// benchmark's topology; 20 members post 256-byte texts in turn, one
// message at a time. It reports the delivery ratio (members that had each
// message within 10 s, of all; target 100%), the time from Publish until
// the last member had it (p50, p99 over messages that reached all), and
// the bytes each member's router sent per message (pubsub RPC sizes:
// messages, IHAVE/IWANT gossip, grafts and prunes; the relay's apart).
//
//	go test -tags noassets ./node/ -run '^$' -bench GroupSim500 -benchtime 200x
func BenchmarkGroupSim500(b *testing.B) {
	benchGroupSim(b, 500)
}

func benchGroupSim(b *testing.B, n int) {
	s := newGroupSim(b, n, groupSimSenders)
	var lat []time.Duration
	delivered, messages := 0, 0
	m0, r0 := s.sentBytes()
	start, cpu := time.Now(), processCPU(b)
	for i := 0; b.Loop(); i++ {
		d, got := s.one(i)
		if d > 0 {
			lat = append(lat, d)
		}
		delivered += got
		messages++
	}
	elapsed, cpu := time.Since(start), processCPU(b)-cpu
	b.StopTimer()
	m1, r1 := s.sentBytes()
	fig := map[string]float64{
		"delivery-%":    100 * float64(delivered) / float64(messages*(n-1)),
		"B/member/msg":  float64(m1-m0) / float64(n) / float64(messages),
		"relay-B/msg":   float64(r1-r0) / float64(messages),
		"wire-B/msg":    float64(s.wire),
		"members":       float64(n),
		"messages":      float64(messages),
		"senders":       float64(len(s.senders)),
		"run-s":         elapsed.Seconds(),
		"complete-msgs": float64(len(lat)),
		// The CPU time of the whole simulation per message, and that over
		// the processors: the least a message takes to reach everyone
		// when all members share them.
		"cpu-ms/msg": durationMs(cpu) / float64(messages),
		"floor-ms":   durationMs(cpu) / float64(messages) / float64(runtime.GOMAXPROCS(0)),
	}
	if len(lat) > 0 {
		fig["p50-ms"] = durationMs(percentile(lat, 50))
		fig["p99-ms"] = durationMs(percentile(lat, 99))
	}
	for _, k := range []string{"delivery-%", "p50-ms", "p99-ms", "floor-ms", "B/member/msg", "relay-B/msg", "wire-B/msg"} {
		if v, ok := fig[k]; ok {
			b.ReportMetric(v, k)
		}
	}
	if delivered < messages*(n-1) {
		b.Logf("delivery %.3f%%: %d of %d messages reached every member", fig["delivery-%"], len(lat), messages)
	}
	if benchdata.Enabled() {
		writeBenchRecord(b, benchdata.Record{
			Name: fmt.Sprintf("group-sim-%d", n), Figures: fig,
			Series: map[string][]float64{"ms": samplesMs(lat)},
		})
	}
}
