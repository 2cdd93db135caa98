package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/api/apitest"
)

// fakeClock is an injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testServer is a Server running with Serve on a real 127.0.0.1 listener.
type testServer struct {
	t      *testing.T
	s      *Server
	node   *fakeNode
	clock  *fakeClock
	logs   *syncBuffer
	port   int
	base   string // http://127.0.0.1:PORT, also the own origin
	client *http.Client
	stop   func() error // ends Serve and returns what it returned
}

// startServer runs a Server for node until the test ends. opts.Now and
// opts.Logger are filled in when nil; tweak may change the Server before
// it serves.
func startServer(t *testing.T, node *fakeNode, opts Options, tweak ...func(*Server)) *testServer {
	t.Helper()
	clock := newFakeClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(node, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range tweak {
		f(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	scheme := "http"
	transport := &http.Transport{Proxy: nil}
	if opts.TLS != nil {
		scheme = "https"
	}
	ts := &testServer{
		t: t, s: s, node: node, clock: clock, logs: logs, port: port,
		base:   scheme + "://127.0.0.1:" + strconv.Itoa(port),
		client: &http.Client{Transport: transport, Timeout: 10 * time.Second},
	}
	var once sync.Once
	var serveErr error
	ts.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(20 * time.Second):
				serveErr = errors.New("Serve did not return within 20 s of cancel")
			}
			transport.CloseIdleConnections()
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		assertNoSecretsLogged(t, logs.String())
	})
	return ts
}

// assertNoSecretsLogged checks the log for the test passphrase.
func assertNoSecretsLogged(t *testing.T, logs string) {
	t.Helper()
	if strings.Contains(logs, testPassphrase) {
		t.Errorf("log holds the passphrase:\n%s", logs)
	}
}

// call is one HTTP request of a test.
type call struct {
	method, path string
	body         string
	token        string
	header       map[string]string // set after the defaults
	noCT         bool              // send no Content-Type even with a body
	host         string            // the Host header, if not the URL's
}

// answer is a response with its body read.
type answer struct {
	*http.Response
	body []byte
}

// do sends c; a body is sent as application/json unless c says otherwise.
func (ts *testServer) do(c call) answer {
	ts.t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, ts.base+c.path, body)
	if err != nil {
		ts.t.Fatalf("request: %v", err)
	}
	if c.body != "" && !c.noCT {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatalf("%s %s: reading body: %v", c.method, c.path, err)
	}
	return answer{resp, b}
}

// errCode returns the code of a JSON error answer, "" if it is not one.
func (a answer) errCode() Code {
	var e ErrorResponse
	if json.Unmarshal(a.body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// expect checks the status and, for an error, the code.
func (a answer) expect(t *testing.T, status int, code Code) {
	t.Helper()
	if a.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", a.Request.Method, a.Request.URL.Path, a.StatusCode, status, a.body)
	}
	if code != "" {
		if got := a.errCode(); got != code {
			t.Fatalf("%s %s: code %q, want %q; body %s", a.Request.Method, a.Request.URL.Path, got, code, a.body)
		}
		if ct := a.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("error answer Content-Type %q", ct)
		}
	}
}

// decode decodes the body into v.
func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
}

// login logs in with the test passphrase and returns the token.
func (ts *testServer) login() string {
	ts.t.Helper()
	a := ts.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":"` + testPassphrase + `"}`})
	a.expect(ts.t, http.StatusOK, "")
	var out struct{ Token string }
	a.decode(ts.t, &out)
	if out.Token == "" {
		ts.t.Fatalf("login gave no token: %s", a.body)
	}
	return out.Token
}

// waitFor waits until cond holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestNewValidatesOptions(t *testing.T) {
	cert := selfSignedCert(t)
	for _, tc := range []struct {
		name string
		node Node
		opts Options
	}{
		{"nil node", nil, Options{}},
		{"negative TokenIdle", newFakeNode(StateNew), Options{TokenIdle: -time.Second}},
		{"TLS without certificate", newFakeNode(StateNew), Options{TLS: &tls.Config{}}},
		{"AllowedHosts without TLS", newFakeNode(StateNew), Options{AllowedHosts: []string{"chat.example.org"}}},
		{"AllowedHosts with a scheme", newFakeNode(StateNew), Options{TLS: cert, AllowedHosts: []string{"https://chat.example.org"}}},
		{"AllowedHosts with a wildcard", newFakeNode(StateNew), Options{TLS: cert, AllowedHosts: []string{"*.example.org"}}},
		{"AllowedHosts empty", newFakeNode(StateNew), Options{TLS: cert, AllowedHosts: []string{""}}},
		{"AllowedHosts bad port", newFakeNode(StateNew), Options{TLS: cert, AllowedHosts: []string{"chat.example.org:99999"}}},
	} {
		if _, err := New(tc.node, tc.opts); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	s, err := New(newFakeNode(StateNew), Options{TLS: cert, AllowedHosts: []string{"chat.example.org", "chat.example.org:8443", "192.0.2.1:7733"}})
	if err != nil {
		t.Fatalf("New with valid options: %v", err)
	}
	if s.tls.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLS MinVersion %x, want at least TLS 1.2", s.tls.MinVersion)
	}
	if cert.MinVersion != 0 {
		t.Errorf("New changed the caller's tls.Config")
	}
}

// fakeListener is a listener that claims any address and accepts nothing
// until closed; it binds no socket.
type fakeListener struct {
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func newFakeListener(addr string) *fakeListener {
	return &fakeListener{addr: net.TCPAddrFromAddrPort(netipMustParse(addr)), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return l.addr }

func (l *fakeListener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

func TestServeRefusesNonLoopbackWithoutTLS(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:7733", "[::]:7733", "192.0.2.1:7733", "[2001:db8::1]:7733"} {
		s, err := New(newFakeNode(StateNew), Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ln := newFakeListener(addr)
		err = s.Serve(context.Background(), ln)
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Serve on %s: %v, want ErrNotLoopback", addr, err)
		}
		if !ln.isClosed() {
			t.Errorf("Serve on %s left the listener open", addr)
		}
	}
}

func TestServeNonLoopbackWithTLS(t *testing.T) {
	s, err := New(newFakeNode(StateNew), Options{TLS: selfSignedCert(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln := newFakeListener("0.0.0.0:7733")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if !ln.isClosed() {
		t.Error("listener not closed after Serve")
	}
}

func TestListen(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0", "192.0.2.1:0", "example.com:0"} {
		ln, err := Listen(addr, nil)
		if !errors.Is(err, ErrNotLoopback) {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("Listen(%q): %v, want ErrNotLoopback", addr, err)
		}
	}
	if _, err := Listen("127.0.0.1", nil); err == nil || errors.Is(err, ErrNotLoopback) {
		t.Errorf("Listen without a port: %v, want an address error", err)
	}
	ln, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("Listen on loopback: %v", err)
	}
	defer ln.Close()
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("listening on %v", ip)
	}
	if DefaultAddr != "127.0.0.1:7733" {
		t.Errorf("DefaultAddr %q", DefaultAddr)
	}
}

func TestServeReturnsNilOnCancel(t *testing.T) {
	ts := startServer(t, newFakeNode(StateNew), Options{})
	ts.do(call{method: "GET", path: "/api/v1/health"}).expect(t, http.StatusOK, "")
	if err := ts.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := ts.client.Get(ts.base + "/api/v1/health"); err == nil {
		t.Fatal("server still answers after Serve returned")
	}
}

// selfSignedCert returns a TLS config with a fresh certificate for
// 127.0.0.1.
func selfSignedCert(t *testing.T) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{apitest.SelfSignedCert(t).TLS}}
}

func TestServeTLS(t *testing.T) {
	conf := selfSignedCert(t)
	// On port 443 browsers send Host and Origin without the port, so that
	// is how AllowedHosts names such a host.
	ts := startServer(t, newFakeNode(StateNew), Options{TLS: conf, AllowedHosts: []string{"chat.example.org"}})
	leaf, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	ts.client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	ts.do(call{method: "GET", path: "/api/v1/health"}).expect(t, http.StatusOK, "")
	ts.do(call{method: "GET", path: "/api/v1/health", host: "chat.example.org"}).expect(t, http.StatusOK, "")
	// The match is exact: the same host with an explicit port is another.
	ts.do(call{method: "GET", path: "/api/v1/health", host: "chat.example.org:443"}).expect(t, http.StatusForbidden, CodeForbidden)
	// With TLS the own origin is https.
	ts.do(call{method: "GET", path: "/api/v1/health", header: map[string]string{"Origin": ts.base}}).expect(t, http.StatusOK, "")
	ts.do(call{method: "GET", path: "/api/v1/health", header: map[string]string{"Origin": "http://127.0.0.1:" + strconv.Itoa(ts.port)}}).expect(t, http.StatusForbidden, CodeForbidden)
	ts.do(call{method: "GET", path: "/api/v1/health", host: "chat.example.org", header: map[string]string{"Origin": "https://chat.example.org"}}).expect(t, http.StatusOK, "")
	ts.do(call{method: "GET", path: "/api/v1/health", host: "chat.example.org", header: map[string]string{"Origin": "http://chat.example.org"}}).expect(t, http.StatusForbidden, CodeForbidden)
}

// TestServeAcceptFailure checks that when accepting fails (here: the
// listener is closed under Serve), Serve returns the error and closes the
// connections it had, so that no keep-alive connection or handler
// outlives it.
func TestServeAcceptFailure(t *testing.T) {
	s, err := New(newFakeNode(StateNew), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), ln) }()

	// A keep-alive connection, idle after one answer.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /api/v1/health HTTP/1.1\r\nHost: "+ln.Addr().String()+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("health: %s, close %v; want 200 on a kept-alive connection", resp.Status, resp.Close)
	}

	ln.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve returned nil after its listener failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its listener failed")
	}
	// The idle connection was closed by the server: the read ends at
	// once with EOF, not at the deadline (the idle timeout is minutes).
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on the kept-alive connection after Serve returned: %d bytes, %v; want EOF", n, err)
	}
}
