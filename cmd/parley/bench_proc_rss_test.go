package main

// The burst, idle-rss and start-to-ready sub-benchmarks of
// BenchmarkAPIProcesses (bench_proc_test.go).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/internal/benchdata"
	"github.com/parley-chat/parley/store"
)

// The burst: burstClients API clients on A, each with its own goroutine
// and http.Client, send burstPerClient messages of burstSize bytes to B
// as fast as A answers.
const (
	burstClients   = 4
	burstPerClient = 1250
	burstSize      = 256
	burstTimeout   = 3 * time.Minute
	rssEvery       = 50 * time.Millisecond
)

// benchBurst measures the rate of a burst from the first send until B has
// stored every message (B's "message" events; if the socket lost events,
// B's unread count), and the RSS of A and B meanwhile. Then it checks B's
// history: every message exactly once, each client's in its send order.
// Its floor, measured after the burst, is the rate at which as many
// clients get GET /api/v1/me answered by A.
func benchBurst(b *testing.B) map[string]float64 {
	a, bb := startBenchPair(b)
	const total = burstClients * burstPerClient
	from, to := a.userID, bb.userID

	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	ws := bb.openEvents(ctx)
	var (
		mu       sync.Mutex
		seen     = make(map[string]bool, total)
		lastAt   time.Time
		overflow bool
	)
	allIn := make(chan struct{})
	readDone := readEvents(ctx, ws, func(ev benchEvent) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.typ == "overflow":
			overflow = true
		case ev.typ == "message" && ev.from == from && !seen[ev.id]:
			seen[ev.id] = true
			if len(seen) == total {
				lastAt = ev.at
				close(allIn)
			}
		}
	})
	hwmReset := resetHWM(a) && resetHWM(bb)
	beforeA, beforeB := mustRSS(b, a), mustRSS(b, bb)
	start := time.Now()
	sampler := startRSSSampler(start, rssEvery, a.cmd.Process.Pid, bb.cmd.Process.Pid)
	ids, sendErr, sentAt := burstSend(b, a, to, start)

	deadline := time.NewTimer(burstTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	var end time.Time
wait:
	for {
		select {
		case <-allIn:
			mu.Lock()
			end = lastAt
			mu.Unlock()
			break wait
		case err := <-readDone:
			b.Fatalf("B's events socket: %v", err)
		case <-poll.C:
			if err := sendErr(); err != nil {
				b.Fatalf("send: %v", err)
			}
			mu.Lock()
			lost := overflow
			mu.Unlock()
			if lost && unreadCount(bb, from) >= total {
				end = time.Now()
				break wait
			}
		case <-deadline.C:
			mu.Lock()
			n := len(seen)
			mu.Unlock()
			b.Fatalf("after %v, B has %d of %d message events (unread %d)", burstTimeout, n, total, unreadCount(bb, from))
		}
	}
	elapsed := end.Sub(start)
	points, errs := sampler.stop()
	for _, err := range errs {
		b.Errorf("sampling RSS: %v", err)
	}
	afterA, afterB := mustRSS(b, a), mustRSS(b, bb)
	sent := sentAt()
	if err := sendErr(); err != nil {
		b.Fatalf("send: %v", err)
	}
	mu.Lock()
	lost := overflow
	mu.Unlock()
	if !hwmReset {
		b.Logf("could not reset VmHWM: hwm-*-mib are peaks since the processes started")
	}
	b.Logf("burst: %d messages in %v (all 202s after %v); B's socket lost events: %v; RSS of A %.1f → peak %.1f MiB, B %.1f → peak %.1f MiB",
		total, elapsed.Round(time.Millisecond), sent.Round(time.Millisecond), lost,
		beforeA.rss, peakMiB(points[0]), beforeB.rss, peakMiB(points[1]))
	anonA, fileA := rssParts(a.cmd.Process.Pid)
	b.Logf("after the burst: A %.1f MiB (anonymous %.1f, file %.1f)", afterA.rss, anonA, fileA)

	checkBurstHistory(b, bb.messages(from), ids)
	httpRate := apiRequestRate(b, a, time.Second) // the floor, once the burst is over

	figures := map[string]float64{
		"msgs/s":          float64(total) / elapsed.Seconds(),
		"sent-msgs/s":     float64(total) / sent.Seconds(),
		"http-req/s":      httpRate,
		"peak-rss-a-mib":  peakMiB(points[0]),
		"peak-rss-b-mib":  peakMiB(points[1]),
		"hwm-a-mib":       afterA.hwm,
		"hwm-b-mib":       afterB.hwm,
		"start-rss-a-mib": beforeA.rss,
		"start-rss-b-mib": beforeB.rss,
		"msgs/http-req":   float64(total) / elapsed.Seconds() / httpRate, // delivered msgs/s over the floor
	}
	writeRecord(b, benchdata.Record{
		Name:    "api-burst",
		Figures: figures,
		Points:  map[string][][2]float64{"rss-mib-a": points[0], "rss-mib-b": points[1]},
	})
	return figures
}

// burstSend starts the burst's clients on a, sending to `to`. ids[c][i]
// will be the message ID of client c's i-th message ("c<c>-<i>"); ids may
// be read once sentAt has returned. sendErr returns the first send error
// so far; sentAt waits for every client and returns when the last 202
// came, since start.
func burstSend(b *testing.B, a *proc, to string, start time.Time) (ids [][]string, sendErr func() error, sentAt func() time.Duration) {
	ids = make([][]string, burstClients)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for c := range burstClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newRawSender(a)
			defer s.close()
			for i := range burstPerClient {
				select {
				case <-stop:
					return
				default:
				}
				id, err := s.send(to, benchText(fmt.Sprintf("c%d-%04d", c, i), burstSize))
				if err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				ids[c] = append(ids[c], id)
			}
		}()
	}
	done := make(chan struct{})
	var last time.Duration
	go func() {
		wg.Wait()
		last = time.Since(start)
		close(done)
	}()
	// A benchmark that fails stops the clients before its processes.
	b.Cleanup(func() { close(stop); <-done })
	sendErr = func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	}
	sentAt = func() time.Duration {
		select {
		case <-done:
		case <-time.After(burstTimeout):
			b.Fatalf("the burst's sends did not end within %v", burstTimeout)
		}
		return last
	}
	return ids, sendErr, sentAt
}

func cmpOr(err, other error) error {
	if err != nil {
		return err
	}
	return other
}

// apiRequestRate is the floor of the burst: the rate at which
// burstClients clients, each with its own goroutine and http.Client, get
// GET /api/v1/me answered by p for d.
func apiRequestRate(b *testing.B, p *proc, d time.Duration) float64 {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count int
		errs  []error
	)
	start := time.Now()
	for range burstClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			n := 0
			for time.Since(start) < d {
				req, _ := http.NewRequest("GET", p.url+"/api/v1/me", nil)
				req.Header.Set("Authorization", "Bearer "+p.token)
				resp, err := client.Do(req)
				if err == nil {
					_, err = readAllClose(resp)
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("GET /api/v1/me = %s", resp.Status)
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				n++
			}
			mu.Lock()
			count += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(errs) > 0 {
		b.Fatalf("%s: %v", p.name, errs[0])
	}
	return float64(count) / elapsed.Seconds()
}

// readAllClose reads and closes the body of resp.
func readAllClose(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// unreadCount is the unread count of p's conversation with a user.
func unreadCount(p *proc, with string) int {
	var r struct {
		Conversations []api.Conversation `json:"conversations"`
	}
	p.must("GET", "/api/v1/conversations", nil, http.StatusOK, &r)
	for _, c := range r.Conversations {
		if c.With == with {
			return c.Unread
		}
	}
	return 0
}

// checkBurstHistory checks B's conversation with A (newest first, as
// get_messages answers) after the burst: exactly the burst's messages,
// each once, with the ID A's API answered, and each client's in its send
// order.
func checkBurstHistory(b *testing.B, history []api.Message, ids [][]string) {
	in := split(history, "in") // oldest first: B's storage order
	if want := burstClients * burstPerClient; len(in) != want || len(history) != want {
		b.Errorf("B has %d messages (%d incoming), want %d incoming", len(history), len(in), want)
	}
	seen := make(map[[2]int]bool, len(in))
	next := make([]int, burstClients) // the index each client's next message must have
	for pos, m := range in {
		var c, i int
		_, err := fmt.Sscanf(m.Text, "c%d-%d ", &c, &i)
		switch {
		case err != nil || c < 0 || c >= burstClients || i < 0 || i >= burstPerClient || len(m.Text) != burstSize:
			b.Errorf("B has an unexpected message %.20q", m.Text)
		case seen[[2]int{c, i}]:
			b.Errorf("B has c%d-%04d twice", c, i)
		case i != next[c]:
			b.Errorf("B's order: c%d-%04d at position %d, want c%d-%04d next", c, i, pos, c, next[c])
		case m.ID != ids[c][i]:
			b.Errorf("B has c%d-%04d as %s, A's API answered %s", c, i, m.ID, ids[c][i])
		}
		if err == nil && c >= 0 && c < burstClients {
			seen[[2]int{c, i}] = true
			next[c] = i + 1
		}
		if b.Failed() && pos > 0 && pos%1000 == 0 {
			b.FailNow() // enough said
		}
	}
}

// Idle: after the last message, A and B are sampled every idleEvery until
// the RSS of both has varied by at most idleTolerance MiB over
// idleWindow (or idleSettleTimeout passes; then the last window is
// reported anyway, with a log line).
const (
	idleEvery         = 250 * time.Millisecond
	idleWindow        = 5 * time.Second
	idleTolerance     = 1.0
	idleSettleTimeout = time.Minute
)

// benchIdleRSS measures the RSS of an idle, unlocked node A with two
// friends, B and C, after A has exchanged a message with each. Its floor
// is A's RSS before it registered (a node with no identity yet).
func benchIdleRSS(b *testing.B) map[string]float64 {
	a := startProc(b, "alice", b.TempDir(), nil, "", benchChildEnv...)
	floor, _ := settledRSS(b, 2*time.Second, a)
	a.register("Alice")
	bb, c := startBenchProc(b, "Bob"), startBenchProc(b, "Carol")
	befriend(b, a, bb)
	befriend(b, a, c)
	for _, f := range []*proc{bb, c} {
		a.send(f.userID, "hello "+f.name)
		f.send(a.userID, "hello alice, from "+f.name)
	}
	for _, f := range []*proc{bb, c} {
		waitFor(b, waitTimeout, "the messages of A and "+f.name+" arrive and are delivered", func() bool {
			ms := a.messages(f.userID)
			return len(split(ms, "in")) == 1 && allDelivered(split(ms, "out"), 1) && len(split(f.messages(a.userID), "in")) == 1
		})
	}
	start := time.Now()
	idle, settled := settledRSS(b, idleWindow, a, bb)
	if !settled {
		b.Logf("RSS not stable within %.1f MiB over %v after %v; reporting the last window", idleTolerance, idleWindow, idleSettleTimeout)
	}
	hwm := mustRSS(b, a).hwm
	anon, file := rssParts(a.cmd.Process.Pid)
	b.Logf("idle: A %.1f MiB (anonymous %.1f, file %.1f; VmHWM %.1f MiB; %.1f MiB before registering), B %.1f MiB, after %v",
		idle[0], anon, file, hwm, floor[0], idle[1], time.Since(start).Round(time.Millisecond))
	figures := map[string]float64{
		"idle-anon-mib":  anon,
		"idle-file-mib":  file,
		"idle-rss-mib":   idle[0],
		"idle-rss-b-mib": idle[1],
		"new-rss-mib":    floor[0],
		"hwm-mib":        hwm,
		"kdf-mib":        float64(store.DefaultKDF.MemoryKiB) / 1024,
		"idle/new":       idle[0] / floor[0],
	}
	writeRecord(b, benchdata.Record{Name: "idle-rss", Figures: figures})
	return figures
}

// settledRSS samples the VmRSS of ps every idleEvery until each has
// varied by at most idleTolerance MiB over window, or idleSettleTimeout
// passes. It returns the median of each over the last window and whether
// they settled.
func settledRSS(tb testing.TB, window time.Duration, ps ...*proc) (medians []float64, settled bool) {
	tb.Helper()
	n := int(window / idleEvery)
	samples := make([][]float64, len(ps))
	deadline := time.Now().Add(idleSettleTimeout)
	tick := time.NewTicker(idleEvery)
	defer tick.Stop()
	for {
		for i, p := range ps {
			samples[i] = append(samples[i], mustRSS(tb, p).rss)
		}
		if len(samples[0]) >= n {
			settled = true
			for i := range ps {
				last := samples[i][len(samples[i])-n:]
				if slices.Max(last)-slices.Min(last) > idleTolerance {
					settled = false
				}
			}
			if settled || time.Now().After(deadline) {
				for i := range ps {
					medians = append(medians, percentile(sortedCopy(samples[i][len(samples[i])-n:]), 50))
				}
				return medians, settled
			}
		}
		<-tick.C // polling interval
	}
}

// startRounds is how many times start-to-ready starts the node each way.
const startRounds = 5

// benchStartToReady measures, on a registered node, the time from exec
// of `parley run --passphrase-file` to the API answering state
// "unlocked" (the process prints its URL once the unlock is done; the
// health check confirms it), over startRounds rounds. Its floor,
// measured in alternation, is the same start without the passphrase
// file, to state "locked": the difference is the unlock (Argon2id with
// store.DefaultKDF, opening the store, starting libp2p).
func benchStartToReady(b *testing.B) map[string]float64 {
	p := startBenchProc(b, "Alice")
	dataDir, passFile := p.dataDir, p.passFile
	p.stop()
	var ready, locked []float64
	for round := range startRounds {
		q, d := startTimed(b, fmt.Sprintf("alice-locked-%d", round), dataDir, "", "locked")
		q.stop()
		locked = append(locked, durMS(d))
		q, d = startTimed(b, fmt.Sprintf("alice-%d", round), dataDir, passFile, "unlocked")
		q.stop()
		ready = append(ready, durMS(d))
	}
	sr, sl := sortedCopy(ready), sortedCopy(locked)
	figures := map[string]float64{
		"ms":           percentile(sr, 50),
		"max-ms":       sr[len(sr)-1],
		"locked-ms":    percentile(sl, 50),
		"ms/locked-ms": percentile(sr, 50) / percentile(sl, 50),
	}
	writeRecord(b, benchdata.Record{
		Name:    "start-to-ready",
		Figures: figures,
		Series:  map[string][]float64{"ms": ready, "locked-ms": locked},
	})
	return figures
}

// startTimed starts `parley run` on dataDir (with --passphrase-file when
// passFile is not empty) as startProc does, and returns it with the time
// from exec to its health check answering state want, checked as soon as
// the process prints its URL line.
func startTimed(b *testing.B, name, dataDir, passFile, want string) (*proc, time.Duration) {
	b.Helper()
	args := []string{"run", "--data-dir", dataDir, "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"}
	if passFile != "" {
		args = append(args, "--passphrase-file", passFile)
	}
	p := &proc{
		t: b, name: name, dataDir: dataDir, passFile: passFile, env: benchChildEnv,
		cmd:    exec.Command(parleyBinary(b), args...),
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{}),
		http: &http.Client{Timeout: waitTimeout, Transport: &http.Transport{}},
	}
	p.cmd.Env = childEnv(benchChildEnv...)
	urlLine := &lineWatch{buf: p.stdout, seen: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = urlLine, p.stderr
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("%s: starting parley: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	b.Cleanup(func() {
		if !p.stopped {
			p.stop()
		}
		if b.Failed() {
			b.Logf("%s: stdout:\n%s\n%s: stderr:\n%s", name, p.stdout, name, p.stderr)
		}
	})
	select {
	case <-urlLine.seen:
	case <-p.exited:
		p.stopped = true
		b.Fatalf("%s: parley exited before serving: %v\nstderr:\n%s", name, p.waitErr, p.stderr)
	case <-time.After(startTimeout):
		b.Fatalf("%s: no URL line after %v; stdout:\n%s", name, startTimeout, p.stdout)
	}
	p.url = runningLine.FindStringSubmatch(p.stdout.String())[1]
	waitFor(b, waitTimeout, name+" in state "+want, func() bool { return p.state() == want })
	return p, time.Since(start)
}

// lineWatch is the stdout of a process: it keeps what the process
// writes, and closes seen once that holds the URL line.
type lineWatch struct {
	buf  *syncBuffer
	seen chan struct{}
	once sync.Once
}

func (w *lineWatch) Write(b []byte) (int, error) {
	n, err := w.buf.Write(b)
	if runningLine.MatchString(w.buf.String()) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}
