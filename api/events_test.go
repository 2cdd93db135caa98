package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// dialEvents opens the events WebSocket with the given headers (Origin
// defaults to the server's own; set it to "" to send none).
func (ts *testServer) dialEvents(hdr map[string]string) (*websocket.Conn, *http.Response, error) {
	ts.t.Helper()
	h := http.Header{"Origin": {ts.base}}
	for k, v := range hdr {
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.base, "http")+"/api/v1/events", &websocket.DialOptions{HTTPHeader: h, HTTPClient: ts.client})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if c != nil {
		ts.t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// mustDial opens the socket and authenticates with a first message.
func (ts *testServer) mustDial(token string) *websocket.Conn {
	ts.t.Helper()
	c, _, err := ts.dialEvents(nil)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	send(ts.t, c, `{"type":"auth","token":"`+token+`"}`)
	expectMessage(ts.t, c, `{"type":"ready"}`)
	return c
}

func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// expectMessage reads one message and compares it as JSON with want.
func expectMessage(t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read (want %s): %v", want, err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v", typ)
	}
	var got, exp any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("message %s: %v", b, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	eb, _ := json.Marshal(exp)
	if string(gb) != string(eb) {
		t.Fatalf("message %s, want %s", b, want)
	}
}

// expectClose reads until the socket closes and checks the close code.
func expectClose(t *testing.T, c *websocket.Conn, want websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err == nil {
			t.Logf("message before close: %s", b)
			continue
		}
		if got := websocket.CloseStatus(err); got != want {
			t.Fatalf("socket ended with %v (status %d), want close %d", err, got, want)
		}
		return
	}
}

func TestEventsNeedOrigin(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()
	for _, tc := range []struct {
		name   string
		origin string
		status int
	}{
		{"no Origin", "", http.StatusForbidden},
		{"foreign Origin", "http://evil.example", http.StatusForbidden},
		{"https Origin on http", "https" + strings.TrimPrefix(ts.base, "http"), http.StatusForbidden},
	} {
		c, resp, err := ts.dialEvents(map[string]string{"Origin": tc.origin, "Authorization": "Bearer " + token})
		if err == nil {
			c.CloseNow()
			t.Errorf("%s: dial succeeded", tc.name)
			continue
		}
		if resp == nil || resp.StatusCode != tc.status {
			t.Errorf("%s: %v, response %v", tc.name, err, resp)
		}
	}
	// A plain GET with the right Origin is no upgrade.
	ts.do(call{method: "GET", path: "/api/v1/events", token: token, header: map[string]string{"Origin": ts.base}}).expect(t, http.StatusBadRequest, CodeBadRequest)
	if n := node.subscribers(); n != 0 {
		t.Errorf("%d subscribers", n)
	}
}

func TestEventsAuthByFirstMessage(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()
	c := ts.mustDial(token)
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })

	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	evs := []Event{
		{Type: EventMessage, Data: Message{ID: "01", From: "bob", To: "alice-id", Text: "hi", SentAt: at, ReceivedAt: &at, Status: "delivered", Direction: "in", Path: "direct"}},
		{Type: EventMessageStatus, Data: StatusChange{ID: "02", With: "bob", Status: "read", Path: "relay"}},
		{Type: EventPeerOnline, Data: Presence{UserID: "bob", PeerID: "12D3KooWbob"}},
		{Type: EventOverflow},
	}
	for _, ev := range evs {
		node.emit(ev)
	}
	for _, ev := range evs {
		want, _ := json.Marshal(ev)
		expectMessage(t, c, string(want))
	}
	// Many events arrive in order.
	for i := range 50 {
		node.emit(Event{Type: EventPeerOffline, Data: Presence{UserID: "u" + string(rune('a'+i%26)), PeerID: string(rune('A' + i%26))}})
	}
	for i := range 50 {
		want, _ := json.Marshal(Event{Type: EventPeerOffline, Data: Presence{UserID: "u" + string(rune('a'+i%26)), PeerID: string(rune('A' + i%26))}})
		expectMessage(t, c, string(want))
	}

	// Closing the socket ends the subscription.
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the subscription to end", func() bool { return node.subscribers() == 0 })
}

func TestEventsAuthByHeader(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()
	c, _, err := ts.dialEvents(map[string]string{"Authorization": "Bearer " + token})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	expectMessage(t, c, `{"type":"ready"}`)
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })
	node.emit(Event{Type: EventFriendRequest, Data: Friend{UserID: "bob", Status: "pending_in"}})
	expectMessage(t, c, `{"type":"friend_request","data":{"user_id":"bob","name":"","status":"pending_in","verified":false,"online":false,"safety_number":""}}`)
	c.CloseNow()
	waitFor(t, "the subscription to end", func() bool { return node.subscribers() == 0 })

	// A wrong header token is refused before the upgrade.
	_, resp, err := ts.dialEvents(map[string]string{"Authorization": "Bearer nope"})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong header token: %v, %v", err, resp)
	}
}

func TestEventsKeyChanges(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	c := ts.mustDial(ts.login())
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })
	node.emit(Event{Type: EventFriendKeyRotated, Data: Friend{UserID: "bob", Name: "bob", Status: "accepted", SafetyNumber: "123"}})
	node.emit(Event{Type: EventFriendKeyChanged, Data: Friend{UserID: "carol", Name: "carol", Status: "key_changed", Verified: false}})
	expectMessage(t, c, `{"type":"friend_key_rotated","data":{"user_id":"bob","name":"bob","status":"accepted","verified":false,"online":false,"safety_number":"123"}}`)
	expectMessage(t, c, `{"type":"friend_key_changed","data":{"user_id":"carol","name":"carol","status":"key_changed","verified":false,"online":false,"safety_number":""}}`)
}

func TestEventsBadAuthCloses4401(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{}, func(s *Server) { s.wsAuthTimeout = 200 * time.Millisecond })
	token := ts.login()
	for _, first := range []string{
		`{"type":"auth","token":"wrong"}`,
		`{"type":"auth","token":""}`,
		`{"type":"auth"}`,
		`{"type":"hello","token":"` + token + `"}`,
		`not json`,
	} {
		c, _, err := ts.dialEvents(nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		send(t, c, first)
		expectClose(t, c, CloseUnauthorized)
	}
	// An auth message over 4 KiB closes with 1009 (the library does it).
	c, _, err := ts.dialEvents(nil)
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, `{"type":"auth","token":"`+strings.Repeat("x", 5000)+`"}`)
	expectClose(t, c, websocket.StatusMessageTooBig)

	// A binary first message is no auth either.
	c, _, err = ts.dialEvents(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, []byte(`{"type":"auth","token":"`+token+`"}`)); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, CloseUnauthorized)

	// Silence past the auth timeout closes too.
	c, _, err = ts.dialEvents(nil)
	if err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, CloseUnauthorized)

	// An expired token cannot authenticate.
	ts.clock.Advance(13 * time.Hour)
	c, _, err = ts.dialEvents(nil)
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, `{"type":"auth","token":"`+token+`"}`)
	expectClose(t, c, CloseUnauthorized)

	if n := node.subscribers(); n != 0 {
		t.Errorf("%d subscribers after failed auth", n)
	}
}

func TestEventsLogoutClosesSocket(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token, other := ts.login(), ts.login()
	c := ts.mustDial(token)
	c2 := ts.mustDial(other)
	waitFor(t, "two subscribers", func() bool { return node.subscribers() == 2 })

	ts.do(call{method: "POST", path: "/api/v1/logout", token: token}).expect(t, http.StatusNoContent, "")
	expectClose(t, c, CloseUnauthorized)
	waitFor(t, "the subscription to end", func() bool { return node.subscribers() == 1 })

	// The other session's socket lives on.
	node.emit(Event{Type: EventOverflow})
	expectMessage(t, c2, `{"type":"overflow"}`)
}

func TestEventsTokenExpiryClosesSocket(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{}, func(s *Server) { s.wsPingInterval = 20 * time.Millisecond })
	token := ts.login()
	c := ts.mustDial(token)
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })
	// Pings come and go while the token lives.
	node.emit(Event{Type: EventOverflow})
	expectMessage(t, c, `{"type":"overflow"}`)

	ts.clock.Advance(12*time.Hour + time.Second)
	expectClose(t, c, CloseUnauthorized)
	waitFor(t, "the subscription to end", func() bool { return node.subscribers() == 0 })
	ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
}

func TestEventsPingNoticesDeadClient(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{}, func(s *Server) {
		s.wsPingInterval = 20 * time.Millisecond
		s.wsPingTimeout = 100 * time.Millisecond
	})
	token := ts.login()
	c := ts.mustDial(token)
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })
	// A client that never reads never answers pings (pongs are sent by
	// its reader): the server gives up on it.
	_ = c
	waitFor(t, "the server to drop the silent client", func() bool { return node.subscribers() == 0 })
}

func TestEventsClientMessageAfterAuthCloses(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()
	c := ts.mustDial(token)
	send(t, c, `{"type":"auth","token":"`+token+`"}`)
	expectClose(t, c, websocket.StatusPolicyViolation)
	waitFor(t, "the subscription to end", func() bool { return node.subscribers() == 0 })
}

func TestEventsStreamEndClosesSocket(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	c := ts.mustDial(ts.login())
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })
	node.endSubscriptions()
	expectClose(t, c, websocket.StatusGoingAway)
}

func TestShutdownClosesSockets(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()
	c := ts.mustDial(token)
	// One socket still waiting for its auth message.
	pending, _, err := ts.dialEvents(nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })

	closed := make(chan struct{}, 2)
	for _, conn := range []*websocket.Conn{c, pending} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				if _, _, err := conn.Read(ctx); err != nil {
					if websocket.CloseStatus(err) == websocket.StatusGoingAway {
						closed <- struct{}{}
					} else {
						t.Errorf("socket ended with %v, want 1001", err)
						closed <- struct{}{}
					}
					return
				}
			}
		}()
	}
	if err := ts.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for range 2 {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("socket not closed on shutdown")
		}
	}
	waitFor(t, "the subscription to end", func() bool { return node.subscribers() == 0 })
	if _, _, err := ts.dialEvents(nil); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial after shutdown: %v", err)
	}
}
