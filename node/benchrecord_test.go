package node

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parley-chat/parley/internal/benchdata"
)

// The records the benchmarks of bench_test.go leave for the benchmark
// report (make bench-report, cmd/benchreport) when PARLEY_BENCH_DIR is
// set, and the bare fdatasync BenchmarkThroughput sets its fsync bound
// by. Keep the record and figure names in step with cmd/benchreport.

// benchMode names a benchmark's mode in its records.
func benchMode(sessions bool) string {
	if sessions {
		return "sessions"
	}
	return "rsa"
}

func durationMs(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func samplesMs(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = durationMs(d)
	}
	return out
}

func writeBenchRecord(b *testing.B, r benchdata.Record) {
	b.Helper()
	if err := benchdata.Write(r); err != nil {
		b.Fatal(err)
	}
}

// rawRoundTrips measures rounds round trips of size bytes over a raw
// libp2p stream between two other hosts on loopback TCP.
func rawRoundTrips(b *testing.B, size, rounds int) []time.Duration {
	b.Helper()
	client, server := rawHosts(b)
	s, err := client.NewStream(context.Background(), server.ID(), rawEcho)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg, back := make([]byte, size), make([]byte, size)
	lat := make([]time.Duration, 0, rounds)
	for range rounds {
		start := time.Now()
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, back); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	return lat
}

// recordLatency writes node-latency-<mode>: series "ms", the latency of
// each message, and "raw-stream-ms", the round trips of size bytes over a
// raw stream benchLatency measured in the same run; and the figures
// benchLatency reports.
func recordLatency(b *testing.B, sessions bool, size int, lat, rawLat []time.Duration, crypto, pacedSync time.Duration) {
	b.Helper()
	if !benchdata.Enabled() || len(lat) == 0 {
		return
	}
	writeBenchRecord(b, benchdata.Record{
		Name: "node-latency-" + benchMode(sessions),
		Figures: map[string]float64{
			"p50-ms":             durationMs(percentile(lat, 50)),
			"p99-ms":             durationMs(percentile(lat, 99)),
			"raw-rtt-ms":         durationMs(percentile(rawLat, 50)),
			"crypto-ms":          durationMs(crypto),
			"fdatasync-paced-ms": durationMs(pacedSync),
			"messages":           float64(len(lat)),
			"size-bytes":         float64(size),
		},
		Series: map[string][]float64{"ms": samplesMs(lat), "raw-stream-ms": samplesMs(rawLat)},
	})
}

// pacedSync is a file written as the store's journal is: in place, over
// zeros written ahead, each write made durable with fdatasync.
type pacedSync struct {
	f    *os.File
	buf  []byte
	off  int64
	size int64
}

func newPacedSync(b *testing.B, record int) *pacedSync {
	b.Helper()
	const size = 4 << 20
	return &pacedSync{f: zeroedFile(b, "paced-sync", size), buf: make([]byte, record), size: size}
}

// zeroedFile is a new file of size zero bytes in a test directory,
// synced, so that writes over it and an fdatasync write data blocks only
// (as the store's journal does); it is closed at the end of the test.
func zeroedFile(tb testing.TB, name string, size int) *os.File {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(tb.TempDir(), name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	if _, err := f.Write(make([]byte, size)); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	return f
}

// sample writes one record and makes it durable, returning how long that
// took.
func (p *pacedSync) sample(b *testing.B) time.Duration {
	if p.off+int64(len(p.buf)) > p.size {
		p.off = 0
	}
	start := time.Now()
	if _, err := p.f.WriteAt(p.buf, p.off); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fdatasync(int(p.f.Fd())); err != nil {
		b.Fatal(err)
	}
	p.off += int64(len(p.buf))
	return time.Since(start)
}

// fdatasyncCost is the mean time of appending 256 bytes to a file in a
// test directory (where the nodes' stores are) and fdatasyncing it: the
// least a synced write costs on this disk, in this run.
func fdatasyncCost(b *testing.B) time.Duration {
	b.Helper()
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "fdatasync"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256)
	const rounds = 50
	var total time.Duration
	for i := range rounds + 1 {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		if i > 0 { // the first allocates the file's first block
			total += time.Since(start)
		}
	}
	return total / rounds
}

// storeCommits is how many commits n's store has made (each one sync).
func storeCommits(n *Node) int {
	u, err := n.running()
	if err != nil {
		return 0
	}
	commits, _ := u.st.CommitStats()
	return commits
}

// recordThroughput reports the bare fdatasync of this run (fdatasync-ms)
// and writes node-throughput-<mode>: the rate, the crypto bound (rsa:
// 1/open of an envelope timed alone, as benchThroughput reports it;
// sessions: 1/the receiver's mean open time during the run), the fsync
// bound with one sync a message (1/fdatasync), for rsa the CPU crypto
// bound (cpuBound, see BenchmarkThroughput), and the fsync bound times the
// messages per commit of the busier store, as the commit queues grouped
// them in this run (commits over the nodes' lives, set-up included).
func recordThroughput(b *testing.B, sessions bool, senders int, a, bn *Node, rate float64, open, inRun time.Duration, cpuBound float64) {
	b.Helper()
	fsync := fdatasyncCost(b)
	b.ReportMetric(durationMs(fsync), "fdatasync-ms")
	if !benchdata.Enabled() {
		return
	}
	fsyncBound := float64(time.Second) / float64(fsync)
	fig := map[string]float64{
		"msgs/s":             rate,
		"senders":            float64(senders),
		"messages":           float64(b.N),
		"open-envelope-ms":   durationMs(open),
		"open-in-run-ms":     durationMs(inRun),
		"fdatasync-ms":       durationMs(fsync),
		"fsync-bound-msgs/s": fsyncBound,
	}
	crypto := open
	if sessions {
		crypto = inRun
	}
	if crypto > 0 {
		fig["crypto-bound-msgs/s"] = float64(time.Second) / float64(crypto)
		fig["ratio"] = rate / fig["crypto-bound-msgs/s"]
	}
	if cpuBound > 0 {
		fig["cpu-bound-msgs/s"] = cpuBound
		fig["cpu-ratio"] = rate / cpuBound
	}
	ca, cb := storeCommits(a), storeCommits(bn)
	if ca > 0 && cb > 0 {
		fig["commits-a"], fig["commits-b"] = float64(ca), float64(cb)
		fig["msgs/commit-a"], fig["msgs/commit-b"] = float64(b.N)/float64(ca), float64(b.N)/float64(cb)
		fig["fsync-bound-grouped-msgs/s"] = fsyncBound * min(fig["msgs/commit-a"], fig["msgs/commit-b"])
	}
	writeBenchRecord(b, benchdata.Record{Name: "node-throughput-" + benchMode(sessions), Figures: fig})
}

// recordReceive writes node-receive: BenchmarkReceive's figures.
func recordReceive(b *testing.B, rate, bound, cpuBound float64) {
	b.Helper()
	if !benchdata.Enabled() {
		return
	}
	writeBenchRecord(b, benchdata.Record{Name: "node-receive", Figures: map[string]float64{
		"msgs/s": rate, "crypto-bound-msgs/s": bound, "ratio": rate / bound, "messages": float64(b.N),
		"cpu-bound-msgs/s": cpuBound, "cpu-ratio": rate / cpuBound}})
}
