package main

// Benchmarks of the user's path through real processes: `parley run`
// children (built and started by the helpers of e2e_helpers_test.go),
// driven over their HTTP API and WebSocket events on 127.0.0.1 as the web
// UI drives them. They run only with -bench (make bench: -benchtime=400x)
// and skip in -short mode. The sub-benchmarks are:
//
//   - latency: POST /api/v1/send_message on A → "message" event on B's
//     socket, paced at 100 messages/s, b.N messages; floors: an HTTP round
//     trip to A's API and a WebSocket ping to B's events socket;
//   - burst: 5,000 messages from 4 concurrent API clients, rate until B
//     has stored them all, and the RSS of both processes meanwhile;
//   - idle-rss: the RSS of an idle, unlocked node with two friends;
//   - start-to-ready: exec to an unlocked API with --passphrase-file.
//
// The children use what a user gets, not the cheap settings of the
// end-to-end tests (childEnv): benchChildEnv below.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/parley-chat/parley/internal/benchdata"
)

// benchChildEnv overrides childEnv's cheap settings (a later variable of
// the same name wins in exec.Cmd.Env) with a user's defaults:
//   - PARLEY_TEST_KEY_BITS=3072: the default RSA identity key size
//     (node.DefaultKeyBits); generating one takes a few seconds, once
//     per process;
//   - PARLEY_TEST_KDF empty: the real passphrase KDF, store.DefaultKDF
//     (Argon2id t=3, m=64 MiB, p=4), whose 64 MiB is allocated at every
//     register and unlock, so that RSS and start-up times are a user's;
//   - the default log level, info, instead of the tests' debug.
var benchChildEnv = []string{"PARLEY_TEST_KEY_BITS=3072", "PARLEY_TEST_KDF=", envLogLevel + "=info"}

// startBenchProc starts `parley run` with benchChildEnv on a fresh data
// directory and registers name on it.
func startBenchProc(tb testing.TB, name string) *proc {
	tb.Helper()
	p := startProc(tb, strings.ToLower(name), tb.TempDir(), nil, "", benchChildEnv...)
	p.register(name)
	return p
}

// startBenchPair starts two benchmark processes and makes them friends.
func startBenchPair(tb testing.TB) (a, b *proc) {
	tb.Helper()
	a, b = startBenchProc(tb, "Alice"), startBenchProc(tb, "Bob")
	befriend(tb, a, b)
	return a, b
}

// sharedTB lets processes outlive one run of a benchmark function, which
// the framework calls first with b.N = 1 and then with the N asked for:
// starting them costs seconds (an RSA-3072 key, Argon2id), so they are
// started once. Failures and logs go to the current run (the embedded
// TB, set by use); cleanups and temporary directories belong to owner,
// the parent benchmark, which outlives every run of its sub-benchmark.
type sharedTB struct {
	testing.TB
	owner testing.TB
}

func newSharedTB(owner testing.TB) *sharedTB { return &sharedTB{TB: owner, owner: owner} }

func (s *sharedTB) Cleanup(f func()) { s.owner.Cleanup(f) }
func (s *sharedTB) TempDir() string  { return s.owner.TempDir() }

// use makes b the current run until the returned function is called.
func (s *sharedTB) use(b testing.TB) (done func()) {
	s.TB = b
	return func() { s.TB = s.owner }
}

// BenchmarkAPIProcesses runs the sub-benchmarks of this file. The ones
// that measure one burst, one idle node or a few starts do their work in
// the first run only and report the same figures in the later runs of
// the framework (whose b.N they ignore), so that -benchtime=400x does not
// repeat a minute of work.
func BenchmarkAPIProcesses(b *testing.B) {
	if testing.Short() {
		b.Skip("end-to-end benchmark: skipped with -short")
	}
	parent := b
	var lat *latencyFixture
	b.Run("latency", func(b *testing.B) {
		if lat == nil {
			lat = newLatencyFixture(newSharedTB(parent), b)
		}
		lat.run(b)
	})
	if lat != nil {
		lat.close() // stop its processes before the next sub-benchmarks
	}
	b.Run("burst", runOnce(benchBurst))
	b.Run("idle-rss", runOnce(benchIdleRSS))
	b.Run("start-to-ready", runOnce(benchStartToReady))
}

// runOnce returns a benchmark function that calls measure in its first
// run only and reports the figures measure returned in every run. The
// built-in ns/op, meaningless here, is suppressed.
func runOnce(measure func(b *testing.B) map[string]float64) func(*testing.B) {
	var figures map[string]float64
	return func(b *testing.B) {
		if figures == nil {
			figures = measure(b)
		}
		reportFigures(b, figures)
	}
}

// reportFigures reports figures with b.ReportMetric, and ns/op as 0,
// which the framework then leaves out.
func reportFigures(b *testing.B, figures map[string]float64) {
	for unit, v := range figures {
		b.ReportMetric(v, unit)
	}
	b.ReportMetric(0, "ns/op")
}

// writeRecord writes r for the benchmark report (when PARLEY_BENCH_DIR is
// set; else it does nothing).
func writeRecord(b testing.TB, r benchdata.Record) {
	if err := benchdata.Write(r); err != nil {
		b.Errorf("writing the benchmark record: %v", err)
	}
}

// benchText is a message text of exactly size bytes starting with tag.
func benchText(tag string, size int) string {
	if len(tag) >= size {
		return tag[:size]
	}
	return tag + " " + strings.Repeat("x", size-len(tag)-1)
}

// benchEvent is one event of an events socket, with its arrival time.
type benchEvent struct {
	typ  string
	id   string // msg_id of a message event
	from string // sender of a message event
	at   time.Time
}

// readEvents reads the events socket c until ctx ends or the socket
// closes, calling handle with each event in the reading goroutine; it
// returns at once. Reading continuously also lets c.Ping get its pongs.
// done receives the error that ended reading.
func readEvents(ctx context.Context, c *websocket.Conn, handle func(benchEvent)) (done <-chan error) {
	errc := make(chan error, 1)
	go func() {
		for {
			typ, data, err := c.Read(ctx)
			at := time.Now()
			if err != nil {
				errc <- err
				return
			}
			var ev struct {
				Type string `json:"type"`
				Data struct {
					ID   string `json:"msg_id"`
					From string `json:"from"`
				} `json:"data"`
			}
			if typ != websocket.MessageText || json.Unmarshal(data, &ev) != nil {
				errc <- fmt.Errorf("events socket sent %v %q", typ, data)
				return
			}
			handle(benchEvent{typ: ev.Type, id: ev.Data.ID, from: ev.Data.From, at: at})
		}
	}()
	return errc
}

// percentile is the nearest-rank q-th percentile (0 < q ≤ 100) of sorted.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func sortedCopy(xs []float64) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s
}

func durMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencyFixture is A and B, friends, and B's events socket, kept across
// the runs of the latency benchmark.
type latencyFixture struct {
	shared *sharedTB
	a, b   *proc
	ws     *websocket.Conn
	events chan benchEvent
	cancel context.CancelFunc
}

// latencyPace is the interval between two messages: 100 messages/s.
const latencyPace = 10 * time.Millisecond

func newLatencyFixture(shared *sharedTB, b *testing.B) *latencyFixture {
	defer shared.use(b)()
	b.Helper()
	f := &latencyFixture{shared: shared, events: make(chan benchEvent, 1024)}
	f.a, f.b = startBenchPair(shared)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	shared.Cleanup(cancel)
	f.ws = f.b.openEvents(ctx)
	readEvents(ctx, f.ws, func(ev benchEvent) {
		select {
		case f.events <- ev:
		case <-ctx.Done():
		}
	})
	return f
}

// close stops the reading and both processes.
func (f *latencyFixture) close() {
	f.cancel()
	f.ws.CloseNow()
	f.a.stop()
	f.b.stop()
}

// run sends b.N messages of 256 bytes from A to B, one at a time every
// latencyPace, and measures each from the start of its request to its
// "message" event on B's socket. Half a pace after each, it samples the
// floors: GET /api/v1/me on A (an authenticated HTTP round trip on
// loopback), a WebSocket ping on B's events socket, and one 256-byte
// append made durable with fdatasync in the temporary directory the data
// directories are in (the path has two durable writes: A's before the
// message leaves, B's before its event).
func (f *latencyFixture) run(b *testing.B) {
	defer f.shared.use(b)()
	to := f.b.userID
	disk := newSyncFloor(b)
	var lat, httpRTT, wsPing, fsync []float64
	tick := time.NewTicker(latencyPace / 2)
	defer tick.Stop()
	b.ResetTimer()
	for i := range b.N {
		<-tick.C
		start := time.Now()
		id := f.a.send(to, benchText(fmt.Sprintf("latency %d %d", b.N, i), 256))
		lat = append(lat, durMS(f.waitMessage(b, id).Sub(start)))

		<-tick.C
		start = time.Now()
		f.a.must("GET", "/api/v1/me", nil, http.StatusOK, nil)
		httpRTT = append(httpRTT, durMS(time.Since(start)))
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		start = time.Now()
		err := f.ws.Ping(ctx)
		wsPing = append(wsPing, durMS(time.Since(start)))
		cancel()
		if err != nil {
			b.Fatalf("ping on B's events socket: %v", err)
		}
		fsync = append(fsync, durMS(disk.sample(b)))
	}
	b.StopTimer()

	sl := sortedCopy(lat)
	p50 := percentile(sl, 50)
	h50, w50, s50 := percentile(sortedCopy(httpRTT), 50), percentile(sortedCopy(wsPing), 50), percentile(sortedCopy(fsync), 50)
	figures := map[string]float64{
		"p50-ms":          p50,
		"p99-ms":          percentile(sl, 99),
		"http-rtt-p50-ms": h50,
		"ws-ping-p50-ms":  w50,
		"fsync-p50-ms":    s50,
		"p50/http-rtt":    p50 / h50,
		"p50/floor":       p50 / (h50 + w50),         // one HTTP and one WebSocket round trip
		"p50/io-floor":    p50 / (h50 + w50 + 2*s50), // and the two durable writes
	}
	reportFigures(b, figures)
	writeRecord(b, benchdata.Record{
		Name:    "api-latency",
		Figures: figures,
		Series:  map[string][]float64{"api-ms": lat, "http-rtt-ms": httpRTT, "ws-ping-ms": wsPing, "fsync-ms": fsync},
	})
}

// syncFloor is a file in a temporary directory to which sample appends
// 256 bytes and makes them durable with fdatasync, as a synced store
// write must at least.
type syncFloor struct {
	f   *os.File
	buf []byte
}

func newSyncFloor(b *testing.B) *syncFloor {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "sync-floor"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return &syncFloor{f: f, buf: []byte(benchText("sync floor", 256))}
}

// sample returns the time one durable append took.
func (s *syncFloor) sample(b *testing.B) time.Duration {
	start := time.Now()
	if _, err := s.f.Write(s.buf); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// waitMessage returns the arrival time of the message event of id on B's
// socket, skipping other events.
func (f *latencyFixture) waitMessage(b *testing.B, id string) time.Time {
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		select {
		case ev := <-f.events:
			if ev.typ == "overflow" {
				b.Fatalf("B's events socket lost events")
			}
			if ev.typ == "message" && ev.id == id {
				return ev.at
			}
		case <-timeout.C:
			b.Fatalf("no message event for %s on B's socket within %v", id, waitTimeout)
		}
	}
}

// rssSample is one reading of /proc/<pid>/status: VmRSS and VmHWM in MiB.
type rssSample struct{ rss, hwm float64 }

// readRSS reads the resident set size and its peak of process pid.
func readRSS(pid int) (rssSample, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return rssSample{}, err
	}
	defer f.Close()
	var s rssSample
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		if err != nil {
			return rssSample{}, fmt.Errorf("/proc/%d/status: %s: %v", pid, key, err)
		}
		if key == "VmRSS" {
			s.rss = kb / 1024
		} else {
			s.hwm = kb / 1024
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return rssSample{}, err
	}
	if found != 2 {
		return rssSample{}, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return s, nil
}

// rssParts reads how much of process pid's RSS is anonymous memory (the
// Go heap, stacks, badger's memtable arenas) and how much is file pages
// (the binary, badger's memory-mapped tables and value log), in MiB;
// zeros when the kernel does not say.
func rssParts(pid int) (anon, file float64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "RssAnon" && key != "RssFile") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		if err != nil {
			continue
		}
		if key == "RssAnon" {
			anon = kb / 1024
		} else {
			file = kb / 1024
		}
	}
	return anon, file
}

// mustRSS is readRSS of p's process, failing the benchmark on an error.
func mustRSS(tb testing.TB, p *proc) rssSample {
	tb.Helper()
	s, err := readRSS(p.cmd.Process.Pid)
	if err != nil {
		tb.Fatalf("%s: %v", p.name, err)
	}
	return s
}

// resetHWM resets the VmHWM of p's process to its current RSS (Linux
// 4.0+: "5" into /proc/<pid>/clear_refs), so that a later VmHWM is the
// peak since now. It reports whether that worked.
func resetHWM(p *proc) bool {
	return os.WriteFile("/proc/"+strconv.Itoa(p.cmd.Process.Pid)+"/clear_refs", []byte("5"), 0) == nil
}

// rssSampler samples the VmRSS of some processes every interval, from
// its start until stop, as points (seconds since start, MiB).
type rssSampler struct {
	stopc  chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	points [][][2]float64 // per process
	errs   []error
}

func startRSSSampler(start time.Time, every time.Duration, pids ...int) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{}), points: make([][][2]float64, len(pids))}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			now := time.Now()
			s.mu.Lock()
			for i, pid := range pids {
				r, err := readRSS(pid)
				if err != nil {
					s.errs = append(s.errs, err)
					continue
				}
				s.points[i] = append(s.points[i], [2]float64{now.Sub(start).Seconds(), r.rss})
			}
			s.mu.Unlock()
			select {
			case <-s.stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends sampling and returns the points of each process.
func (s *rssSampler) stop() ([][][2]float64, []error) {
	close(s.stopc)
	<-s.done
	return s.points, s.errs
}

// peakMiB is the largest y of points.
func peakMiB(points [][2]float64) float64 {
	m := 0.0
	for _, p := range points {
		m = max(m, p[1])
	}
	return m
}
