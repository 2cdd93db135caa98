package main

import (
	"encoding/json"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/benchdata"
)

func putRecords(t *testing.T, dir string, records ...benchdata.Record) {
	t.Helper()
	for _, r := range records {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, r.Name+".json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func samples(n int, base, step float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = base + step*float64((i*37)%n)
	}
	return s
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestReport runs the whole report on a few synthetic records and the
// go test output of parse_test.go.
func TestReport(t *testing.T) {
	recs, out := t.TempDir(), t.TempDir()
	putRecords(t, recs,
		benchdata.Record{Name: "node-latency-sessions",
			Figures: map[string]float64{"p50-ms": 0.42, "p99-ms": 2.5, "fdatasync-paced-ms": 0.1, "crypto-ms": 0.05},
			Series:  map[string][]float64{"ms": samples(200, 0.3, 0.01), "raw-stream-ms": samples(200, 0.05, 0.001)}},
		benchdata.Record{Name: "node-latency-rsa", Series: map[string][]float64{"ms": samples(100, 3, 0.05)}},
		benchdata.Record{Name: "node-throughput-sessions", Figures: map[string]float64{
			"msgs/s": 1878, "crypto-bound-msgs/s": 12000, "fsync-bound-msgs/s": 740, "fsync-bound-grouped-msgs/s": 2900, "senders": 4}},
		benchdata.Record{Name: "node-throughput-rsa", Figures: map[string]float64{
			"msgs/s": 331, "crypto-bound-msgs/s": 566, "fsync-bound-msgs/s": 740, "ratio": 0.58, "cpu-ratio": 0.58}},
		benchdata.Record{Name: "api-latency", Figures: map[string]float64{"p50-ms": 2.9, "fsync-p50-ms": 0.6, "http-rtt-p50-ms": 0.5, "ws-ping-p50-ms": 0.3}},
		benchdata.Record{Name: "api-burst", Figures: map[string]float64{"msgs/s": 3100, "peak-rss-a-mib": 61, "peak-rss-mib-b": 58},
			Points: map[string][][2]float64{"rss-mib-a": {{0, 30}, {0.5, 45}, {1, 61}}, "rss-mib-b": {{0, 28}, {0.5, 50}, {1, 58}}}},
		benchdata.Record{Name: "group-fanout-50",
			Figures: map[string]float64{"members": 50, "messages": 200, "parley-p50-ms": 21.5, "parley-p99-ms": 60, "raw-p50-ms": 8,
				"raw-p99-ms": 30, "ratio-p50": 2.6875, "ratio-p99": 2, "parley-cpu-ms/msg": 70, "raw-cpu-ms/msg": 20,
				"wire-bytes": 732, "sync-all-ms": 6.4,
				"parley-floor-ms": 35, "raw-floor-ms": 10, "procs": 2, "parley-floor-p99-ms": 48},
			Series: map[string][]float64{"parley-ms": samples(200, 15, 0.2), "raw-ms": samples(200, 5, 0.1)}},
		benchdata.Record{Name: "group-fanout-50-floor",
			Figures: map[string]float64{"messages": 200, "floor-p50-ms": 18, "floor-p99-ms": 60, "raw-p50-ms": 6, "raw-p99-ms": 25,
				"floor-ratio-p50": 3, "floor-ratio-p99": 2.4, "floor-cpu-ms/msg": 31, "raw-cpu-ms/msg": 13},
			Series: map[string][]float64{"floor-ms": samples(200, 14, 0.2), "raw-ms": samples(200, 5, 0.1)}},
		benchdata.Record{Name: "group-fanout-50-floor-unsynced",
			Figures: map[string]float64{"messages": 200, "floor-p50-ms": 9, "floor-p99-ms": 30, "raw-p50-ms": 5.5, "raw-p99-ms": 20,
				"floor-ratio-p50": 1.64, "floor-ratio-p99": 1.5, "floor-cpu-ms/msg": 19, "raw-cpu-ms/msg": 12}},
		benchdata.Record{Name: "group-sim-500", Figures: map[string]float64{"members": 500, "messages": 200, "senders": 20,
			"delivery-%": 100, "p50-ms": 247.5, "p99-ms": 1079, "floor-ms": 80, "B/member/msg": 4251, "relay-B/msg": 25512, "wire-B/msg": 732}},
	)
	bench := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(bench, []byte(benchText), 0o644); err != nil {
		t.Fatal(err)
	}
	text := runReport(t, out, "-records", recs, "-bench-output", bench, "-nproc", "2",
		"-load-start", "0.10 0.20 0.30", "-load-end", "1.50 0.90 0.40", "-rev", "abc1234", "-date", "2026-01-02T03:04:05Z",
		"-cpuinfo", filepath.Join(t.TempDir(), "none"), "-dpi", "48")
	for _, want := range []string{
		"| Git revision | `abc1234` |", "| nproc | 2 |", "| CPU | AMD EPYC 7B13 |", "2026-01-02 03:04 UTC",
		"| Load average (1, 5, 15 min) at the start | 0.10 0.20 0.30 |", "at the end | 1.50 0.90 0.40 |",
		"| Sessions latency p50 | ≤ 0.5 ms | 0.42 ms | 0.25 ms | met |",
		"floor: two synced writes in sequence, the sender's before the message leaves and the receiver's before its event, 2 × 0.1 ms (fdatasync-paced-ms), and the seal and open, 0.05 ms (crypto-ms).",
		"| Sessions latency p99 | ≤ 2 ms | 2.50 ms |  | not met |",
		"| Sessions throughput | ≥ 5,000 msgs/s | 1,878 msgs/s |  | not met |",
		"| RSA envelopes, ratio to the parallel crypto bound | ≥ 0.9 | throughput: 0.601, receive: 1.01, strict: not measured |  | not met |",
		"| API latency p50 | ≤ 1 ms | 2.90 ms | 1.60 ms | not met: the limit is below this run's floor |",
		"floor: two synced writes in sequence, A's before the message leaves and B's before its event, 2 × 0.6 ms (fsync-p50-ms), " +
			"and the request's way in and the event's way out, half an HTTP round trip, 0.5 ms (http-rtt-p50-ms), " +
			"and half a WebSocket ping, 0.3 ms (ws-ping-p50-ms).",
		"against the best of five short rounds of the same work (par-best-ratio), the ratios are throughput 0.70;",
		"against P/(the CPU time of that work), which assumes the processors add up (cpu-ratio), they are throughput 0.58, receive 0.94",
		"| Burst peak RSS | ≤ 80 MiB | node A: 61 MiB, node B: 58 MiB |  | met |",
		"| Idle RSS | ≤ 40 MiB | not measured |  | not measured |",
		"| History page (50 of 100,000) | ≤ 2 ms | newest: 0.41 ms, middle: 0.475 ms |  | met |",
		"| Start to ready | < 1,000 ms | not measured |  | not measured |",
		"| Group fan-out, 50 members: p99 over raw gossipsub's | ≤ 1.50 | 2 | 2.40 | not met: the limit is below this run's floor |",
		"the p99 of the floor network, 60 ms (BenchmarkGroupFanout50Floor/synced", "over raw gossipsub's p99 in the same benchmark, 25 ms.",
		"| synced (the floor) | 18 ms | 60 ms | 31 ms | 6 ms | 25 ms | 13 ms | 3 | 2.40 |",
		"| unsynced (no fdatasync: not durable) | 9 ms | 30 ms | 19 ms | 5.50 ms | 20 ms | 12 ms | 1.64 | 1.50 |",
		"Parley over the floor (synced): p50 1.19, p99 1.",
		"| Group of 500 (simulated): delivery | ≥ 100 % | 100 % |  | met |",
		"![Group fan-out: Parley vs raw gossipsub](group-fanout-cdf.png)",
		"## Groups",
		"| Parley: sendGroup → stored by every member | 21.50 ms | 60 ms | 70 ms | 35 ms |",
		"| raw gossipsub, same topology → every subscription | 8 ms | 30 ms | 20 ms | 10 ms |",
		"| ratio Parley / raw (target p99 ≤ 1.50) | 2.69 | 2 | | |",
		"(2 processors for the benchmark)",
		"where 49 concurrent synced 256-byte appends",
		"| 100 % | 248 ms | 1,079 ms | 80 ms | 4,251 bytes | 25,512 bytes | 732 bytes |",
		"![Latency: sessions vs a raw stream](latency-cdf.png)",
		"![Throughput vs the crypto and fsync bounds](throughput.png)",
		"![RSS over a burst](rss-burst.png)",
		"### github.com/parley-chat/parley/store", "### github.com/parley-chat/parley/node",
		"| BenchmarkMessagesPage/middle | 2517 | 475,521 | 0.475 | 201,999 | 2,350 |",
		"**Warning: the run reported failures**",
		"| node-throughput-rsa | cpu-ratio = 0.58, crypto-bound-msgs/s = 566, fsync-bound-msgs/s = 740, msgs/s = 331, ratio = 0.58 |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("README lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
	for _, name := range []string{figLatency, figThroughput, figRSS, figGroupFanout} {
		checkPNG(t, filepath.Join(out, name))
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// 18 cm at 48 dpi is 340 pixels.
	if b := img.Bounds(); b.Dx() < 330 || b.Dx() > 350 || b.Dy() < 200 {
		t.Errorf("%s is %v", path, b)
	}
}

// TestReportNothingMeasured: without records the targets are "not
// measured", the figures are left out, and an old run's figures go.
func TestReportNothingMeasured(t *testing.T) {
	out := t.TempDir()
	figures := []string{figLatency, figThroughput, figRSS, figGroupFanout}
	for _, name := range figures {
		if err := os.WriteFile(filepath.Join(out, name), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := runReport(t, out, "-records", filepath.Join(t.TempDir(), "missing"))
	if strings.Contains(text, "| met |") || strings.Contains(text, "| not met |") || strings.Contains(text, ".png)") {
		t.Errorf("README claims results:\n%s", text)
	}
	if n := strings.Count(text, "| not measured |\n"); n != len(targets()) {
		t.Errorf("%d targets not measured, want %d:\n%s", n, len(targets()), text)
	}
	if !strings.Contains(text, "## Groups\n\nNot measured: no record group-fanout-50 or group-sim-500.") {
		t.Errorf("README's Groups section claims results:\n%s", text)
	}
	for _, name := range figures {
		if _, err := os.Stat(filepath.Join(out, name)); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed", name, err)
		}
	}
}

func TestParseFlagsNeedsInput(t *testing.T) {
	if _, err := parseFlags([]string{"-out", t.TempDir()}, io.Discard); err == nil {
		t.Error("no error without -records and -bench-output")
	}
}

// runReport runs the report with args and -out out, and returns the
// README it wrote.
func runReport(t *testing.T, out string, args ...string) string {
	t.Helper()
	o, err := parseFlags(append(args, "-out", out), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := report(o, quiet()); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(out, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(readme)
}

// TestFloorStatus: a target not met is "below this run's floor" only when
// the floor is there and the limit is below it.
func TestFloorStatus(t *testing.T) {
	mk := func(figures map[string]float64) *data {
		return newData([]benchdata.Record{{Name: "node-latency-sessions", Figures: figures}}, nil)
	}
	p50 := targets()[0]
	if p50.what != "Sessions latency p50" {
		t.Fatalf("first target is %q", p50.what)
	}
	for _, c := range []struct {
		name    string
		figures map[string]float64
		want    string
	}{
		{"met above its floor", map[string]float64{"p50-ms": 0.4, "fdatasync-paced-ms": 0.1, "crypto-ms": 0.05}, statusMet},
		{"not met, floor under the limit", map[string]float64{"p50-ms": 0.9, "fdatasync-paced-ms": 0.2, "crypto-ms": 0.05}, statusNotMet},
		{"not met, floor over the limit", map[string]float64{"p50-ms": 2.1, "fdatasync-paced-ms": 0.45, "crypto-ms": 0.18}, statusBelowFloor},
		{"not met, no floor measured", map[string]float64{"p50-ms": 2.1, "crypto-ms": 0.18}, statusNotMet},
	} {
		if got, _ := p50.evaluate(mk(c.figures)); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	// The fan-out's floor is the floor network's ratio; without its
	// record there is none (Parley's own CPU time is not one).
	fan := groupTargets()[0]
	d := newData([]benchdata.Record{{Name: recGroupFanout, Figures: map[string]float64{
		"ratio-p99": 2.5, "parley-floor-p99-ms": 40, "raw-p99-ms": 20}}}, nil)
	if got, _ := fan.evaluate(d); got != statusNotMet {
		t.Errorf("fan-out without the floor network's record: %q, want %q", got, statusNotMet)
	}
	// With it: over the limit, the limit is below the floor; under it,
	// the target is simply not met.
	for _, c := range []struct {
		ratio float64
		want  string
	}{{2.2, statusBelowFloor}, {1.2, statusNotMet}} {
		d := newData([]benchdata.Record{
			{Name: recGroupFanout, Figures: map[string]float64{"ratio-p99": 2.5, "parley-floor-p99-ms": 40, "raw-p99-ms": 20}},
			{Name: recGroupFloor, Figures: map[string]float64{"floor-ratio-p99": c.ratio, "floor-p99-ms": 30, "raw-p99-ms": 25}},
		}, nil)
		if got, _ := fan.evaluate(d); got != c.want {
			t.Errorf("fan-out with a floor network ratio of %v: %q, want %q", c.ratio, got, c.want)
		}
	}
}
