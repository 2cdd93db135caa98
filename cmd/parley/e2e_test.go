package main

// End-to-end tests: the parley binary, built once, runs as child
// processes on 127.0.0.1; the tests speak to them only through the local
// API, as the web UI does. Helpers are in e2e_helpers_test.go.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
)

// checkConversation checks one direction of a conversation as one side
// sees it: exactly the texts want, each once, in want's order, all with
// status (when not "").
func checkConversation(t *testing.T, who string, got []api.Message, want []string, status string) {
	t.Helper()
	checkExactlyOnce(t, who, got, want, status)
	for i, m := range got {
		if i < len(want) && m.Text != want[i] {
			t.Errorf("%s: message %d is %q, want %q", who, i, m.Text, want[i])
		}
	}
}

// checkExactlyOnce checks that got holds each text of want exactly once,
// in any order, each message ID once, all with status (when not "").
func checkExactlyOnce(t *testing.T, who string, got []api.Message, want []string, status string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages, want %d", who, len(got), len(want))
	}
	ids := make(map[string]bool)
	texts := make(map[string]int)
	for _, w := range want {
		texts[w]++
	}
	for _, m := range got {
		if ids[m.ID] {
			t.Errorf("%s: message %s twice", who, m.ID)
		}
		ids[m.ID] = true
		if texts[m.Text] == 0 {
			t.Errorf("%s: unexpected or repeated message %q", who, m.Text)
		}
		texts[m.Text]--
		if status != "" && m.Status != status {
			t.Errorf("%s: message %s (%q) is %s, want %s", who, m.ID, m.Text, m.Status, status)
		}
	}
}

// allStatus reports whether ms are n messages, all with status.
func allStatus(ms []api.Message, n int, status string) bool {
	if len(ms) != n {
		return false
	}
	for _, m := range ms {
		if m.Status != status {
			return false
		}
	}
	return true
}

// TestE2EChat runs two nodes that befriend each other by invite and
// exchange 100 messages each way: every message arrives exactly once, in
// order, turns delivered and then read; afterwards no file of either data
// directory holds any message text in plain.
func TestE2EChat(t *testing.T) {
	t.Parallel()
	a, b := startPair(t)
	var mark [12]byte
	rand.Read(mark[:])
	marker := "plaintext-marker-" + hex.EncodeToString(mark[:])

	const n = 100
	var fromA, fromB []string
	for i := range n {
		fromA = append(fromA, fmt.Sprintf("%s from Alice #%03d", marker, i))
		fromB = append(fromB, fmt.Sprintf("%s from Bob #%03d", marker, i))
		// Interleaved, so that each side's newest messages include both
		// directions, as in a real conversation.
		a.send(b.userID, fromA[i])
		b.send(a.userID, fromB[i])
	}
	waitFor(t, waitTimeout, "all messages arrive", func() bool {
		return len(split(b.messages(a.userID), "in")) >= n && len(split(a.messages(b.userID), "in")) >= n
	})
	waitFor(t, waitTimeout, "all messages are delivered", func() bool {
		return allStatus(split(a.messages(b.userID), "out"), n, "delivered") &&
			allStatus(split(b.messages(a.userID), "out"), n, "delivered")
	})
	checkConversation(t, "bob, received", split(b.messages(a.userID), "in"), fromA, "")
	checkConversation(t, "alice, received", split(a.messages(b.userID), "in"), fromB, "")
	checkConversation(t, "alice, sent", split(a.messages(b.userID), "out"), fromA, "delivered")
	checkConversation(t, "bob, sent", split(b.messages(a.userID), "out"), fromB, "delivered")
	for _, m := range split(b.messages(a.userID), "in") {
		if m.From != a.userID || m.To != b.userID || m.ReceivedAt == nil || m.Path != "direct" {
			t.Fatalf("bob's received message %+v", m)
		}
	}

	b.must("POST", "/api/v1/read", map[string]string{"with": a.userID}, http.StatusNoContent, nil)
	a.must("POST", "/api/v1/read", map[string]string{"with": b.userID}, http.StatusNoContent, nil)
	waitFor(t, waitTimeout, "the senders see their messages read", func() bool {
		return allStatus(split(a.messages(b.userID), "out"), n, "read") &&
			allStatus(split(b.messages(a.userID), "out"), n, "read")
	})
	for _, p := range []*proc{a, b} {
		var r struct {
			Conversations []api.Conversation `json:"conversations"`
		}
		p.must("GET", "/api/v1/conversations", nil, http.StatusOK, &r)
		if len(r.Conversations) != 1 || r.Conversations[0].Unread != 0 || r.Conversations[0].LastMessage == nil {
			t.Errorf("%s: conversations %+v after reading", p.name, r.Conversations)
		}
	}

	a.stop()
	b.stop()
	for _, p := range []*proc{a, b} {
		hits, scanned := filesContaining(t, p.dataDir, []byte(marker))
		if len(hits) > 0 {
			t.Errorf("%s: message text in plain in %v", p.name, hits)
		}
		if scanned < 3 {
			t.Errorf("%s: only %d files scanned in %s", p.name, scanned, p.dataDir)
		}
		for _, secret := range []string{marker, testPass} {
			if strings.Contains(p.stderr.String(), secret) {
				t.Errorf("%s: the log shows a message text or the passphrase", p.name)
			}
		}
	}
}

// TestE2ERestart checks that queued messages survive restarts: of the
// recipient (its node stopped while they are sent), and of the sender
// too (stopped with its outbox full, started after the recipient).
func TestE2ERestart(t *testing.T) {
	t.Parallel()
	a, b := startPair(t)
	const n = 20
	var want []string

	// The recipient is down while a sends.
	b.stop()
	for i := range n {
		want = append(want, fmt.Sprintf("while bob was away #%02d", i))
		a.send(b.userID, want[i])
	}
	if out := split(a.messages(b.userID), "out"); !allStatus(out, n, "pending") {
		t.Fatalf("with bob stopped, alice's messages are %v, want all pending", statuses(out))
	}
	b = b.restart(true)
	waitFor(t, waitTimeout, "bob gets the queued messages", func() bool { return len(split(b.messages(a.userID), "in")) >= n })
	waitFor(t, waitTimeout, "alice sees them delivered", func() bool {
		return allStatus(split(a.messages(b.userID), "out"), n, "delivered")
	})
	// In order too: the first message, rescheduled with a backoff when
	// its dial failed, must not be overtaken by the later ones.
	checkConversation(t, "bob after his restart", split(b.messages(a.userID), "in"), want, "")

	// Both restart: the sender with its outbox full, after the recipient.
	b.stop()
	for i := range n {
		want = append(want, fmt.Sprintf("before both restarted #%02d", i))
		a.send(b.userID, want[n+i])
	}
	a.stop()
	b = b.restart(true)
	a = a.restart(true)
	waitFor(t, waitTimeout, "bob gets the messages alice queued before her restart", func() bool {
		return len(split(b.messages(a.userID), "in")) >= 2*n
	})
	waitFor(t, waitTimeout, "alice sees them delivered after her restart", func() bool {
		return allStatus(split(a.messages(b.userID), "out"), 2*n, "delivered")
	})
	checkConversation(t, "bob after both restarts", split(b.messages(a.userID), "in"), want, "")
	checkConversation(t, "alice after both restarts", split(a.messages(b.userID), "out"), want, "delivered")
}

func statuses(ms []api.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Status)
	}
	return out
}

// TestE2EWebSocket checks that the events socket of the recipient
// announces a message as it arrives, and the sender's its delivery.
func TestE2EWebSocket(t *testing.T) {
	t.Parallel()
	a, b := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	bEvents := b.openEvents(ctx)
	aEvents := a.openEvents(ctx)

	const text = "hello over the events socket"
	id := a.send(b.userID, text)
	for {
		ev := readEvent(t, ctx, bEvents)
		if ev.Type != "message" {
			continue
		}
		var m api.Message
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			t.Fatal(err)
		}
		if m.ID != id || m.Text != text || m.From != a.userID || m.Direction != "in" || m.ReceivedAt == nil {
			t.Fatalf("message event %+v, want message %s from %s", m, id, a.userID)
		}
		break
	}
	for {
		ev := readEvent(t, ctx, aEvents)
		if ev.Type != "message_status" {
			continue
		}
		var st api.StatusChange
		if err := json.Unmarshal(ev.Data, &st); err != nil {
			t.Fatal(err)
		}
		if st.ID == id && st.Status == "delivered" && st.With == b.userID {
			break
		}
	}
}

// loginBackoff is the login throttle's first wait in TestE2EAPIHardening
// (PARLEY_TEST_LOGIN_BACKOFF): long enough for a restart to fall well
// inside it.
const loginBackoff = 10 * time.Second

// TestE2EAPIHardening checks a few of the API's defences over the real
// binary (the api package's tests cover them all), and that the login
// throttle survives a restart.
func TestE2EAPIHardening(t *testing.T) {
	t.Parallel()
	a := startProc(t, "alice", t.TempDir(), nil, "", "PARLEY_TEST_LOGIN_BACKOFF="+loginBackoff.String())
	a.register("Alice")
	port := a.url[strings.LastIndex(a.url, ":")+1:]
	valid := map[string]string{"to": a.userID, "text": "hi"}

	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   any
		hdr    map[string]string
		status int
		code   string
	}{
		{"missing token", "GET", "/api/v1/me", nil, map[string]string{"Authorization": ""}, 401, "unauthorized"},
		{"wrong token", "GET", "/api/v1/me", nil, map[string]string{"Authorization": "Bearer nope"}, 401, "unauthorized"},
		{"foreign Host", "GET", "/api/v1/me", nil, map[string]string{"Host": "evil.example:" + port}, 403, "forbidden"},
		{"foreign Host, public route", "GET", "/api/v1/health", nil, map[string]string{"Host": "attacker.test"}, 403, "forbidden"},
		{"foreign Origin", "POST", "/api/v1/send_message", valid, map[string]string{"Origin": "http://evil.example"}, 403, "forbidden"},
		{"other port as Origin", "GET", "/api/v1/me", nil, map[string]string{"Origin": "http://127.0.0.1:1"}, 403, "forbidden"},
		{"GET on send_message", "GET", "/api/v1/send_message", nil, nil, 405, "method_not_allowed"},
		{"text/plain", "POST", "/api/v1/send_message", `{"to":"x","text":"hi"}`, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"unknown field", "POST", "/api/v1/send_message", `{"to":"` + a.userID + `","text":"hi","cc":"x"}`, nil, 400, "bad_request"},
		{"malformed user ID", "GET", "/api/v1/get_messages?with=nobody", nil, nil, 400, "bad_request"},
		{"unknown route", "GET", "/api/v1/nothing", nil, nil, 404, "not_found"},
	} {
		resp, body := a.call(tc.method, tc.path, tc.body, tc.hdr)
		if resp.StatusCode != tc.status || errorCode(body) != tc.code {
			t.Errorf("%s: %s %s = %d %s, want %d %s", tc.name, tc.method, tc.path, resp.StatusCode, body, tc.status, tc.code)
		}
		if tc.status == 405 && resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s: Allow = %q, want POST", tc.name, resp.Header.Get("Allow"))
		}
	}

	login := func(p *proc, pass string) (*http.Response, []byte) {
		return p.call("POST", "/api/v1/login", map[string]string{"passphrase": pass}, map[string]string{"Authorization": ""})
	}
	// Five wrong passphrases are answered as such; the fifth starts a
	// wait of loginBackoff, in which even the right one is refused.
	for i := range 5 {
		resp, body := login(a, fmt.Sprintf("wrong passphrase %d", i))
		if resp.StatusCode != 401 || errorCode(body) != "bad_passphrase" {
			t.Fatalf("wrong passphrase %d: %d %s", i, resp.StatusCode, body)
		}
	}
	sent := time.Now()
	resp, body := login(a, testPass)
	received := time.Now()
	if resp.StatusCode != 429 || errorCode(body) != "throttled" {
		t.Fatalf("after five wrong passphrases: %d %s, want 429 throttled", resp.StatusCode, body)
	}
	ra := retryAfter(t, resp)
	if ra < 1 || ra > int(loginBackoff/time.Second) {
		t.Fatalf("Retry-After %d after five wrong passphrases, want 1 to %d", ra, int(loginBackoff/time.Second))
	}
	// The node measured the wait between sent and received and rounded
	// it up to whole seconds: the window ends by windowEnd, and not
	// before earliestEnd.
	windowEnd := received.Add(time.Duration(ra) * time.Second)
	earliestEnd := sent.Add(time.Duration(ra-1) * time.Second)

	// The throttle survives a restart.
	a = a.restart(false)
	if st := a.state(); st != "locked" {
		t.Fatalf("state after restart %q, want locked", st)
	}
	// The locked node says whose it is (the login screen shows it).
	var h api.Health
	a.must("GET", "/api/v1/health", nil, http.StatusOK, &h)
	if h.UserID != a.userID || h.Name == "" {
		t.Errorf("health of the locked node %+v, want its owner's name and user ID %s", h, a.userID)
	}
	sent = time.Now()
	left := windowEnd.Sub(sent)
	if left <= 0 {
		t.Fatalf("the restart took longer than the throttle's window (%v)", loginBackoff)
	}
	resp, body = login(a, testPass)
	if resp.StatusCode != 429 || errorCode(body) != "throttled" {
		t.Fatalf("right passphrase after the restart, %v before the window's end: %d %s, want 429", left, resp.StatusCode, body)
	}
	if ra := retryAfter(t, resp); ra < 1 || ra > int(math.Ceil(left.Seconds())) {
		t.Errorf("Retry-After %d after the restart, want 1 to %d (at most the %v left of the window)",
			ra, int(math.Ceil(left.Seconds())), left)
	}

	// Poll until the right passphrase works; never before the window ends.
	var tok struct {
		Token string `json:"token"`
	}
	var worked time.Time
	waitFor(t, waitTimeout, "the right passphrase works after the window", func() bool {
		resp, body := login(a, testPass)
		if resp.StatusCode == 429 {
			return false
		}
		worked = time.Now()
		if resp.StatusCode != 200 {
			t.Fatalf("right passphrase after the window: %d %s", resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, &tok); err != nil || tok.Token == "" {
			t.Fatalf("login answer %s", body)
		}
		return true
	})
	if worked.Before(earliestEnd) {
		t.Errorf("the right passphrase worked %v before the throttle's window ended (Retry-After %d, 1 s rounding allowed)",
			earliestEnd.Sub(worked), ra)
	}
	a.token = tok.Token
	var me api.Me
	a.must("GET", "/api/v1/me", nil, http.StatusOK, &me)
	if me.UserID != a.userID {
		t.Errorf("me %s, want %s", me.UserID, a.userID)
	}
	if strings.Contains(a.stderr.String(), testPass) {
		t.Error("the log shows the passphrase")
	}
}

// TestE2ETestSettings checks that the binary under test has the test-only
// settings compiled in (the parleytest tag): it reads them, and refuses a
// bad value as a usage error (exit 2) instead of starting.
func TestE2ETestSettings(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, parleyBinary(t), "run", "--data-dir", t.TempDir(), "--api", "127.0.0.1:0",
		"--listen", "/ip4/127.0.0.1/tcp/0")
	cmd.Env = childEnv("PARLEY_TEST_LOGIN_BACKOFF=soon")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "PARLEY_TEST_LOGIN_BACKOFF") {
		t.Fatalf("parley run with a bad PARLEY_TEST_LOGIN_BACKOFF: %v, output:\n%s\nwant exit 2 naming the variable", err, out)
	}
}

// retryAfter parses the Retry-After header (seconds).
func retryAfter(t *testing.T, resp *http.Response) int {
	t.Helper()
	n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil {
		t.Fatalf("Retry-After %q: %v", resp.Header.Get("Retry-After"), err)
	}
	return n
}
