package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHealthInEachState(t *testing.T) {
	for _, st := range []State{StateNew, StateLocked, StateUnlocked} {
		ts := startServer(t, newFakeNode(st), Options{})
		a := ts.do(call{method: "GET", path: "/api/v1/health"})
		a.expect(t, http.StatusOK, "")
		var out map[string]string
		a.decode(t, &out)
		if out["status"] != "ok" || out["state"] != string(st) || len(out) != 2 {
			t.Errorf("health in state %s: %v", st, out)
		}
	}
}

func TestRegister(t *testing.T) {
	node := newFakeNode(StateNew)
	ts := startServer(t, node, Options{})

	ts.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"alice","passphrase":"short"}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	// Ten characters, not ten bytes: nine two-byte characters are too few.
	ts.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"alice","passphrase":"ééééééééé"}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"  ","passphrase":"` + testPassphrase + `"}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"alice"}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"alice","passphrase":12345678901}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	if node.called("Register") {
		t.Fatal("a bad register reached the node")
	}

	a := ts.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"alice","passphrase":"ten chars\u0021"}`})
	a.expect(t, http.StatusCreated, "")
	var out map[string]string
	a.decode(t, &out)
	if out["user_id"] != "alice-id" || out["peer_id"] != "12D3KooWalice" || len(out["token"]) != 43 || len(out) != 3 {
		t.Fatalf("register answer %v", out)
	}
	node.locked(func() {
		if node.passphrase != "ten chars!" {
			t.Errorf("node got passphrase %q, want the unescaped one", node.passphrase)
		}
	})
	ts.do(call{method: "GET", path: "/api/v1/me", token: out["token"]}).expect(t, http.StatusOK, "")

	// The passphrase bytes handed to the node are wiped afterwards.
	node.mu.Lock()
	for _, p := range node.passSlices {
		if !bytes.Equal(p, make([]byte, len(p))) {
			t.Errorf("passphrase slice not wiped: %q", p)
		}
	}
	node.mu.Unlock()

	// An identity exists now.
	ts.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"mallory","passphrase":"` + testPassphrase + `"}`}).expect(t, http.StatusConflict, CodeConflict)
	// The API checks the state itself, and also maps the node's answer.
	node2 := newFakeNode(StateNew)
	node2.setErr("Register", &Error{Code: CodeConflict, Message: "identity exists"})
	ts2 := startServer(t, node2, Options{})
	ts2.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"bob","passphrase":"` + testPassphrase + `"}`}).expect(t, http.StatusConflict, CodeConflict)
	ts2.do(call{method: "POST", path: "/api/v1/register", body: `{"name":"bob","passphrase":"` + testPassphrase + `","extra":1}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
}

func TestLogin(t *testing.T) {
	node := newFakeNode(StateLocked)
	ts := startServer(t, node, Options{})

	a := ts.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":"not the right one"}`})
	a.expect(t, http.StatusUnauthorized, CodeBadPassphrase)
	if strings.Contains(string(a.body), "not the right one") {
		t.Errorf("error echoes the passphrase: %s", a.body)
	}
	ts.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":""}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "POST", path: "/api/v1/login", body: `{"name":"x","passphrase":"` + testPassphrase + `"}`}).expect(t, http.StatusBadRequest, CodeBadRequest)

	a = ts.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":"` + testPassphrase + `"}`})
	a.expect(t, http.StatusOK, "")
	var out map[string]string
	a.decode(t, &out)
	if out["user_id"] != "alice-id" || len(out["token"]) != 43 || len(out) != 2 {
		t.Fatalf("login answer %v", out)
	}
	ts.do(call{method: "GET", path: "/api/v1/me", token: out["token"]}).expect(t, http.StatusOK, "")
	// Each login is a new token.
	if other := ts.login(); other == out["token"] {
		t.Error("two logins gave the same token")
	}

	for _, tc := range []struct {
		after time.Duration
		want  string
	}{{2500 * time.Millisecond, "3"}, {time.Minute, "60"}, {0, "1"}, {time.Millisecond, "1"}} {
		node.setErr("Unlock", fmt.Errorf("unlock: %w", &Error{Code: CodeThrottled, Message: "too many tries", RetryAfter: tc.after}))
		a := ts.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":"guess guess guess"}`})
		a.expect(t, http.StatusTooManyRequests, CodeThrottled)
		if got := a.Header.Get("Retry-After"); got != tc.want {
			t.Errorf("RetryAfter %v: Retry-After %q, want %q", tc.after, got, tc.want)
		}
	}

	fresh := startServer(t, newFakeNode(StateNew), Options{})
	fresh.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":"` + testPassphrase + `"}`}).expect(t, http.StatusConflict, CodeWrongState)
}

func TestLogout(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{})
	token, other := ts.login(), ts.login()
	ts.do(call{method: "POST", path: "/api/v1/logout", token: token}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	ts.do(call{method: "POST", path: "/api/v1/logout", token: token}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	// Other sessions live on.
	ts.do(call{method: "GET", path: "/api/v1/me", token: other}).expect(t, http.StatusOK, "")
}

func TestAuthRequired(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{})
	token := ts.login()
	for _, tc := range []struct {
		name   string
		header string
	}{
		{"missing", ""},
		{"wrong", "Bearer " + strings.Repeat("A", 43)},
		{"empty", "Bearer "},
		{"basic", "Basic " + token},
		{"bare token", token},
	} {
		hdr := map[string]string{}
		if tc.header != "" {
			hdr["Authorization"] = tc.header
		}
		a := ts.do(call{method: "GET", path: "/api/v1/me", header: hdr})
		a.expect(t, http.StatusUnauthorized, CodeUnauthorized)
		if !strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, a.Header.Get("WWW-Authenticate"))
		}
	}
	// Every route but the public ones needs a token.
	for _, rt := range ts.s.routes {
		if rt.auth != authBearer {
			continue
		}
		path := strings.ReplaceAll(rt.pattern, "{user_id}", "bob")
		ts.do(call{method: rt.method, path: path}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	}
	// The scheme is case-insensitive.
	ts.do(call{method: "GET", path: "/api/v1/me", header: map[string]string{"Authorization": "bearer " + token}}).expect(t, http.StatusOK, "")
}

func TestTokenExpiresWhenIdle(t *testing.T) {
	// A long lifetime, so that idleness alone ends the token here
	// (TestTokenLifetime tests the lifetime).
	ts := startServer(t, newFakeNode(StateUnlocked), Options{TokenLifetime: 7 * 24 * time.Hour})
	token := ts.login()
	// Use keeps a token alive.
	for range 3 {
		ts.clock.Advance(11 * time.Hour)
		ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusOK, "")
	}
	ts.clock.Advance(12*time.Hour + time.Second)
	ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusUnauthorized, CodeUnauthorized)

	// A shorter TokenIdle is honoured, and expired sessions are swept.
	short := startServer(t, newFakeNode(StateUnlocked), Options{TokenIdle: time.Minute})
	token = short.login()
	short.clock.Advance(time.Minute)
	short.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	for range 5 {
		short.login()
	}
	short.clock.Advance(2 * time.Minute)
	short.login()
	if n := short.s.tokens.count(); n != 1 {
		t.Errorf("%d sessions held after expiry, want 1", n)
	}
}

func TestFriends(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()

	a := ts.do(call{method: "GET", path: "/api/v1/friends", token: token})
	a.expect(t, http.StatusOK, "")
	if got := strings.TrimSpace(string(a.body)); got != `{"friends":[]}` {
		t.Errorf("empty friend list: %s", got)
	}

	a = ts.do(call{method: "POST", path: "/api/v1/friends", token: token, body: `{"invite":"parley:abc"}`})
	a.expect(t, http.StatusCreated, "")
	var f Friend
	a.decode(t, &f)
	if f.UserID != "from-parley:abc" || f.Status != "pending_out" {
		t.Errorf("added friend %+v", f)
	}
	a = ts.do(call{method: "POST", path: "/api/v1/friends", token: token, body: `{"user_id":"from-parley:abc"}`})
	a.expect(t, http.StatusCreated, "")
	a.decode(t, &f)
	if f.Status != "accepted" {
		t.Errorf("accepted friend %+v", f)
	}
	for _, body := range []string{`{}`, `{"invite":"","user_id":""}`, `{"invite":"parley:x","user_id":"y"}`, `{"invite":5}`} {
		ts.do(call{method: "POST", path: "/api/v1/friends", token: token, body: body}).expect(t, http.StatusBadRequest, CodeBadRequest)
	}
	ts.do(call{method: "POST", path: "/api/v1/friends", token: token, body: `{"user_id":"nobody"}`}).expect(t, http.StatusNotFound, CodeNotFound)

	a = ts.do(call{method: "GET", path: "/api/v1/friends", token: token})
	var list struct{ Friends []Friend }
	a.decode(t, &list)
	if len(list.Friends) != 1 {
		t.Fatalf("friend list %s", a.body)
	}

	ts.do(call{method: "POST", path: "/api/v1/friends/from-parley:abc/verify", token: token}).expect(t, http.StatusNoContent, "")
	node.locked(func() {
		if !node.friends[0].Verified {
			t.Error("verify did not reach the node")
		}
	})
	ts.do(call{method: "POST", path: "/api/v1/friends/nobody/verify", token: token}).expect(t, http.StatusNotFound, CodeNotFound)
	a = ts.do(call{method: "POST", path: "/api/v1/friends/from-parley:abc/block", token: token})
	a.expect(t, http.StatusOK, "")
	a.decode(t, &f)
	if f.Status != "blocked" {
		t.Errorf("blocked friend %+v", f)
	}
	ts.do(call{method: "POST", path: "/api/v1/friends/nobody/block", token: token}).expect(t, http.StatusNotFound, CodeNotFound)
	ts.do(call{method: "GET", path: "/api/v1/friends/from-parley:abc/block", token: token}).expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	// A path parameter is unescaped.
	ts.do(call{method: "DELETE", path: "/api/v1/friends/from-parley%3Aabc", token: token}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "DELETE", path: "/api/v1/friends/from-parley:abc", token: token}).expect(t, http.StatusNotFound, CodeNotFound)
	// An empty or slash-holding segment is no user ID.
	ts.do(call{method: "DELETE", path: "/api/v1/friends/", token: token}).expect(t, http.StatusNotFound, CodeNotFound)
	ts.do(call{method: "DELETE", path: "/api/v1/friends/a%2Fb", token: token}).expect(t, http.StatusNotFound, CodeNotFound)
}

func TestSendMessage(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Status: "accepted"}, {UserID: "carol", Status: "pending_in"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	lastText := func() (text string) {
		node.locked(func() { text = node.lastSend[1] })
		return text
	}
	send := func(body string) answer {
		return ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: body})
	}

	a := send(`{"to":"bob","text":"hi"}`)
	a.expect(t, http.StatusAccepted, "")
	var out map[string]string
	a.decode(t, &out)
	if out["msg_id"] != "00ff" || out["status"] != "pending" || len(out) != 2 {
		t.Errorf("send answer %v", out)
	}

	send(`{"to":"bob","text":""}`).expect(t, http.StatusBadRequest, CodeBadRequest)
	send(`{"to":"bob"}`).expect(t, http.StatusBadRequest, CodeBadRequest)
	send(`{"text":"hi"}`).expect(t, http.StatusBadRequest, CodeBadRequest)
	send(`{"to":"bob","text":"`+strings.Repeat("x", maxTextBytes)+`"}`).expect(t, http.StatusAccepted, "")
	if got := len(lastText()); got != 32768 {
		t.Errorf("node got %d bytes", got)
	}
	send(`{"to":"bob","text":"`+strings.Repeat("x", maxTextBytes+1)+`"}`).expect(t, http.StatusRequestEntityTooLarge, CodeTooLarge)
	// The limit is in bytes: 16385 two-byte characters are too many.
	send(`{"to":"bob","text":"`+strings.Repeat("é", maxTextBytes/2+1)+`"}`).expect(t, http.StatusRequestEntityTooLarge, CodeTooLarge)

	// Invalid UTF-8, raw or as a lone surrogate escape, is refused rather
	// than turned into U+FFFD.
	for _, text := range []string{"a\xffb", "\xc3", "\xed\xa0\x80", `\ud800`, `\udc00x`, `x\ud800\u0041`} {
		node.locked(func() { node.lastSend = [2]string{} })
		send(`{"to":"bob","text":"`+text+`"}`).expect(t, http.StatusBadRequest, CodeBadRequest)
		if got := lastText(); got != "" {
			t.Errorf("text %q reached the node as %q", text, got)
		}
	}
	// A surrogate pair, other escapes, and a literal U+FFFD are fine.
	send(`{"to":"bob","text":"\ud83d\ude00 \u00e9\n\\u\"\ufffd`+"\ufffd"+`"}`).expect(t, http.StatusAccepted, "")
	if want := "😀 é\n\\u\"\ufffd\ufffd"; lastText() != want {
		t.Errorf("node got %q, want %q", lastText(), want)
	}

	send(`{"to":"carol","text":"hi"}`).expect(t, http.StatusNotFound, CodeNotFound)
	send(`{"to":"nobody","text":"hi"}`).expect(t, http.StatusNotFound, CodeNotFound)
}

func TestGetMessages(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	for i := range 300 {
		node.messages = append(node.messages, Message{ID: fmt.Sprintf("%04x", i), From: "bob", To: "alice-id", Text: "m", SentAt: time.Unix(int64(1000-i), 0).UTC(), Direction: "in", Status: "delivered"})
	}
	ts := startServer(t, node, Options{})
	token := ts.login()
	get := func(query string) answer {
		return ts.do(call{method: "GET", path: "/api/v1/get_messages" + query, token: token})
	}

	for _, q := range []string{"", "?limit=5", "?with=", "?with=bob&limit=0", "?with=bob&limit=201", "?with=bob&limit=-1", "?with=bob&limit=abc", "?with=bob&limit=1e2", "?with=bob&%zz"} {
		get(q).expect(t, http.StatusBadRequest, CodeBadRequest)
	}
	if node.called("Messages") {
		t.Fatal("a bad query reached the node")
	}

	var page struct {
		Messages []Message
		Next     *string
	}
	a := get("?with=bob")
	a.expect(t, http.StatusOK, "")
	a.decode(t, &page)
	node.locked(func() {
		if len(page.Messages) != 50 || node.lastMessages.limit != 50 || node.lastMessages.with != "bob" || node.lastMessages.before != "" {
			t.Errorf("default page: %d messages, node asked %+v", len(page.Messages), node.lastMessages)
		}
	})
	if page.Next != nil || !strings.Contains(string(a.body), `"next":null`) {
		t.Errorf("last page next: %s", a.body[len(a.body)-30:])
	}

	node.locked(func() { node.next = "cursor-1" })
	for _, limit := range []int{1, 200} {
		a = get(fmt.Sprintf("?with=bob&before=c0&limit=%d", limit))
		a.expect(t, http.StatusOK, "")
		page.Next = nil
		a.decode(t, &page)
		node.locked(func() {
			if len(page.Messages) != limit || node.lastMessages.before != "c0" {
				t.Errorf("limit %d: %d messages, node asked %+v", limit, len(page.Messages), node.lastMessages)
			}
		})
		if page.Next == nil || *page.Next != "cursor-1" {
			t.Errorf("limit %d: next %v", limit, page.Next)
		}
	}

	node.locked(func() { node.messages, node.next = nil, "" })
	a = get("?with=bob")
	if got := strings.TrimSpace(string(a.body)); got != `{"messages":[],"next":null}` {
		t.Errorf("empty page: %s", got)
	}
}

func TestConversationsReadNodeConnect(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()

	a := ts.do(call{method: "GET", path: "/api/v1/conversations", token: token})
	if got := strings.TrimSpace(string(a.body)); got != `{"conversations":[]}` {
		t.Errorf("empty conversations: %s", got)
	}
	node.locked(func() { node.convs = []Conversation{{With: "bob", Name: "bob", Unread: 2}} })
	a = ts.do(call{method: "GET", path: "/api/v1/conversations", token: token})
	if !strings.Contains(string(a.body), `"last_message":null`) || !strings.Contains(string(a.body), `"unread":2`) {
		t.Errorf("conversations: %s", a.body)
	}

	ts.do(call{method: "POST", path: "/api/v1/read", token: token, body: `{"with":"bob"}`}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/read", token: token, body: `{"with":"bob","up_to":"00ff"}`}).expect(t, http.StatusNoContent, "")
	node.locked(func() {
		if node.lastRead != [2]string{"bob", "00ff"} {
			t.Errorf("MarkRead got %v", node.lastRead)
		}
	})
	ts.do(call{method: "POST", path: "/api/v1/read", token: token, body: `{"up_to":"00ff"}`}).expect(t, http.StatusBadRequest, CodeBadRequest)

	a = ts.do(call{method: "GET", path: "/api/v1/node", token: token})
	a.expect(t, http.StatusOK, "")
	for _, want := range []string{`"addrs":[]`, `"connected_peers":[]`} {
		if !strings.Contains(string(a.body), want) {
			t.Errorf("node info %s lacks %s", a.body, want)
		}
	}
	a = ts.do(call{method: "GET", path: "/api/v1/me", token: token})
	if !strings.Contains(string(a.body), `"addrs":[]`) {
		t.Errorf("me %s", a.body)
	}

	ts.do(call{method: "POST", path: "/api/v1/peers/connect", token: token, body: `{"addr":"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWx"}`}).expect(t, http.StatusNoContent, "")
	node.locked(func() {
		if node.lastConnect != "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWx" {
			t.Errorf("Connect got %q", node.lastConnect)
		}
	})
	ts.do(call{method: "POST", path: "/api/v1/peers/connect", token: token, body: `{"addr":""}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	node.setErr("Connect", &Error{Code: CodeUnavailable, Message: "no route"})
	ts.do(call{method: "POST", path: "/api/v1/peers/connect", token: token, body: `{"addr":"/ip4/192.0.2.1/tcp/1/p2p/x"}`}).expect(t, http.StatusServiceUnavailable, CodeUnavailable)
}

func TestErrorMapping(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()
	for _, tc := range []struct {
		code   Code
		status int
	}{
		{CodeBadRequest, 400}, {CodeUnauthorized, 401}, {CodeBadPassphrase, 401}, {CodeForbidden, 403},
		{CodeNotFound, 404}, {CodeMethodNotAllowed, 405}, {CodeConflict, 409}, {CodeWrongState, 409}, {CodeKeyChanged, 409},
		{CodeTooLarge, 413}, {CodeUnsupportedMedia, 415}, {CodeThrottled, 429}, {CodeUnavailable, 503},
		{CodeInternal, 500},
	} {
		if got := tc.code.Status(); got != tc.status {
			t.Errorf("%s.Status() = %d, want %d", tc.code, got, tc.status)
		}
		for _, err := range []error{
			&Error{Code: tc.code, Message: "the message", Err: errors.New("cause-text")},
			fmt.Errorf("wrapped: %w", &Error{Code: tc.code, Message: "the message"}),
		} {
			node.setErr("Me", err)
			a := ts.do(call{method: "GET", path: "/api/v1/me", token: token})
			a.expect(t, tc.status, tc.code)
			var e errorBody
			a.decode(t, &e)
			if tc.code == CodeInternal {
				if e.Error.Message != internalMessage {
					t.Errorf("internal error message %q", e.Error.Message)
				}
			} else if e.Error.Message != "the message" {
				t.Errorf("%s: message %q", tc.code, e.Error.Message)
			}
			if strings.Contains(string(a.body), "cause-text") {
				t.Errorf("%s: the cause leaked: %s", tc.code, a.body)
			}
		}
	}
	// An unknown code is an internal error.
	node.setErr("Me", &Error{Code: "made_up", Message: "m"})
	ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusInternalServerError, CodeInternal)
	// An empty message gets the status text.
	node.setErr("Me", &Error{Code: CodeNotFound})
	a := ts.do(call{method: "GET", path: "/api/v1/me", token: token})
	if a.errCode() != CodeNotFound || !strings.Contains(string(a.body), `"message":"Not Found"`) {
		t.Errorf("empty message: %s", a.body)
	}
}

func TestInternalErrorIsHidden(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	ts := startServer(t, node, Options{})
	token := ts.login()
	node.setErr("Friends", fmt.Errorf("reading friends: %w", errors.New("badger: /home/alice/.parley is corrupt")))
	a := ts.do(call{method: "GET", path: "/api/v1/friends", token: token})
	a.expect(t, http.StatusInternalServerError, CodeInternal)
	if strings.Contains(string(a.body), "badger") || strings.Contains(string(a.body), "alice") {
		t.Errorf("500 answer leaks the error: %s", a.body)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "is corrupt") {
		t.Errorf("internal error not logged at Error level:\n%s", logs)
	}
	if strings.Contains(logs, token) {
		t.Error("token in the log")
	}
}
