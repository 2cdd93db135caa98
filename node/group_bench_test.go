package node

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol"
)

// BenchmarkGroupFanout measures what pubsub's own signatures cost a group
// message: five hosts on a line (so a message crosses four hops, each
// validating it), each with the group validator's work (parse, Ed25519
// verification with the sender's chain key), one 256-byte message at a
// time from one end; an op is the time until the other four have it.
// "nosign" is what the groups part runs (StrictNoSign, content-hash IDs),
// "sign" the pubsub default (StrictSign: the host key signs, every hop
// verifies). It also reports the message's size on the wire.
//
//	go test -tags noassets ./node/ -run '^$' -bench GroupFanout -benchtime 2000x
func BenchmarkGroupFanout(b *testing.B) {
	for _, mode := range []struct {
		name string
		sign bool
	}{{"nosign", false}, {"sign", true}} {
		b.Run(mode.name, func(b *testing.B) { benchFanout(b, 5, mode.sign) })
	}
}

func benchFanout(b *testing.B, n int, sign bool) {
	key := fixtureKey(b, "alice-2048")
	st, err := protocol.NewGroupState(key, key.ID(), "bench", nil, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	own, err := protocol.NewSenderChain(st, key.ID())
	if err != nil {
		b.Fatal(err)
	}
	d, err := own.Distribution(st)
	if err != nil {
		b.Fatal(err)
	}
	recv, err := protocol.AcceptSenderKey(st, d, key.ID())
	if err != nil {
		b.Fatal(err)
	}
	name := protocol.Topic(st)
	validate := func(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		m, err := protocol.ParseGroupMessage(msg.GetData())
		if err != nil || recv.Verify(m) != nil {
			return pubsub.ValidationReject
		}
		return pubsub.ValidationAccept
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type benchHost struct {
		topic *pubsub.Topic
		sub   *pubsub.Subscription
		mesh  *meshTracer
		h     host.Host
	}
	hosts := make([]*benchHost, n)
	for i := range hosts {
		hk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			b.Fatal(err)
		}
		h, err := newHost(hostSpec{key: hk, listen: []string{"/ip4/127.0.0.1/tcp/0"}, low: 50, high: 100})
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		mt := &meshTracer{mesh: map[string]map[peer.ID]bool{}}
		ps, err := newGroupPubSub(ctx, h, sign, nil, pubsub.WithRawTracer(mt))
		if err != nil {
			b.Fatal(err)
		}
		if err := ps.RegisterTopicValidator(name, validate); err != nil {
			b.Fatal(err)
		}
		t, err := ps.Join(name)
		if err != nil {
			b.Fatal(err)
		}
		sub, err := t.Subscribe(pubsub.WithBufferSize(1024))
		if err != nil {
			b.Fatal(err)
		}
		hosts[i] = &benchHost{topic: t, sub: sub, mesh: mt, h: h}
		if i > 0 {
			prev := hosts[i-1].h
			if err := h.Connect(ctx, peer.AddrInfo{ID: prev.ID(), Addrs: prev.Addrs()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i, h := range hosts {
		var want []peer.ID
		for _, j := range []int{i - 1, i + 1} {
			if j >= 0 && j < n {
				want = append(want, hosts[j].h.ID())
			}
		}
		waitFor(b, 20*time.Second, "the mesh", func() bool { return h.mesh.has(name, want) })
	}
	got := make(chan int, 1024)
	var wire atomic.Int64
	for _, h := range hosts[1:] {
		go func() {
			for {
				msg, err := h.sub.Next(ctx)
				if err != nil {
					return
				}
				wire.Store(int64(proto.Size(msg.Message)))
				got <- 1
			}
		}()
	}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		m, next, err := own.Seal(protocol.KindText, make([]byte, 256), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		own = next
		start := time.Now()
		if err := hosts[0].topic.Publish(ctx, m.Marshal()); err != nil {
			b.Fatal(err)
		}
		for range n - 1 {
			<-got
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(wire.Load()), "wire-B/msg")
}
