package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/internal/benchdata"
	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/protocol"
)

// The fan-out benchmark's floor (BenchmarkGroupFanout50Floor): raw
// gossipsub on the fan-out topology, doing only the work that no
// implementation of issues 15 and 16 can skip, against raw gossipsub that
// does nothing, in the same run. Its topic validator verifies each message's Ed25519
// signature before the message is forwarded (a member must, so that a
// forgery is rejected at the first honest hop), and each member
// durably stores what it accepts: a write(2) into a file made of zeros
// beforehand and an fdatasync, the least a durable store does (the
// store's journal writes the same way). The sender durably stores its
// message before it publishes, as Parley's sender must. There is no
// decryption (AES-GCM of 256 bytes costs about a microsecond), no
// database and no chain state: whatever Parley spends beyond this
// network is its code's; what this network spends beyond raw gossipsub
// is the machine's price for verifying and storing.

const (
	// floorFile is the size of a floor member's store file, zeroed and
	// synced before use; writes wrap around within it.
	floorFile = 4 << 20
	// floorHead is a floor payload's header: the sender's index and
	// its Ed25519 signature of the rest.
	floorHead = 1 + ed25519.SignatureSize
)

// durableLog is a floor member's store: a zeroed, synced file written
// in place (pwrite) and, when sync is set, fdatasynced per message.
type durableLog struct {
	f    *os.File
	sync bool
	off  atomic.Int64 // writes so far
}

func newDurableLog(tb testing.TB, sync bool) *durableLog {
	tb.Helper()
	return &durableLog{f: zeroedFile(tb, "floor", floorFile), sync: sync}
}

// floorSlot is where a floor member's writes start: each in a page of
// its own, so that no write waits for the writeback of the one before.
const floorSlot = 4 << 10

// put writes p (at most floorSlot bytes) and, when l syncs, waits until
// it is durable.
func (l *durableLog) put(p []byte) error {
	off := (l.off.Add(1) - 1) * floorSlot % floorFile
	if _, err := l.f.WriteAt(p, off); err != nil || !l.sync {
		return err
	}
	return unix.Fdatasync(int(l.f.Fd()))
}

// floorTopic is the floor network's topic.
const floorTopic = "parley-bench-floor"

// floorNet is the floor network of a fan-out run.
type floorNet struct {
	*plainNet
	keys []ed25519.PrivateKey
	logs []*durableLog
	// got gets a payload's first 16 bytes after the header each time a
	// member has stored it.
	got arrivals
}

// newFloorNet starts the floor network on the links of edges (degree:
// each member's number of links). Without synced, the members' writes
// are not synced: not a floor of a durable store, the price of the
// writes and verifications alone.
func newFloorNet(ctx context.Context, tb testing.TB, edges [][2]int, degree []int, synced bool) *floorNet {
	tb.Helper()
	n := len(degree)
	f := &floorNet{keys: make([]ed25519.PrivateKey, n), logs: make([]*durableLog, n), got: make(arrivals, 4096)}
	pubs := make([]ed25519.PublicKey, n)
	for i := range n {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			tb.Fatal(err)
		}
		pubs[i], f.keys[i] = pub, priv
		f.logs[i] = newDurableLog(tb, synced)
	}
	verify := func(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		d := msg.GetData()
		if len(d) < floorHead+16 || int(d[0]) >= n || !ed25519.Verify(pubs[d[0]], d[floorHead:], d[1:floorHead]) {
			return pubsub.ValidationReject
		}
		return pubsub.ValidationAccept
	}
	f.plainNet = newPlainNet(ctx, tb, floorTopic, edges, degree, func(i int, h host.Host, ps *pubsub.PubSub) *pubsub.Topic {
		if err := ps.RegisterTopicValidator(floorTopic, verify, pubsub.WithValidatorTimeout(groupValidateTimeout)); err != nil {
			tb.Fatal(err)
		}
		var got func(*pubsub.Message)
		if i >= 0 {
			got = func(msg *pubsub.Message) {
				if err := f.logs[i].put(msg.Data); err != nil {
					tb.Error(err)
					return
				}
				f.got.put(string(msg.Data[floorHead : floorHead+16]))
			}
		}
		t := drainTopic(ctx, tb, ps, h.ID(), floorTopic, got)
		if err := t.SetScoreParams(groupguard.TopicScoreParams()); err != nil {
			tb.Fatal(err)
		}
		return t
	})
	return f
}

// newRawNet starts raw gossipsub on the links of edges: no validator and
// no store; each member's subscription puts the first 16 bytes of what
// others publish to got. It returns the members' topics.
func newRawNet(ctx context.Context, tb testing.TB, edges [][2]int, degree []int, got arrivals) []*pubsub.Topic {
	tb.Helper()
	const name = "parley-bench-raw"
	return newPlainNet(ctx, tb, name, edges, degree, func(i int, h host.Host, ps *pubsub.PubSub) *pubsub.Topic {
		if i < 0 {
			return drainTopic(ctx, tb, ps, h.ID(), name, nil)
		}
		return drainTopic(ctx, tb, ps, h.ID(), name, func(msg *pubsub.Message) { got.put(string(msg.Data[:16])) })
	}).topics
}

// plainNet is gossipsub without Parley's groups part on the benchmarks'
// topology: a host for each member and a relay, on 127.0.0.1, with
// Parley's router options.
type plainNet struct {
	hosts  []host.Host
	meshes []*meshTracer   // each member's router's tracer
	topics []*pubsub.Topic // the members'
}

// newPlainNet starts the hosts, has join put each on topic name (i: the
// member's index, -1 for the relay), dials the links of edges and every
// member to the relay, and waits for the mesh (degree: each member's
// number of links).
func newPlainNet(ctx context.Context, tb testing.TB, name string, edges [][2]int, degree []int,
	join func(i int, h host.Host, ps *pubsub.PubSub) *pubsub.Topic) *plainNet {
	tb.Helper()
	n := len(degree)
	p := &plainNet{hosts: make([]host.Host, n), meshes: make([]*meshTracer, n), topics: make([]*pubsub.Topic, n)}
	for i := range n {
		p.meshes[i] = &meshTracer{mesh: map[string]map[peer.ID]bool{}}
		var ps *pubsub.PubSub
		p.hosts[i], ps = newBenchPubSubHost(ctx, tb, false, p.meshes[i])
		p.topics[i] = join(i, p.hosts[i], ps)
	}
	relay, relayPS := newBenchPubSubHost(ctx, tb, true, nil)
	join(-1, relay, relayPS)
	for _, e := range edges {
		a, b := p.hosts[e[0]], p.hosts[e[1]]
		if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
			tb.Fatal(err)
		}
	}
	for _, h := range p.hosts {
		if err := h.Connect(ctx, peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n {
		waitFor(tb, 30*time.Second, fmt.Sprintf("%s: host %d's mesh", name, i), func() bool {
			return meshReady(p.meshes[i], p.topics[i], name, degree[i])
		})
	}
	return p
}

// one sends a signed payload of wire bytes from member i mod n (durable
// store, then publish) and returns the time until every other member
// has verified and durably stored it.
func (f *floorNet) one(ctx context.Context, i, wire int) (time.Duration, error) {
	n := len(f.topics)
	s := i % n
	data := make([]byte, max(wire, floorHead+16))
	data[0] = byte(s)
	if _, err := rand.Read(data[floorHead:]); err != nil {
		return 0, err
	}
	start := time.Now()
	copy(data[1:floorHead], ed25519.Sign(f.keys[s], data[floorHead:]))
	if err := f.logs[s].put(data); err != nil {
		return 0, err
	}
	if err := f.topics[s].Publish(ctx, data); err != nil {
		return 0, err
	}
	key := string(data[floorHead : floorHead+16])
	got, at := f.got.wait(key, n-1, fanoutTimeout)
	if got < n-1 {
		return 0, fmt.Errorf("floor message %d stored by %d of %d hosts in %v", i, got, n-1, fanoutTimeout)
	}
	return at.Sub(start), nil
}

// groupWireSize is the size on the wire of a group message with the
// fan-out benchmarks' text, sealed on a chain of its own.
func groupWireSize(tb testing.TB) int {
	tb.Helper()
	k := groupNetKey(tb, 0)
	st, err := protocol.NewGroupState(k, k.ID(), "fan-out", []protocol.GroupMember{{User: k.ID(), Role: protocol.RoleAdmin}}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	c, err := protocol.NewSenderChain(st, k.ID())
	if err != nil {
		tb.Fatal(err)
	}
	m, _, err := c.Seal(protocol.KindText, []byte(strings.Repeat("x", groupFanoutSize)), time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return len(m.Marshal())
}

// BenchmarkGroupFanout50Floor is BenchmarkGroupFanout50's floor: on its
// topology (50 hosts and a relay, 127.0.0.1, TCP), the floor network
// (newFloorNet: each member verifies a message's Ed25519 signature before
// forwarding it and durably stores it, the sender durably stores it
// before publishing) against raw gossipsub, messages of a group
// message's size interleaved one by one. "synced" is the floor:
// floor-ratio-p99 is what the least work a group member must do costs
// over raw gossipsub here, and a limit on BenchmarkGroupFanout50's
// ratio-p99 below it asks for a machine on which the 50 members do not
// share two processors and one disk. "unsynced" leaves out the members'
// fdatasyncs, to show what they cost.
//
//	go test -tags noassets ./node/ -run '^$' -bench GroupFanout50Floor -benchtime 200x
func BenchmarkGroupFanout50Floor(b *testing.B) {
	b.Run("synced", func(b *testing.B) { benchFanoutFloor(b, 50, true) })
	b.Run("unsynced", func(b *testing.B) { benchFanoutFloor(b, 50, false) })
}

func benchFanoutFloor(b *testing.B, n int, synced bool) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	edges, degree := groupFanoutGraph(n)
	f := &groupFanout{tb: b, ctx: ctx, rawGot: make(arrivals, 4096), wire: groupWireSize(b)}
	f.raw = newRawNet(ctx, b, edges, degree, f.rawGot)
	fl := newFloorNet(ctx, b, edges, degree, synced)
	for i := range 5 {
		if _, err := fl.one(ctx, i, f.wire); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
		if _, err := f.rawOne(i); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	run := interleave(b, func(i int) (time.Duration, error) { return fl.one(ctx, i, f.wire) }, f.rawOne)
	floor, raw := run.first, run.second
	floorCPU, rawCPU := run.firstCPUSum(), run.secondCPU
	if len(floor) == 0 {
		return
	}
	k := float64(len(floor))
	fig := map[string]float64{
		"floor-p50-ms":     durationMs(percentile(floor, 50)),
		"floor-p99-ms":     durationMs(percentile(floor, 99)),
		"raw-p50-ms":       durationMs(percentile(raw, 50)),
		"raw-p99-ms":       durationMs(percentile(raw, 99)),
		"floor-cpu-ms/msg": durationMs(floorCPU) / k,
		"raw-cpu-ms/msg":   durationMs(rawCPU) / k,
	}
	fig["floor-ratio-p50"] = fig["floor-p50-ms"] / fig["raw-p50-ms"]
	fig["floor-ratio-p99"] = fig["floor-p99-ms"] / fig["raw-p99-ms"]
	for _, name := range sortedFigures(fig) {
		b.ReportMetric(fig[name], name)
	}
	if !benchdata.Enabled() {
		return
	}
	fig["members"], fig["messages"], fig["wire-bytes"] = float64(n), k, float64(f.wire)
	name := fmt.Sprintf("group-fanout-%d-floor", n)
	if !synced {
		name += "-unsynced"
	}
	writeBenchRecord(b, benchdata.Record{
		Name:    name,
		Figures: fig,
		Series:  map[string][]float64{"floor-ms": samplesMs(floor), "raw-ms": samplesMs(raw)},
	})
}
