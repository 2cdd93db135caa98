package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// directoryNode is an unlocked fake whose directory holds alice (twice:
// two users claim the name) and bob.
func directoryNode() *fakeNode {
	node := newFakeNode(StateUnlocked)
	expires := time.Date(2030, 1, 9, 3, 4, 5, 0, time.UTC)
	node.directory = map[string]DirectoryEntry{
		"alice1": {UserID: "alice1", Name: "alice", Fingerprint: "fp-a1", Devices: []string{"12D3KooWa", "12D3KooWb"}, Seq: 7, ExpiresAt: expires},
		"alice2": {UserID: "alice2", Name: "Alice", Fingerprint: "fp-a2", Seq: 1<<63 + 5, ExpiresAt: expires},
		"bob":    {UserID: "bob", Name: "bob", Fingerprint: "fp-b", Devices: []string{"12D3KooWbob"}, Seq: 1, ExpiresAt: expires},
	}
	return node
}

func TestAddFriendByID(t *testing.T) {
	node := directoryNode()
	node.friends = []Friend{{UserID: "carol", Name: "carol", Status: "pending_in"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	add := func(body string) answer {
		return ts.do(call{method: "POST", path: "/api/v1/friends", token: token, body: body})
	}

	// A user with a valid directory record and no request: a new contact
	// request.
	a := add(`{"user_id":"bob"}`)
	a.expect(t, http.StatusCreated, "")
	var f Friend
	a.decode(t, &f)
	if f.UserID != "bob" || f.Name != "bob" || f.Status != "pending_out" {
		t.Errorf("added by ID: %+v", f)
	}
	// A pending request is accepted.
	a = add(`{"user_id":"carol"}`)
	a.expect(t, http.StatusCreated, "")
	a.decode(t, &f)
	if f.UserID != "carol" || f.Status != "accepted" {
		t.Errorf("accepted by ID: %+v", f)
	}
	// No valid record, or no directory to ask.
	add(`{"user_id":"nobody"}`).expect(t, http.StatusNotFound, CodeNotFound)
	node.setErr("AddFriendByID", &Error{Code: CodeUnavailable, Message: "no directory peers"})
	add(`{"user_id":"bob"}`).expect(t, http.StatusServiceUnavailable, CodeUnavailable)
	node.setErr("AddFriendByID", nil)

	// The body still takes exactly one of invite and user_id, and nothing
	// else.
	node.locked(func() { node.calls = nil })
	for _, body := range []string{`{"user_id":""}`, `{"user_id":"bob","invite":"parley:x"}`, `{"user_id":5}`, `{"user_id":null}`, `{"user_id":"bob","extra":1}`, `{"user_id":"bob"} {}`, `["bob"]`} {
		add(body).expect(t, http.StatusBadRequest, CodeBadRequest)
	}
	if node.called("AddFriendByID") || node.called("AddFriend") {
		t.Error("a bad body reached the node")
	}
}

func TestLookupUser(t *testing.T) {
	node := directoryNode()
	ts := startServer(t, node, Options{})
	token := ts.login()
	get := func(path string) answer {
		return ts.do(call{method: "GET", path: path, token: token})
	}

	a := get("/api/v1/directory/alice1")
	a.expect(t, http.StatusOK, "")
	want := `{"user_id":"alice1","name":"alice","fingerprint":"fp-a1","devices":["12D3KooWa","12D3KooWb"],"seq":7,"expires_at":"2030-01-09T03:04:05Z"}`
	if got := strings.TrimSpace(string(a.body)); got != want {
		t.Errorf("lookup:\n got %s\nwant %s", got, want)
	}
	// devices is [] rather than null, and seq is an exact JSON number
	// beyond float64's integers.
	a = get("/api/v1/directory/alice2")
	a.expect(t, http.StatusOK, "")
	if !strings.Contains(string(a.body), `"devices":[]`) || !strings.Contains(string(a.body), `"seq":9223372036854775813,`) {
		t.Errorf("lookup: %s", a.body)
	}
	var e DirectoryEntry
	a.decode(t, &e)
	if e.Seq != 1<<63+5 || !e.ExpiresAt.Equal(time.Date(2030, 1, 9, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("decoded %+v", e)
	}

	get("/api/v1/directory/nobody").expect(t, http.StatusNotFound, CodeNotFound)
	node.setErr("LookupUser", &Error{Code: CodeUnavailable, Message: "no directory peers"})
	get("/api/v1/directory/bob").expect(t, http.StatusServiceUnavailable, CodeUnavailable)
	node.setErr("LookupUser", &Error{Code: CodeBadRequest, Message: "not a user ID"})
	get("/api/v1/directory/x").expect(t, http.StatusBadRequest, CodeBadRequest)
	node.setErr("LookupUser", nil)

	// The path parameter is unescaped; an empty or slash-holding segment
	// and extra segments are no route.
	get("/api/v1/directory/al%69ce1").expect(t, http.StatusOK, "")
	node.locked(func() {
		if node.lastLookup != "alice1" {
			t.Errorf("LookupUser got %q", node.lastLookup)
		}
	})
	node.locked(func() { node.calls = nil })
	for _, path := range []string{"/api/v1/directory/", "/api/v1/directory", "/api/v1/directory/a%2Fb", "/api/v1/directory/bob/x"} {
		get(path).expect(t, http.StatusNotFound, CodeNotFound)
	}
	if node.called("LookupUser") {
		t.Error("a bad path reached the node")
	}
	a = ts.do(call{method: "POST", path: "/api/v1/directory/bob", token: token})
	a.expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if got := a.Header.Get("Allow"); got != "GET" {
		t.Errorf("Allow %q", got)
	}
}

func TestSearchDirectory(t *testing.T) {
	node := directoryNode()
	node.friends = []Friend{{UserID: "alice2", Status: "accepted"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	search := func(query string) answer {
		return ts.do(call{method: "GET", path: "/api/v1/directory/search" + query, token: token})
	}
	lastSearch := func() (name string) {
		node.locked(func() { name = node.lastSearch })
		return name
	}

	// Two users claim the name: both, told apart by their fingerprints.
	a := search("?name=alice")
	a.expect(t, http.StatusOK, "")
	want := `{"results":[{"user_id":"alice1","name":"alice","fingerprint":"fp-a1","friend":false},{"user_id":"alice2","name":"Alice","fingerprint":"fp-a2","friend":true}]}`
	if got := strings.TrimSpace(string(a.body)); got != want {
		t.Errorf("search:\n got %s\nwant %s", got, want)
	}
	// No one: [] rather than null.
	a = search("?name=zed")
	a.expect(t, http.StatusOK, "")
	if got := strings.TrimSpace(string(a.body)); got != `{"results":[]}` {
		t.Errorf("empty search: %s", got)
	}
	// The node gets the name unescaped and trimmed; 64 bytes is the limit
	// after trimming.
	search("?name=%20%C3%A9ve%09").expect(t, http.StatusOK, "")
	if got := lastSearch(); got != "éve" {
		t.Errorf("node searched %q", got)
	}
	long := strings.Repeat("é", 32)
	search("?name=++"+url.QueryEscape(long)+"++").expect(t, http.StatusOK, "")
	if got := lastSearch(); got != long {
		t.Errorf("node searched %q", got)
	}
	node.setErr("SearchDirectory", &Error{Code: CodeUnavailable, Message: "no directory peers"})
	search("?name=alice").expect(t, http.StatusServiceUnavailable, CodeUnavailable)
	node.setErr("SearchDirectory", nil)

	node.locked(func() { node.calls = nil })
	for _, q := range []string{
		"", "?", "?name=", "?name=+++", "?name=%09%0A", "?nom=alice",
		"?name=" + strings.Repeat("a", 65),
		"?name=" + url.QueryEscape(strings.Repeat("é", 32)+"a"), // 65 bytes, 33 characters
		"?name=a%FFb", "?name=%C3", "?name=a%00b", "?name=a%0Ab", "?name=%7F",
		"?name=alice&name=bob", "?name=alice&%zz", "?name=%",
	} {
		search(q).expect(t, http.StatusBadRequest, CodeBadRequest)
	}
	if node.called("SearchDirectory") || node.called("LookupUser") {
		t.Error("a bad search reached the node")
	}
	a = ts.do(call{method: "POST", path: "/api/v1/directory/search?name=alice", token: token})
	a.expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if got := a.Header.Get("Allow"); got != "GET" {
		t.Errorf("Allow %q, want GET once", got)
	}
}

// TestDirectorySearchIsNotAUserID checks that /directory/search is the
// search route whatever the order of the route table, and not a lookup of
// the user ID "search".
func TestDirectorySearchIsNotAUserID(t *testing.T) {
	for _, reversed := range []bool{false, true} {
		node := directoryNode()
		ts := startServer(t, node, Options{}, func(s *Server) {
			if reversed {
				slices.Reverse(s.routes)
			}
		})
		token := ts.login()
		ts.do(call{method: "GET", path: "/api/v1/directory/search?name=bob", token: token}).expect(t, http.StatusOK, "")
		ts.do(call{method: "GET", path: "/api/v1/directory/search", token: token}).expect(t, http.StatusBadRequest, CodeBadRequest)
		if node.called("LookupUser") || !node.called("SearchDirectory") {
			t.Errorf("reversed %v: the search went to LookupUser", reversed)
		}
		// Other segments are user IDs; literals match exactly.
		for _, id := range []string{"searc", "search2", "Search"} {
			ts.do(call{method: "GET", path: "/api/v1/directory/" + id, token: token}).expect(t, http.StatusNotFound, CodeNotFound)
			node.locked(func() {
				if node.lastLookup != id {
					t.Errorf("reversed %v: LookupUser got %q, want %q", reversed, node.lastLookup, id)
				}
			})
		}
	}
}

func TestRotateKey(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.me.Fingerprint = "fp"
	ts := startServer(t, node, Options{})
	token := ts.login()
	rotate := func(c call) answer {
		c.method, c.path, c.token = "POST", "/api/v1/keys/rotate", token
		return ts.do(c)
	}

	a := rotate(call{})
	a.expect(t, http.StatusOK, "")
	var me map[string]any
	a.decode(t, &me)
	if me["user_id"] != "alice-id" || me["fingerprint"] != "fp'" || len(me) != 7 {
		t.Errorf("rotate answer %s", a.body)
	}
	if !strings.Contains(string(a.body), `"addrs":[]`) {
		t.Errorf("rotate answer addrs: %s", a.body)
	}
	// The empty body may say it is JSON.
	rotate(call{header: map[string]string{"Content-Type": "application/json"}}).expect(t, http.StatusOK, "")

	node.locked(func() { node.calls = nil })
	rotate(call{body: `{}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	rotate(call{body: `{"bits":1024}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	rotate(call{header: map[string]string{"Content-Type": "text/plain"}}).expect(t, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	rotate(call{header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "x=1"}).expect(t, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	if node.called("RotateKey") {
		t.Error("a bad rotate reached the node")
	}
	a = ts.do(call{method: "GET", path: "/api/v1/keys/rotate", token: token})
	a.expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if got := a.Header.Get("Allow"); got != "POST" {
		t.Errorf("Allow %q", got)
	}
	ts.do(call{method: "POST", path: "/api/v1/keys/rotate"}).expect(t, http.StatusUnauthorized, CodeUnauthorized)

	node.setErr("RotateKey", &Error{Code: CodeWrongState, Message: "a rotation is running"})
	rotate(call{}).expect(t, http.StatusConflict, CodeWrongState)
}

func TestSendHeldForKeyChange(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Status: "key_changed"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	node.setErr("Send", &Error{Code: CodeKeyChanged, Message: "bob's key changed: verify bob again"})
	a := ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: `{"to":"bob","text":"hi"}`})
	a.expect(t, http.StatusConflict, CodeKeyChanged)
	var e ErrorResponse
	a.decode(t, &e)
	if e.Error.Message != "bob's key changed: verify bob again" {
		t.Errorf("message %q", e.Error.Message)
	}
	a = ts.do(call{method: "GET", path: "/api/v1/friends", token: token})
	if !strings.Contains(string(a.body), `"status":"key_changed"`) {
		t.Errorf("friends: %s", a.body)
	}
}

// TestOpenAPIListsEveryCode keeps the document's error codes equal to the
// codes the API answers with.
func TestOpenAPIListsEveryCode(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Code struct {
					Enum []Code `json:"enum"`
				} `json:"Code"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	documented := doc.Components.Schemas.Code.Enum
	var codes []Code
	for c := range codeStatus {
		codes = append(codes, c)
	}
	slices.Sort(documented)
	slices.Sort(codes)
	if !slices.Equal(documented, codes) {
		t.Errorf("documented codes %v, served %v", documented, codes)
	}
}
