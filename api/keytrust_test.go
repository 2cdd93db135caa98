package api

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// A token ends TokenLifetime after login even when it is used all the
// time; the idle timeout still ends it earlier.
func TestTokenLifetime(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{})
	token := ts.login()
	// Used every hour: live until 12 h after login, however busy.
	for range 11 {
		ts.clock.Advance(time.Hour)
		ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusOK, "")
	}
	ts.clock.Advance(time.Hour - time.Second)
	ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusOK, "")
	ts.clock.Advance(time.Second)
	ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	// A new login gets a new lifetime.
	fresh := ts.login()
	ts.do(call{method: "GET", path: "/api/v1/me", token: fresh}).expect(t, http.StatusOK, "")

	// A shorter TokenLifetime is honoured, with the idle timeout too, and
	// tokens past their lifetime are swept.
	short := startServer(t, newFakeNode(StateUnlocked), Options{TokenLifetime: 30 * time.Minute, TokenIdle: 20 * time.Minute})
	token = short.login()
	short.clock.Advance(15 * time.Minute)
	short.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusOK, "")
	short.clock.Advance(15 * time.Minute)
	short.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	idle := short.login()
	short.clock.Advance(20 * time.Minute)
	short.do(call{method: "GET", path: "/api/v1/me", token: idle}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	busy := short.login()
	for range 2 {
		short.clock.Advance(10 * time.Minute)
		short.do(call{method: "GET", path: "/api/v1/me", token: busy}).expect(t, http.StatusOK, "")
	}
	short.clock.Advance(10 * time.Minute) // 30 min after login, 10 min idle
	short.login()
	if n := short.s.tokens.count(); n != 1 {
		t.Errorf("%d tokens held past their lifetime, want 1", n)
	}

	if _, err := New(newFakeNode(StateNew), Options{TokenLifetime: -time.Second}); err == nil {
		t.Error("New accepted a negative TokenLifetime")
	}
}

// The verify route passes the safety number the user compared; a body is
// optional for older clients; the node's refusal of a stale number is a
// 409.
func TestVerifyFriendSafetyNumber(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Name: "bob", Status: "key_changed", SafetyNumber: "12345 67890", KeyRotated: true}}
	ts := startServer(t, node, Options{})
	token := ts.login()

	a := ts.do(call{method: "GET", path: "/api/v1/friends", token: token})
	a.expect(t, http.StatusOK, "")
	var list struct {
		Friends []map[string]any `json:"friends"`
	}
	a.decode(t, &list)
	if len(list.Friends) != 1 || list.Friends[0]["key_rotated"] != true {
		t.Fatalf("friends: %+v, want key_rotated true", list.Friends)
	}

	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token, body: `{"safety_number":"00000 00000"}`}).
		expect(t, http.StatusConflict, CodeConflict)
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token, body: `{"safety_number":"12345 67890"}`}).
		expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token, body: `{"safety_number":12345}`}).
		expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token, body: `{}`}).
		expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token}).
		expect(t, http.StatusNoContent, "")
	node.mu.Lock()
	got := slices.Clone(node.verifiedWith)
	node.mu.Unlock()
	if want := []string{"00000 00000", "12345 67890"}; !slices.Equal(got, want) {
		t.Errorf("numbers passed to the node: %q, want %q (none for an empty body)", got, want)
	}
}
