package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/parley-chat/parley/api"
)

// TestE2ERoughEdges drives the flows a new user met through the API of two
// real processes: adding a friend by the short invite, white space refused,
// deleting a message, retrying one that has not failed, and a removal the
// removed friend's node learns of.
func TestE2ERoughEdges(t *testing.T) {
	t.Parallel()
	a := startProc(t, "alice", t.TempDir(), nil, "")
	b := startProc(t, "bob", t.TempDir(), nil, "")
	a.register("Alice")
	b.register("Bob")

	var me api.Me
	b.must("GET", "/api/v1/me", nil, http.StatusOK, &me)
	if !strings.HasPrefix(me.ShortInvite, "parley:invite/") || len(me.ShortInvite) > 200 {
		t.Fatalf("short invite %q", me.ShortInvite)
	}
	t.Logf("invite links: short %d characters, card %d", len(me.ShortInvite), len(me.Invite))
	var f api.Friend
	a.must("POST", "/api/v1/friends", map[string]string{"invite": me.ShortInvite}, http.StatusCreated, &f)
	if f.UserID != b.userID || f.Name != "Bob" || f.Status != "pending_out" {
		t.Fatalf("alice added bob by the short invite: %+v", f)
	}
	waitFor(t, waitTimeout, "bob sees alice's request", func() bool { return b.friendStatus(a.userID) == "pending_in" })
	b.must("POST", "/api/v1/friends", map[string]string{"user_id": a.userID}, http.StatusCreated, &f)
	waitFor(t, waitTimeout, "alice sees bob's accept", func() bool { return a.friendStatus(b.userID) == "accepted" })
	resp, body := a.call("POST", "/api/v1/friends", map[string]string{"invite": "parley:invite/AAAA"}, nil)
	if resp.StatusCode != http.StatusBadRequest || errorCode(body) != string(api.CodeBadInvite) {
		t.Fatalf("a bad short invite: %s %s", resp.Status, body)
	}

	resp, body = a.call("POST", "/api/v1/send_message", map[string]string{"to": b.userID, "text": " \n\t "}, nil)
	if resp.StatusCode != http.StatusBadRequest || errorCode(body) != string(api.CodeEmptyText) {
		t.Fatalf("white space: %s %s", resp.Status, body)
	}

	gone := a.send(b.userID, "to be deleted")
	kept := a.send(b.userID, "kept")
	waitFor(t, waitTimeout, "both delivered", func() bool { return allStatus(split(a.messages(b.userID), "out"), 2, "delivered") })
	a.must("DELETE", "/api/v1/messages/"+gone, nil, http.StatusNoContent, nil)
	if ms := a.messages(b.userID); len(ms) != 1 || ms[0].ID != kept {
		t.Fatalf("alice's history after the delete: %+v", ms)
	}
	if ms := b.messages(a.userID); len(ms) != 2 {
		t.Fatalf("bob's history changed: %d messages", len(ms))
	}
	for _, c := range []struct {
		method, path string
		status       int
		code         api.Code
	}{
		{"DELETE", "/api/v1/messages/" + gone, http.StatusNotFound, api.CodeNotFound},
		{"POST", "/api/v1/messages/" + kept + "/retry", http.StatusConflict, api.CodeNotRetryable},
		{"POST", "/api/v1/messages/" + gone + "/retry", http.StatusNotFound, api.CodeNotFound},
		{"POST", "/api/v1/messages/xyz/retry", http.StatusBadRequest, api.CodeBadRequest},
	} {
		resp, body := a.call(c.method, c.path, nil, nil)
		if resp.StatusCode != c.status || errorCode(body) != string(c.code) {
			t.Errorf("%s %s = %s %s, want %d %s", c.method, c.path, resp.Status, body, c.status, c.code)
		}
	}

	// Alice removes Bob: Bob's node learns it and refuses to send to her.
	a.must("DELETE", "/api/v1/friends/"+b.userID, nil, http.StatusNoContent, nil)
	waitFor(t, waitTimeout, "bob sees the removal", func() bool { return b.friendStatus(a.userID) == "removed_by_peer" })
	resp, body = b.call("POST", "/api/v1/send_message", map[string]string{"to": a.userID, "text": "still friends?"}, nil)
	if resp.StatusCode != http.StatusConflict || errorCode(body) != string(api.CodeRemovedByPeer) {
		t.Fatalf("bob sends to alice after the removal: %s %s", resp.Status, body)
	}
	if ms := b.messages(a.userID); len(ms) != 2 {
		t.Fatalf("bob's history with alice after the removal: %d messages, want 2", len(ms))
	}
}
