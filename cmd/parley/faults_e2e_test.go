package main

// End-to-end fault tests: the receiver or the sender is killed with
// SIGKILL while messages flow, or the receiver restarts again and again;
// every message the API accepted (202) must reach the recipient exactly
// once, in the order the sender wrote it. Helpers are in
// e2e_helpers_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
)

// deliverTimeout bounds the waits for a large backlog to drain.
const deliverTimeout = 90 * time.Second

// kill9 kills p with SIGKILL, as a crash would, and waits for it to be
// gone. p can then be restarted with restart.
func (p *proc) kill9() {
	p.t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	defer p.http.CloseIdleConnections()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatalf("%s: SIGKILL: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.t.Fatalf("%s: parley still running %v after SIGKILL", p.name, stopTimeout)
	}
}

// rawSender sends messages over the API without a *testing.T, so that it
// can run in goroutines other than the test's: errors are returned.
type rawSender struct {
	url, token string
	http       *http.Client
}

func newRawSender(p *proc) *rawSender {
	return &rawSender{url: p.url, token: p.token, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}}
}

func (s *rawSender) close() { s.http.CloseIdleConnections() }

// send posts send_message and returns the message ID of a 202 answer.
func (s *rawSender) send(to, text string) (string, error) {
	j, _ := json.Marshal(map[string]string{"to": to, "text": text})
	req, err := http.NewRequest("POST", s.url+"/api/v1/send_message", bytes.NewReader(j))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading the answer: %v", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("send_message %q = %s %s, want 202", text, resp.Status, b)
	}
	var r struct {
		ID     string `json:"msg_id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("send_message %q: decoding %s: %v", text, b, err)
	}
	if r.ID == "" || r.Status != "pending" {
		return "", fmt.Errorf("send_message %q answered %s", text, b)
	}
	return r.ID, nil
}

// waitSlow is waitFor with its own poll interval, for conditions that
// read thousands of messages; on timeout it fails with what describe
// says about the state.
func waitSlow(t *testing.T, d, every time.Duration, what string, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s; %s", d, what, describe())
		}
		time.Sleep(every) // polling interval, not synchronisation
	}
}

// statusCounts summarises the statuses of ms.
func statusCounts(ms []api.Message) string {
	c := make(map[string]int)
	for _, m := range ms {
		c[m.Status]++
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return fmt.Sprintf("%d messages (%s)", len(ms), strings.Join(parts, " "))
}

// allDelivered reports whether ms are at least n messages, all delivered.
func allDelivered(ms []api.Message, n int) bool {
	if len(ms) < n {
		return false
	}
	for _, m := range ms {
		if m.Status != "delivered" {
			return false
		}
	}
	return true
}

// checkDeliveredStored checks that every message out (the sender's)
// shows as delivered is in in (the recipient's store), by ID and text.
func checkDeliveredStored(t *testing.T, out, in []api.Message) {
	t.Helper()
	got := make(map[string]string, len(in))
	for _, m := range in {
		got[m.ID] = m.Text
	}
	missing := 0
	for _, m := range out {
		if m.Status != "delivered" && m.Status != "read" {
			continue
		}
		text, ok := got[m.ID]
		switch {
		case !ok:
			missing++
			if missing <= 20 {
				t.Errorf("message %s (%q) is delivered on the sender but not in the recipient's store", m.ID, m.Text)
			}
		case text != m.Text:
			t.Errorf("message %s: sender has %q, recipient %q", m.ID, m.Text, text)
		}
	}
	if missing > 0 {
		t.Errorf("%d messages delivered on the sender are missing on the recipient", missing)
	}
}

// texts returns the texts of ms.
func texts(ms []api.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Text
	}
	return out
}

// checkOrder checks that got (the recipient's texts in storage order)
// are exactly want, in want's order; on a mismatch it names the first
// position that differs and the surroundings.
func checkOrder(t *testing.T, who string, got, want []string) {
	t.Helper()
	n := min(len(got), len(want))
	for i := range n {
		if got[i] != want[i] {
			lo, hi := max(0, i-3), min(n, i+4)
			t.Errorf("%s: storage order differs first at position %d: got %q, want %q (got[%d:%d] = %q, want[%d:%d] = %q)",
				who, i, got[i], want[i], lo, hi, got[lo:hi], lo, hi, want[lo:hi])
			return
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d messages, want %d", who, len(got), len(want))
	}
}

// TestE2EReceiverKill9 sends 2000 messages from 8 concurrent goroutines
// while the recipient is killed with SIGKILL and restarted: each arrives
// exactly once, each goroutine's in the order it sent them, every
// message the sender shows delivered is in the recipient's store, and the
// sender sent again at most what was unacknowledged when streams broke
// (its outbox counters, scraped from its /metrics).
func TestE2EReceiverKill9(t *testing.T) {
	t.Parallel()
	start := time.Now()
	a, b, metricsURL := startPairMetrics(t)
	const senders, perSender = 8, 250
	const total = senders * perSender
	bob := b.userID // b is replaced by its restart: the goroutines must not read it

	var answered atomic.Int64
	var (
		mu     sync.Mutex
		errs   []error
		sentID = make(map[string]string) // text → msg ID of its 202
	)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newRawSender(a)
			defer s.close()
			for i := range perSender {
				text := fmt.Sprintf("s%d-%d", g, i)
				id, err := s.send(bob, text)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					sentID[text] = id
				}
				mu.Unlock()
				answered.Add(1)
			}
		}()
	}
	sendsDone := make(chan struct{})
	go func() { wg.Wait(); close(sendsDone) }()

	waitFor(t, deliverTimeout, "a third of the sends answered", func() bool { return answered.Load() >= total/3 })
	t.Logf("killing bob after %d of %d sends answered (%v)", answered.Load(), total, time.Since(start))
	b.kill9()
	b = b.restart(true)
	t.Logf("bob restarted with %d sends answered (%v)", answered.Load(), time.Since(start))

	select {
	case <-sendsDone:
	case <-time.After(deliverTimeout):
		t.Fatalf("only %d of %d sends answered after %v", answered.Load(), total, deliverTimeout)
	}
	mu.Lock()
	for i, err := range errs {
		if i < 20 {
			t.Errorf("send: %v", err)
		}
	}
	if len(errs) > 0 {
		mu.Unlock()
		t.Fatalf("%d of %d sends failed", len(errs), total)
	}
	mu.Unlock()
	t.Logf("all %d sends answered 202 (%v)", total, time.Since(start))

	waitSlow(t, deliverTimeout, 250*time.Millisecond, "all of alice's messages delivered",
		func() bool { return allDelivered(split(a.messages(b.userID), "out"), total) },
		func() string {
			return fmt.Sprintf("alice's sent: %s; bob's received: %d",
				statusCounts(split(a.messages(b.userID), "out")), len(split(b.messages(a.userID), "in")))
		})
	t.Logf("all delivered (%v)", time.Since(start))

	out := split(a.messages(b.userID), "out")
	in := split(b.messages(a.userID), "in") // bob's storage order
	var want []string
	for g := range senders {
		for i := range perSender {
			want = append(want, fmt.Sprintf("s%d-%d", g, i))
		}
	}
	checkExactlyOnce(t, "bob, received", in, want, "")
	checkExactlyOnce(t, "alice, sent", out, want, "delivered")
	checkDeliveredStored(t, out, in)
	for _, m := range in {
		if id := sentID[m.Text]; id != m.ID {
			t.Errorf("bob has %q as %s, alice's send_message answered %s", m.Text, m.ID, id)
		}
	}

	// Each goroutine's messages in the order it sent them.
	last := make([]int, senders)
	for g := range last {
		last[g] = -1
	}
	for pos, m := range in {
		var g, i int
		if _, err := fmt.Sscanf(m.Text, "s%d-%d", &g, &i); err != nil || g < 0 || g >= senders {
			t.Errorf("bob has an unexpected message %q", m.Text)
			continue
		}
		if i <= last[g] {
			t.Errorf("bob's storage order: %q at position %d comes after s%d-%d", m.Text, pos, g, last[g])
		}
		last[g] = i
	}

	// Alice re-sent at most what was unacknowledged when streams broke.
	const (
		sentM    = "parley_outbox_frames_sent_total"
		resentM  = "parley_outbox_frames_resent_total"
		breaksM  = "parley_outbox_stream_breaks_total"
		unackedM = "parley_outbox_unacked_at_break_total"
	)
	mv, err := scrapeMetrics(metricsURL, sentM, resentM, breaksM, unackedM)
	if err != nil {
		t.Fatalf("alice's metrics: %v", err)
	}
	t.Logf("alice's outbox: %v frames sent, %v of them again; %v streams broke with %v frames unacknowledged",
		mv[sentM], mv[resentM], mv[breaksM], mv[unackedM])
	if mv[resentM] > mv[unackedM] {
		t.Errorf("alice re-sent %v frames, more than the %v unacknowledged when streams broke", mv[resentM], mv[unackedM])
	}
	if mv[sentM]-mv[resentM] < total {
		t.Errorf("alice sent %v frames, %v of them again: fewer than the %d messages for the first time", mv[sentM], mv[resentM], total)
	}
	t.Logf("done in %v", time.Since(start))
}

// TestE2ESenderKill9 kills the sender with SIGKILL while it sends 300
// messages one after the other to an online recipient, restarts it and
// sends 50 more at once while its backlog drains: every message the API
// accepted arrives exactly once, in the order sent, the ones sent before
// the kill first; the one in flight at the kill arrives at most once.
func TestE2ESenderKill9(t *testing.T) {
	t.Parallel()
	start := time.Now()
	a, b := startPair(t)
	const nBefore, nAfter, killAt = 300, 50, 100
	bob := b.userID

	// before[i] is the answer to "before-<i>": ok when 202, err otherwise
	// (the request in flight at the kill, and none after it is sent).
	type answer struct {
		id  string
		err error
	}
	var (
		mu       sync.Mutex
		before   []answer
		answered atomic.Int64
	)
	s := newRawSender(a)
	defer s.close()
	sendsDone := make(chan struct{})
	go func() {
		defer close(sendsDone)
		for i := range nBefore {
			id, err := s.send(bob, fmt.Sprintf("before-%03d", i))
			mu.Lock()
			before = append(before, answer{id, err})
			mu.Unlock()
			if err != nil {
				return // alice is gone
			}
			answered.Add(1)
		}
	}()
	waitFor(t, deliverTimeout, "100 sends answered", func() bool { return answered.Load() >= killAt })
	a.kill9()
	<-sendsDone // the sender's last request fails at once: alice is gone
	mu.Lock()
	var accepted []string // "before" texts answered 202, in order
	inFlight := ""        // the request the kill interrupted, if any
	for i, r := range before {
		text := fmt.Sprintf("before-%03d", i)
		if r.err != nil {
			inFlight = text
			t.Logf("%s, in flight at the kill: %v", text, r.err)
			break
		}
		accepted = append(accepted, text)
	}
	mu.Unlock()
	if inFlight == "" {
		t.Fatalf("all %d sends answered before alice was killed", nBefore)
	}
	t.Logf("killed alice after %d sends answered (%v); bob had %d of them then",
		len(accepted), time.Since(start), len(split(b.messages(a.userID), "in")))

	a = a.restart(true)
	var after []string
	for i := range nAfter {
		after = append(after, fmt.Sprintf("after-%02d", i))
		a.send(b.userID, after[i])
	}
	t.Logf("alice restarted and sent %d more (%v)", nAfter, time.Since(start))

	minTotal := len(accepted) + nAfter
	waitSlow(t, deliverTimeout, 100*time.Millisecond, "all of alice's messages delivered",
		func() bool { return allDelivered(split(a.messages(b.userID), "out"), minTotal) },
		func() string {
			return fmt.Sprintf("alice's sent: %s; bob's received: %d",
				statusCounts(split(a.messages(b.userID), "out")), len(split(b.messages(a.userID), "in")))
		})
	t.Logf("all delivered (%v)", time.Since(start))

	out := split(a.messages(b.userID), "out")
	in := split(b.messages(a.userID), "in")
	got := texts(in)
	want := append([]string(nil), accepted...)
	stored := false // whether the in-flight message made it
	for _, text := range got {
		if text == inFlight {
			stored = true
		}
	}
	if stored {
		want = append(want, inFlight)
	}
	want = append(want, after...)
	t.Logf("the in-flight message %s was stored: %v", inFlight, stored)
	checkExactlyOnce(t, "bob, received", in, want, "")
	checkOrder(t, "bob, received", got, want)
	checkExactlyOnce(t, "alice, sent", out, want, "delivered")
	checkDeliveredStored(t, out, in)
	mu.Lock()
	for i, text := range accepted {
		if i < len(in) && in[i].Text == text && in[i].ID != before[i].id {
			t.Errorf("bob has %q as %s, alice's send_message answered %s", text, in[i].ID, before[i].id)
		}
	}
	mu.Unlock()
	t.Logf("done in %v", time.Since(start))
}

// TestE2ERestartStorm sends a message every 100 ms while the recipient
// restarts five times: all arrive exactly once, in the order sent.
func TestE2ERestartStorm(t *testing.T) {
	t.Parallel()
	start := time.Now()
	a, b := startPair(t)
	const restarts = 5
	bob := b.userID // b is replaced by its restarts: the goroutine must not read it

	var (
		mu   sync.Mutex
		sent []string
		errs []error
	)
	stop := make(chan struct{})
	sendsDone := make(chan struct{})
	s := newRawSender(a)
	defer s.close()
	go func() {
		defer close(sendsDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			text := "storm-" + strconv.Itoa(i)
			_, err := s.send(bob, text)
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			} else {
				sent = append(sent, text)
			}
			mu.Unlock()
		}
	}()
	stopSending := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-sendsDone
	}
	defer stopSending()

	received := func() int { return len(split(b.messages(a.userID), "in")) }
	for r := range restarts {
		// Let some messages through before each restart.
		n := received()
		waitFor(t, waitTimeout, fmt.Sprintf("bob receives more before restart %d", r+1), func() bool { return received() >= n+3 })
		b = b.restart(true)
		t.Logf("bob restarted (%d/%d) at %v", r+1, restarts, time.Since(start))
	}
	n := received()
	waitFor(t, waitTimeout, "bob receives more after the last restart", func() bool { return received() >= n+3 })
	stopSending()
	mu.Lock()
	for _, err := range errs {
		t.Errorf("send: %v", err)
	}
	want := append([]string(nil), sent...)
	mu.Unlock()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("sent %d messages (%v)", len(want), time.Since(start))

	waitSlow(t, deliverTimeout, 100*time.Millisecond, "all of alice's messages delivered",
		func() bool { return allDelivered(split(a.messages(b.userID), "out"), len(want)) },
		func() string {
			return fmt.Sprintf("alice's sent: %s; bob's received: %d",
				statusCounts(split(a.messages(b.userID), "out")), received())
		})
	in := split(b.messages(a.userID), "in")
	checkExactlyOnce(t, "bob, received", in, want, "")
	checkOrder(t, "bob, received", texts(in), want)
	out := split(a.messages(b.userID), "out")
	checkExactlyOnce(t, "alice, sent", out, want, "delivered")
	checkDeliveredStored(t, out, in)
	t.Logf("done in %v", time.Since(start))
}
