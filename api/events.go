package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// CloseUnauthorized is the WebSocket close code of an events socket whose
// authentication was missing, bad or late, or whose token was logged out
// or expired. The socket also closes with the standard codes 1001 (server
// shutting down, or the node ended the stream), 1008 (the client sent a
// message after auth) and 1009 (an auth message over 4 KiB).
const CloseUnauthorized = 4401

// maxAuthMessage bounds the first (auth) message a client sends.
const maxAuthMessage = 4 << 10

// authMessage is the first message a client sends on the events socket
// when it did not authenticate the upgrade with a header.
type authMessage struct {
	Type  string `json:"type"`
	Token string `json:"token"`
}

// readyMessage tells the client the socket is authenticated and events
// follow.
var readyMessage = []byte(`{"type":"ready"}`)

// events serves GET /api/v1/events, the WebSocket of live events.
//
// The upgrade must carry an Origin, the API's own (a cross-site page
// cannot open it). The client authenticates with an "Authorization:
// Bearer" header on the upgrade (checked before it: 401), or else with a
// first text message {"type":"auth","token":"..."} within 10 s; a missing
// or bad token closes the socket with 4401. Then the server sends
// {"type":"ready"} and every event of node.Subscribe as {"type","data"}.
// It pings the client every 30 s, closes with 4401 when the token is
// logged out or expires, with 1001 on shutdown or when the node ends the
// subscription, and with 1008 when the client sends anything after auth.
func (s *Server) events(q *request) error {
	w, r := q.w, q.r
	// originAllowed has checked a present Origin; a WebSocket needs one,
	// since browsers always send it and only they need the defence.
	if r.Header.Get("Origin") == "" {
		return apiError(CodeForbidden, "WebSocket upgrade without Origin")
	}
	if !isWebSocketUpgrade(r) {
		return apiError(CodeBadRequest, "expected a WebSocket upgrade")
	}
	var lg *login
	if _, present := bearerToken(r); present {
		var err error
		if lg, err = s.authenticate(r); err != nil {
			return err
		}
	}
	if !q.h.addSocket() {
		return apiError(CodeUnavailable, "server is shutting down")
	}
	defer q.h.sockets.Done()

	// The Origin was checked above against our own origin, scheme
	// included, which is stricter than the library's host-only check.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		// Accept has answered the client already.
		s.log.Debug("api: events: upgrade failed", "err", err)
		return nil
	}
	c.SetReadLimit(maxAuthMessage) // over it, the library closes with 1009
	sock := newSocketReader(c)
	defer sock.stop()

	if lg == nil {
		var code websocket.StatusCode
		lg, code = s.socketAuth(q.h, sock)
		if lg == nil {
			if code != 0 {
				c.Close(code, closeReason(code))
			}
			return nil
		}
	}
	// The socket has a context of its own: the request's must not be used
	// after the hijack.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Subscribed before "ready", so that a client that acts once ready
	// misses no event of what it does.
	events, unsubscribe := s.node.Subscribe(ctx)
	defer unsubscribe()
	if err := writeWithTimeout(ctx, c, readyMessage); err != nil {
		return nil
	}
	s.streamEvents(ctx, q.h, sock, lg, events)
	return nil
}

func closeReason(code websocket.StatusCode) string {
	switch code {
	case CloseUnauthorized:
		return "unauthorized"
	case websocket.StatusGoingAway:
		return "server shutting down"
	default:
		return ""
	}
}

// socketReader reads a WebSocket in a goroutine of its own, without a
// context: coder/websocket closes the connection outright when a read's
// context ends, and the server wants to send a close frame with a code
// instead. Reading also answers pings and processes pongs and the close
// handshake, so it runs for the socket's whole life.
type socketReader struct {
	c    *websocket.Conn
	msgs chan socketMessage // data messages from the client
	done chan struct{}      // closed when reading ends (the socket is closed)
	quit chan struct{}      // closed by stop
}

type socketMessage struct {
	typ websocket.MessageType
	b   []byte
}

func newSocketReader(c *websocket.Conn) *socketReader {
	sr := &socketReader{c: c, msgs: make(chan socketMessage), done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(sr.done)
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			select {
			case sr.msgs <- socketMessage{typ, b}:
			case <-sr.quit:
				return
			}
		}
	}()
	return sr
}

// stop closes the connection (if the handshake has not) and waits for the
// reading goroutine to end.
func (sr *socketReader) stop() {
	close(sr.quit)
	sr.c.CloseNow()
	<-sr.done
}

// isWebSocketUpgrade reports whether r asks for a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// socketAuth waits for the first message, which must be a text auth
// message with a live token, for the auth timeout. It returns the login,
// or nil and the code to close the socket with (0 when it is closed
// already).
func (s *Server) socketAuth(h *handler, sock *socketReader) (*login, websocket.StatusCode) {
	timer := time.NewTimer(s.wsAuthTimeout)
	defer timer.Stop()
	var m socketMessage
	select {
	case m = <-sock.msgs:
	case <-timer.C:
		return nil, CloseUnauthorized
	case <-h.stop:
		return nil, websocket.StatusGoingAway
	case <-sock.done:
		return nil, 0
	}
	defer clear(m.b)
	if m.typ != websocket.MessageText {
		return nil, CloseUnauthorized
	}
	var am authMessage
	if err := json.Unmarshal(m.b, &am); err != nil || am.Type != "auth" || am.Token == "" {
		return nil, CloseUnauthorized
	}
	lg, ok := s.tokens.use(am.Token)
	if !ok {
		return nil, CloseUnauthorized
	}
	return lg, 0
}

// streamEvents forwards the node's events to the socket until the client
// goes, the token ends, the subscription ends or the server shuts down.
func (s *Server) streamEvents(ctx context.Context, h *handler, sock *socketReader, lg *login, events <-chan Event) {
	c := sock.c

	ticker := time.NewTicker(s.wsPingInterval)
	defer ticker.Stop()
	// A ping runs aside, so that a slow pong delays no event, logout or
	// shutdown; pinged is non-nil while one is in flight. It ends with ctx
	// at the latest.
	var pinged chan error
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				c.Close(websocket.StatusGoingAway, "event stream ended")
				return
			}
			b, err := json.Marshal(ev)
			if err != nil {
				s.log.Error("api: events: encoding an event", "type", ev.Type, "err", err)
				continue
			}
			if err := writeWithTimeout(ctx, c, b); err != nil {
				return
			}
		case <-ticker.C:
			if !s.tokens.alive(lg) {
				c.Close(CloseUnauthorized, "token expired")
				return
			}
			if pinged == nil {
				pinged = make(chan error, 1)
				go func(done chan<- error) {
					pctx, cancel := context.WithTimeout(ctx, s.wsPingTimeout)
					defer cancel()
					done <- c.Ping(pctx)
				}(pinged)
			}
		case err := <-pinged:
			pinged = nil
			if err != nil {
				s.log.Debug("api: events: client did not answer a ping", "err", err)
				return
			}
		case <-lg.done:
			c.Close(CloseUnauthorized, "logged out")
			return
		case <-h.stop:
			c.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-sock.msgs:
			c.Close(websocket.StatusPolicyViolation, "unexpected message")
			return
		case <-sock.done:
			return
		}
	}
}

// writeWithTimeout sends one text message.
func writeWithTimeout(ctx context.Context, c *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, b)
}
