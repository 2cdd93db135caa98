package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultAddr is the address the API listens on unless told otherwise.
const DefaultAddr = "127.0.0.1:7733"

// DefaultTokenIdle is how long a token stays valid without being used.
const DefaultTokenIdle = 12 * time.Hour

// DefaultTokenLifetime is how long a token stays valid after login, even
// when it is used all the time.
const DefaultTokenLifetime = 12 * time.Hour

// ErrNotLoopback is returned by Serve and Listen for an address that is not
// a loopback address when no TLS configuration is given.
var ErrNotLoopback = errors.New("api: refusing to serve on a non-loopback address without TLS")

// Timeouts of the HTTP server and the WebSocket.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 10 * time.Second

	wsAuthTimeout  = 10 * time.Second
	wsPingInterval = 30 * time.Second
	wsPingTimeout  = 15 * time.Second
	wsWriteTimeout = 10 * time.Second
)

// Options configure a Server. The zero value serves plain HTTP on loopback
// with no web UI.
type Options struct {
	// Logger receives errors and debug notes; nil means slog.Default().
	// Tokens and passphrases are never logged.
	Logger *slog.Logger
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// TokenIdle is how long a token lives without use; 0 means
	// DefaultTokenIdle.
	TokenIdle time.Duration
	// TokenLifetime is how long a token lives after login, used or not;
	// 0 means DefaultTokenLifetime.
	TokenLifetime time.Duration
	// TLS, when set, makes Serve speak HTTPS (it wraps the listener) and
	// allows a listener on a non-loopback address. It needs a certificate
	// (Certificates, GetCertificate or GetConfigForClient).
	TLS *tls.Config
	// AllowedHosts are extra exact Host header values the server accepts
	// besides 127.0.0.1:PORT, localhost:PORT and [::1]:PORT, as browsers
	// send them: "chat.example.org" for a TLS deployment on port 443
	// (browsers omit the default port from Host and Origin, and
	// "chat.example.org:443" would then not match), "chat.example.org:7733"
	// on another port. Only with TLS.
	AllowedHosts []string
	// UI holds the built web UI (index.html and assets/); nil serves none.
	UI fs.FS
	// Auditor, if set, records logins, tokens and other security events
	// (ops_routes.go).
	Auditor Auditor
}

// Server is the local HTTP API of one node. Create it with New and run it
// with Serve.
type Server struct {
	node         Node
	log          *slog.Logger
	tokens       *tokenStore
	tls          *tls.Config
	allowedHosts []string
	ui           fs.FS
	routes       []route
	auditor      Auditor
	// crossOrigin refuses cross-origin browser requests with unsafe
	// methods by Sec-Fetch-Site (and Origin for older browsers).
	crossOrigin *http.CrossOriginProtection

	// WebSocket timing, fields so that tests can shorten them.
	wsAuthTimeout  time.Duration
	wsPingInterval time.Duration
	wsPingTimeout  time.Duration
}

// New checks opts and returns a Server for node.
func New(node Node, opts Options) (*Server, error) {
	if node == nil {
		return nil, errors.New("api: nil node")
	}
	if opts.TokenIdle < 0 {
		return nil, fmt.Errorf("api: negative TokenIdle %v", opts.TokenIdle)
	}
	idle := opts.TokenIdle
	if idle == 0 {
		idle = DefaultTokenIdle
	}
	if opts.TokenLifetime < 0 {
		return nil, fmt.Errorf("api: negative TokenLifetime %v", opts.TokenLifetime)
	}
	lifetime := opts.TokenLifetime
	if lifetime == 0 {
		lifetime = DefaultTokenLifetime
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	var tlsConf *tls.Config
	if opts.TLS != nil {
		if len(opts.TLS.Certificates) == 0 && opts.TLS.GetCertificate == nil && opts.TLS.GetConfigForClient == nil {
			return nil, errors.New("api: TLS config has no certificate")
		}
		tlsConf = opts.TLS.Clone()
		if tlsConf.MinVersion < tls.VersionTLS12 {
			tlsConf.MinVersion = tls.VersionTLS12
		}
	}
	if len(opts.AllowedHosts) > 0 && tlsConf == nil {
		return nil, errors.New("api: AllowedHosts needs TLS")
	}
	for _, h := range opts.AllowedHosts {
		if err := checkHostValue(h); err != nil {
			return nil, fmt.Errorf("api: allowed host %q: %w", h, err)
		}
	}
	s := &Server{
		node:           node,
		log:            logger,
		tokens:         newTokenStore(now, idle, lifetime),
		tls:            tlsConf,
		allowedHosts:   append([]string(nil), opts.AllowedHosts...),
		ui:             opts.UI,
		auditor:        opts.Auditor,
		wsAuthTimeout:  wsAuthTimeout,
		wsPingInterval: wsPingInterval,
		wsPingTimeout:  wsPingTimeout,
	}
	s.routes = s.routeTable()
	s.crossOrigin = http.NewCrossOriginProtection()
	return s, nil
}

// checkHostValue accepts a Host header value: a host name or IP literal,
// optionally with a port, and nothing else.
func checkHostValue(h string) error {
	host := h
	if strings.Contains(h, ":") {
		hh, port, err := net.SplitHostPort(h)
		if err != nil {
			return err
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
		host = hh
	}
	if host == "" {
		return errors.New("empty host")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bad character %q in host name", c)
		}
	}
	return nil
}

// Serve answers API requests on ln until ctx ends, then shuts down
// gracefully: it stops accepting, lets running requests finish (up to 10
// s), closes open WebSockets, and returns nil. It refuses, with
// ErrNotLoopback, a listener on a non-loopback address unless Options.TLS
// is set; with TLS it wraps ln in a TLS listener. Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	port, loopback, err := listenerPort(ln.Addr())
	if err != nil {
		ln.Close()
		return err
	}
	if !loopback && s.tls == nil {
		ln.Close()
		return fmt.Errorf("%w: %s", ErrNotLoopback, ln.Addr())
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	h := s.newHandler(port)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// "OPTIONS *" too goes through the Host check (and gets a 405).
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("api: serving", "addr", ln.Addr().String(), "tls", s.tls != nil)

	select {
	case err := <-errc:
		// Accepting failed: close what is left (idle keep-alive
		// connections, running requests, WebSockets) rather than let it
		// outlive Serve.
		srv.Close()
		h.closeSockets()
		return fmt.Errorf("api: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	h.closeSockets()
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("api: shutdown did not finish in time", "err", err)
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	return nil
}

// listenerPort returns the port of a listener's address and whether it is
// a loopback address.
func listenerPort(a net.Addr) (port int, loopback bool, err error) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port, ta.IP.IsLoopback(), nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return 0, false, fmt.Errorf("api: listener address %q is not a TCP address: %w", a, err)
	}
	return int(ap.Port()), ap.Addr().Unmap().IsLoopback(), nil
}

// Listen opens a TCP listener on addr ("" means DefaultAddr). Without
// tlsConf it refuses, with ErrNotLoopback and before binding, an address
// that is not a loopback IP or "localhost". It does not wrap the listener
// in TLS: Serve does that when Options.TLS is set.
func Listen(addr string, tlsConf *tls.Config) (net.Listener, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen address %q: %w", addr, err)
	}
	if tlsConf == nil && !isLoopbackHost(host) {
		return nil, fmt.Errorf("%w: %s", ErrNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listening on %s: %w", addr, err)
	}
	if tlsConf == nil {
		if _, loopback, err := listenerPort(ln.Addr()); err != nil || !loopback {
			ln.Close()
			return nil, fmt.Errorf("%w: %s resolved to %s", ErrNotLoopback, addr, ln.Addr())
		}
	}
	return ln, nil
}

// isLoopbackHost reports whether host is a loopback IP literal or
// "localhost".
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// handler is the http.Handler of one listener: the port its Host check
// accepts and the WebSockets it has open.
type handler struct {
	s     *Server
	port  int
	hosts []string // accepted Host values

	mux *http.ServeMux // the API's routes

	mu      sync.Mutex
	closing bool
	stop    chan struct{} // closed to close every WebSocket
	sockets sync.WaitGroup
}

func (s *Server) newHandler(port int) *handler {
	p := strconv.Itoa(port)
	hosts := []string{"127.0.0.1:" + p, "localhost:" + p, "[::1]:" + p}
	hosts = append(hosts, s.allowedHosts...)
	h := &handler{s: s, port: port, hosts: hosts, stop: make(chan struct{})}
	h.mux = h.newMux()
	return h
}

// closeSockets closes every open WebSocket and waits for them to end.
func (h *handler) closeSockets() {
	h.mu.Lock()
	if !h.closing {
		h.closing = true
		close(h.stop)
	}
	h.mu.Unlock()
	h.sockets.Wait()
}

// addSocket registers a WebSocket about to open; false when shutting down.
func (h *handler) addSocket() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.sockets.Add(1)
	return true
}

// ServeHTTP runs the guards every request passes, in order (the Host check
// first), then routes the request to the API or to the web UI.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-store") // the UI's files set their own
	if !h.hostAllowed(r.Host) {
		writeErrorBody(w, http.StatusForbidden, CodeForbidden, "host not allowed")
		return
	}
	if err := h.s.crossOrigin.Check(r); err != nil {
		writeErrorBody(w, http.StatusForbidden, CodeForbidden, "cross-origin request refused")
		return
	}
	if !originAllowed(r) {
		writeErrorBody(w, http.StatusForbidden, CodeForbidden, "origin not allowed")
		return
	}
	if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") {
		h.serveAPI(w, r)
		return
	}
	h.s.serveUI(w, r)
}

// writeJSON writes v as a JSON answer with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own answer types are marshalled: this is a bug.
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
