package main

// Helpers of the end-to-end tests (e2e_test.go): they build the parley
// binary once, with the parleytest tag, run it as child processes on
// 127.0.0.1 with cheap test-only settings, and talk to them over HTTP and
// WebSocket as the web UI does.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/api"
)

var bin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

// buildTags are the tags of the binary the end-to-end tests run: as make
// test builds (noassets: no web UI to embed), plus parleytest, which
// compiles in the test-only settings (testsettings_on.go) the tests use.
const buildTags = "noassets,parleytest"

// parleyBinary builds the parley binary once per test run (with buildTags,
// without -race) and returns its path. End-to-end tests skip in -short
// mode.
func parleyBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	bin.once.Do(func() {
		bin.dir, bin.err = os.MkdirTemp("", "parley-e2e-bin-")
		if bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "parley")
		goTool, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
		if err != nil {
			bin.err = err
			return
		}
		cmd := exec.Command(goTool, "build", "-tags", buildTags, "-o", bin.path, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			bin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if bin.err != nil {
		t.Fatalf("building parley: %v", bin.err)
	}
	return bin.path
}

// Timeouts of the end-to-end tests: generous, since every wait polls (every
// pollEvery) and ends as soon as its condition holds.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 20 * time.Second
	waitTimeout  = 30 * time.Second
)

// childEnv is the environment of a parley child: this process's without
// any PARLEY_ variable, plus the cheap test-only settings (the variables
// of testsettings_on.go, named here since a test build without the
// parleytest tag lacks their constants) and extra ("NAME=value").
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	env = append(env, "PARLEY_TEST_KDF=cheap", "PARLEY_TEST_KEY_BITS=2048", envLogLevel+"=debug")
	return append(env, extra...)
}

// proc is one `parley run` child process and an API client for it.
type proc struct {
	t       testing.TB
	name    string
	dataDir string
	url     string // http://127.0.0.1:PORT (no trailing slash)
	cmd     *exec.Cmd
	stdout  *syncBuffer
	stderr  *syncBuffer
	exited  chan struct{}
	waitErr error
	stopped bool
	http    *http.Client
	env     []string // extra environment ("NAME=value"), kept across restarts
	ns      string   // network namespace it runs in ("" for the test's own)

	// What the test learnt; kept across restarts.
	token    string
	userID   string
	invite   string
	listen   []string // libp2p listen addresses, reused by restart
	passFile string
}

var runningLine = regexp.MustCompile(`(?m)^Parley is running: open (http://127\.0\.0\.1:[0-9]+)/$`)

// startProc starts `parley run` on dataDir with the API on a free port;
// listen are its libp2p listen addresses (a free loopback port when
// empty), passFile its --passphrase-file ("" for none), env extra
// environment variables ("NAME=value"). It returns once the URL line is
// printed; the process is stopped when the test ends.
func startProc(t testing.TB, name, dataDir string, listen []string, passFile string, env ...string) *proc {
	t.Helper()
	return startProcIn(t, "", name, dataDir, listen, passFile, env...)
}

// startProcIn is startProc with the process in network namespace ns
// (none when ""); its API is then reached through a client that dials
// inside ns (natlab_test.go).
func startProcIn(t testing.TB, ns, name, dataDir string, listen []string, passFile string, env ...string) *proc {
	t.Helper()
	args := []string{"run", "--data-dir", dataDir, "--api", "127.0.0.1:0"}
	if len(listen) == 0 {
		listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	for _, l := range listen {
		args = append(args, "--listen", l)
	}
	if passFile != "" {
		args = append(args, "--passphrase-file", passFile)
	}
	p := &proc{
		t: t, name: name, dataDir: dataDir, passFile: passFile, env: env, ns: ns,
		cmd:    exec.Command(parleyBinary(t), args...),
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{}),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}},
	}
	if ns != "" {
		p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, p.cmd.Path}, args...)...)
		p.http = nsHTTPClient(ns)
	}
	p.cmd.Env = childEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: starting parley: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.stopped {
			p.stop()
		}
		if t.Failed() {
			t.Logf("%s: stdout:\n%s\n%s: stderr:\n%s", name, p.stdout, name, p.stderr)
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		if m := runningLine.FindStringSubmatch(p.stdout.String()); m != nil {
			p.url = m[1]
			break
		}
		select {
		case <-p.exited:
			p.stopped = true
			t.Fatalf("%s: parley exited before serving: %v\nstderr:\n%s", name, p.waitErr, p.stderr)
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no URL line after %v; stdout:\n%s", name, startTimeout, p.stdout)
		}
	}
	return p
}

// stop sends SIGTERM and waits for a clean exit (status 0). A process
// that does not exit in time is killed, and the test fails.
func (p *proc) stop() {
	p.t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	defer p.http.CloseIdleConnections()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Errorf("%s: SIGTERM: %v", p.name, err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			p.t.Errorf("%s: parley did not exit cleanly after SIGTERM: %v", p.name, p.waitErr)
		}
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.exited
		p.t.Errorf("%s: parley did not exit within %v of SIGTERM; killed", p.name, stopTimeout)
	}
}

// restart stops p and starts parley again on the same data directory and
// libp2p addresses; with the passphrase file when usePassFile (then it
// logs in over the API for a token), else it comes up locked.
func (p *proc) restart(usePassFile bool) *proc {
	p.t.Helper()
	p.stop()
	pass := ""
	if usePassFile {
		pass = p.passFile
	}
	q := startProcIn(p.t, p.ns, p.name, p.dataDir, p.listen, pass, p.env...)
	q.userID, q.invite, q.listen, q.passFile = p.userID, p.invite, p.listen, p.passFile
	if usePassFile {
		if st := q.state(); st != "unlocked" {
			p.t.Fatalf("%s: state %q after a start with the passphrase file", p.name, st)
		}
		q.login()
	}
	return q
}

// call sends a request to the API. body is nil, a string (sent as is)
// or a value sent as JSON. hdr adds or replaces headers; the bearer
// token is set when the process has one, unless hdr says otherwise.
func (p *proc) call(method, path string, body any, hdr map[string]string) (*http.Response, []byte) {
	p.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			p.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, p.url+path, r)
	if err != nil {
		p.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	for k, v := range hdr {
		switch {
		case k == "Host":
			req.Host = v
		case v == "":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
	resp, err := p.http.Do(req)
	if err != nil {
		p.t.Fatalf("%s: %s %s: %v", p.name, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("%s: %s %s: reading the answer: %v", p.name, method, path, err)
	}
	return resp, b
}

// must sends a request that must answer status, and decodes the answer
// into out (when not nil).
func (p *proc) must(method, path string, body any, status int, out any) {
	p.t.Helper()
	resp, b := p.call(method, path, body, nil)
	if resp.StatusCode != status {
		p.t.Fatalf("%s: %s %s = %s %s, want %d", p.name, method, path, resp.Status, b, status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			p.t.Fatalf("%s: %s %s: decoding %s: %v", p.name, method, path, b, err)
		}
	}
}

// errorCode returns the code of a JSON error answer.
func errorCode(b []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	return e.Error.Code
}

func (p *proc) state() string {
	var h struct {
		State string `json:"state"`
	}
	p.must("GET", "/api/v1/health", nil, http.StatusOK, &h)
	return h.State
}

// register registers name with testPass, writes the passphrase file for
// later restarts, and learns the user ID, invite and listen addresses.
func (p *proc) register(name string) {
	p.t.Helper()
	var r struct {
		Token  string `json:"token"`
		UserID string `json:"user_id"`
	}
	p.must("POST", "/api/v1/register", map[string]string{"name": name, "passphrase": testPass}, http.StatusCreated, &r)
	p.token = r.Token
	var me api.Me
	p.must("GET", "/api/v1/me", nil, http.StatusOK, &me)
	if me.UserID != r.UserID || me.Invite == "" || len(me.Addrs) == 0 {
		p.t.Fatalf("%s: me = %+v after registering %s", p.name, me, r.UserID)
	}
	p.userID, p.invite = me.UserID, me.Invite
	p.listen = nil
	for _, a := range me.Addrs {
		listen, _, ok := strings.Cut(a, "/p2p/")
		if !ok {
			p.t.Fatalf("%s: address %q in me has no /p2p/ part", p.name, a)
		}
		p.listen = append(p.listen, listen)
	}
	p.passFile = filepath.Join(p.t.TempDir(), "passphrase")
	if err := os.WriteFile(p.passFile, []byte(testPass+"\n"), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// login gets a token with the right passphrase.
func (p *proc) login() {
	p.t.Helper()
	var r struct {
		Token  string `json:"token"`
		UserID string `json:"user_id"`
	}
	p.must("POST", "/api/v1/login", map[string]string{"passphrase": testPass}, http.StatusOK, &r)
	if r.UserID != p.userID {
		p.t.Fatalf("%s: logged in as %s, want %s", p.name, r.UserID, p.userID)
	}
	p.token = r.Token
}

func (p *proc) friends() []api.Friend {
	p.t.Helper()
	var r struct {
		Friends []api.Friend `json:"friends"`
	}
	p.must("GET", "/api/v1/friends", nil, http.StatusOK, &r)
	return r.Friends
}

func (p *proc) friendStatus(userID string) string {
	for _, f := range p.friends() {
		if f.UserID == userID {
			return f.Status
		}
	}
	return ""
}

// befriend makes a and b friends the way two users do: a adds b's
// invite, b sees the request and accepts it by user ID.
func befriend(t testing.TB, a, b *proc) {
	t.Helper()
	var f api.Friend
	a.must("POST", "/api/v1/friends", map[string]string{"invite": b.invite}, http.StatusCreated, &f)
	if f.UserID != b.userID || f.Status != "pending_out" {
		t.Fatalf("a added b: %+v", f)
	}
	waitFor(t, waitTimeout, "b sees a's request", func() bool { return b.friendStatus(a.userID) == "pending_in" })
	b.must("POST", "/api/v1/friends", map[string]string{"user_id": a.userID}, http.StatusCreated, &f)
	if f.Status != "accepted" {
		t.Fatalf("b accepted a: %+v", f)
	}
	waitFor(t, waitTimeout, "a sees b's accept", func() bool { return a.friendStatus(b.userID) == "accepted" })
}

// startPair starts two fresh processes, registers them and makes them
// friends.
func startPair(t testing.TB) (a, b *proc) {
	t.Helper()
	a = startProc(t, "alice", t.TempDir(), nil, "")
	b = startProc(t, "bob", t.TempDir(), nil, "")
	a.register("Alice")
	b.register("Bob")
	befriend(t, a, b)
	return a, b
}

// send sends text to a user and returns the message ID.
func (p *proc) send(to, text string) string {
	p.t.Helper()
	var r struct {
		ID     string `json:"msg_id"`
		Status string `json:"status"`
	}
	p.must("POST", "/api/v1/send_message", map[string]string{"to": to, "text": text}, http.StatusAccepted, &r)
	if r.ID == "" || r.Status != "pending" {
		p.t.Fatalf("%s: send_message answered %+v", p.name, r)
	}
	return r.ID
}

// messages returns the whole conversation with a user, newest first,
// following get_messages' next cursor page by page.
func (p *proc) messages(with string) []api.Message {
	p.t.Helper()
	var all []api.Message
	before := ""
	for range 1000 {
		path := "/api/v1/get_messages?limit=50&with=" + with
		if before != "" {
			path += "&before=" + before
		}
		var page struct {
			Messages []api.Message `json:"messages"`
			Next     *string       `json:"next"`
		}
		p.must("GET", path, nil, http.StatusOK, &page)
		all = append(all, page.Messages...)
		if page.Next == nil {
			return all
		}
		before = *page.Next
	}
	p.t.Fatalf("%s: get_messages does not end", p.name)
	return nil
}

// split returns the messages of one direction, oldest first.
func split(ms []api.Message, direction string) []api.Message {
	var out []api.Message
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Direction == direction {
			out = append(out, ms[i])
		}
	}
	return out
}

// openEvents opens the events WebSocket with the API's own Origin and
// authenticates with a first message, as the browser does.
func (p *proc) openEvents(ctx context.Context) *websocket.Conn {
	p.t.Helper()
	u := "ws" + strings.TrimPrefix(p.url, "http") + "/api/v1/events"
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {p.url}}})
	if err != nil {
		p.t.Fatalf("%s: events socket: %v", p.name, err)
	}
	p.t.Cleanup(func() { c.CloseNow() })
	auth, _ := json.Marshal(map[string]string{"type": "auth", "token": p.token})
	if err := c.Write(ctx, websocket.MessageText, auth); err != nil {
		p.t.Fatalf("%s: events auth: %v", p.name, err)
	}
	if ev := readEvent(p.t, ctx, c); ev.Type != "ready" {
		p.t.Fatalf("%s: first event %q, want ready", p.name, ev.Type)
	}
	return c
}

// wsEvent is one message of the events socket.
type wsEvent struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func readEvent(t testing.TB, ctx context.Context, c *websocket.Conn) wsEvent {
	t.Helper()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("reading the events socket: %v", err)
	}
	var ev wsEvent
	if typ != websocket.MessageText || json.Unmarshal(b, &ev) != nil {
		t.Fatalf("events socket sent %v %q", typ, b)
	}
	return ev
}

// filesContaining lists the files under dir whose bytes contain needle.
func filesContaining(t testing.TB, dir string, needle []byte) (hits []string, scanned int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		if bytes.Contains(b, needle) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits, scanned
}
