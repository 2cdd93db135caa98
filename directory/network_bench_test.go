package directory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// Size of the benchmark network: benchNodes DHT servers, each the device of
// one user, joining through the first benchSeeds.
const (
	benchNodes = 100
	benchSeeds = 3
	// benchMinPeers is the routing-table size every node must reach
	// before anything is measured. In a network of 100 servers with
	// buckets of 20, a full table holds about 60.
	benchMinPeers = 40
)

// benchKeys caches the users' RSA keys for the whole test binary: making a
// hundred RSA-2048 keys takes seconds even in parallel, and both network
// benchmarks (each once per -count) use them.
var benchKeys struct {
	sync.Mutex
	keys []*protocol.PrivateKey
}

// userKeys returns n distinct RSA-2048 keys, made in parallel (one worker
// per CPU) the first time they are asked for.
func userKeys(tb testing.TB, n int) []*protocol.PrivateKey {
	tb.Helper()
	benchKeys.Lock()
	defer benchKeys.Unlock()
	if missing := n - len(benchKeys.keys); missing > 0 {
		fresh := make([]*protocol.PrivateKey, missing)
		errs := make([]error, missing)
		next := make(chan int, missing)
		for i := range missing {
			next <- i
		}
		close(next)
		var wg sync.WaitGroup
		for range runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				for i := range next {
					fresh[i], errs[i] = protocol.GenerateKey(2048)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				tb.Fatal(err)
			}
		}
		benchKeys.keys = append(benchKeys.keys, fresh...)
	}
	return benchKeys.keys[:n]
}

// benchNet is a network of DHT servers on loopback in which node i is the
// one device of user i and has published user i's record.
type benchNet struct {
	nodes   []*netNode
	records []*Record // records[i] is user i's, published by nodes[i]
	publish []time.Duration
}

// startBenchNet starts n servers, the first seeds of them joining through
// the ones before and the rest through all seeds; refreshes until every
// routing table holds minPeers; then has each node publish its user's
// record, one at a time, timing each publication.
func startBenchNet(b *testing.B, n, seeds, minPeers int) *benchNet {
	b.Helper()
	start := time.Now()
	keys := userKeys(b, n)
	keysDone := time.Now()

	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	nw := &benchNet{}
	var boot []peer.AddrInfo
	for i := range n {
		nd := startNetNode(b, ctx, boot...)
		nw.nodes = append(nw.nodes, nd)
		if i < seeds {
			boot = append(boot, nd.info())
		}
	}
	kads := make([]*dht.IpfsDHT, n)
	for i, nd := range nw.nodes {
		kads[i] = nd.dht.Kad()
	}
	rounds := converge(b, ctx, kads, minPeers)
	sizes := make([]int, n)
	for i, k := range kads {
		sizes[i] = k.RoutingTable().Size()
	}
	slices.Sort(sizes)
	joined := time.Now()

	now := time.Now()
	for i, nd := range nw.nodes {
		nw.records = append(nw.records, benchRecord(b, nd, keys[i], i, 1, now))
	}
	for i, nd := range nw.nodes {
		t := time.Now()
		if err := nd.dht.Publish(ctx, nw.records[i]); err != nil {
			b.Fatalf("node %d publishes: %v", i, err)
		}
		nw.publish = append(nw.publish, time.Since(t))
	}
	b.Logf("%d nodes: keys %v, hosts and %d refresh rounds %v (routing tables: min %d, median %d, max %d peers), %d publications %v",
		n, keysDone.Sub(start).Round(time.Millisecond), rounds, joined.Sub(keysDone).Round(time.Millisecond),
		sizes[0], sizes[n/2], sizes[n-1], n, time.Since(joined).Round(time.Millisecond))
	return nw
}

// benchRecord makes user i's record: node nd is its one device.
func benchRecord(b *testing.B, nd *netNode, k *protocol.PrivateKey, i int, seq uint64, now time.Time) *Record {
	b.Helper()
	dev, err := SignDevice(nd.priv, k.ID())
	if err != nil {
		b.Fatal(err)
	}
	pk, err := protocol.GeneratePrekey(k, now.Add(-time.Minute), 7*24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	rec, err := NewRecord(k, RecordInput{
		Name:     fmt.Sprintf("user %03d", i),
		Devices:  []Device{dev},
		Prekey:   &pk.Signed,
		Seq:      seq,
		Lifetime: 24 * time.Hour,
	}, now)
	if err != nil {
		b.Fatal(err)
	}
	return rec
}

// percentile returns the p-th percentile (0 < p ≤ 1, nearest rank) of ds
// in milliseconds; it sorts ds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.5) - 1
	i = max(0, min(i, len(ds)-1))
	return float64(ds[i]) / float64(time.Millisecond)
}

// BenchmarkDirectoryLookup100 measures user lookups in a network of 100
// DHT servers on loopback (real hosts: TCP, Noise or TLS, yamux), each of
// which has published one user's record: each iteration is a Lookup of a
// random user from a random other node, the full kad-dht query with every
// value verified. It reports the latency's p50 and p99 and the share of
// lookups that returned the user's record, and the p50 and p99 of the
// hundred publications made during setup (PutValue to the 20 closest
// servers, each of which validates the record). Setup makes 100 RSA keys
// (once per process) and takes about a minute on two cores; run it with a
// fixed count:
//
//	go test -run '^$' -bench DirectoryLookup100 -benchtime 200x ./directory/
func BenchmarkDirectoryLookup100(b *testing.B) {
	nw := startBenchNet(b, benchNodes, benchSeeds, benchMinPeers)
	rng := rand.New(rand.NewPCG(1, 2))
	var lat []time.Duration
	found := 0
	for b.Loop() {
		from, user := rng.IntN(benchNodes), rng.IntN(benchNodes-1)
		if user >= from {
			user++
		}
		want := nw.records[user]
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		t := time.Now()
		rec, err := nw.nodes[from].dht.Lookup(ctx, want.UserID())
		lat = append(lat, time.Since(t))
		cancel()
		if err == nil && rec.Seq() == want.Seq() && rec.Key().Equal(want.Key()) {
			found++
		}
	}
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(100*float64(found)/float64(len(lat)), "found-%")
	b.ReportMetric(percentile(nw.publish, 0.50), "publish-p50-ms")
	b.ReportMetric(percentile(nw.publish, 0.99), "publish-p99-ms")
}

// BenchmarkDirectoryPublish measures publication in the same network as
// BenchmarkDirectoryLookup100 (built anew, with the same setup cost): each
// iteration, a random node republishes its user's record with the next
// sequence number (signed outside the timer), which every one of the 20
// closest servers validates and, by Select, prefers to the one it holds.
// It reports the p50 and p99 of Publish, the share of calls that returned
// no error (kad-dht's PutValue returns nil even when no peer took the
// record), and, checked after the timed loop, the share of republished
// users whose newest record a lookup from another node returns.
//
//	go test -run '^$' -bench DirectoryPublish -benchtime 200x ./directory/
func BenchmarkDirectoryPublish(b *testing.B) {
	nw := startBenchNet(b, benchNodes, benchSeeds, benchMinPeers)
	keys := userKeys(b, benchNodes)
	rng := rand.New(rand.NewPCG(3, 4))
	var lat []time.Duration
	ok := 0
	for b.Loop() {
		b.StopTimer()
		i := rng.IntN(benchNodes)
		rec := benchRecord(b, nw.nodes[i], keys[i], i, nw.records[i].Seq()+1, time.Now())
		nw.records[i] = rec
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		b.StartTimer()
		t := time.Now()
		err := nw.nodes[i].dht.Publish(ctx, rec)
		lat = append(lat, time.Since(t))
		cancel()
		if err == nil {
			ok++
		}
	}
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(100*float64(ok)/float64(len(lat)), "published-%")

	visible, republished := 0, 0
	for i, rec := range nw.records {
		if rec.Seq() == 1 {
			continue
		}
		republished++
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		got, err := nw.nodes[(i+1)%benchNodes].dht.Lookup(ctx, rec.UserID())
		cancel()
		if err == nil && got.Seq() == rec.Seq() {
			visible++
		}
	}
	if republished > 0 {
		b.ReportMetric(100*float64(visible)/float64(republished), "visible-%")
	}
}
