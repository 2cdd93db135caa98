package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/node/audit"
	"github.com/parley-chat/parley/protocol"
)

// auditClient calls a real API server in front of a real node.
type auditClient struct {
	t     *testing.T
	base  string
	token string
}

func (c *auditClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *auditClient) must(method, path string, body any, status int) []byte {
	c.t.Helper()
	got, b := c.do(method, path, body)
	if got != status {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, got, b, status)
	}
	return b
}

// TestAuditLogEvents drives a real node through its API (and a friend's
// node, and the node events that are hard to provoke, fed to the same
// recorder) and checks that audit.log has a line for every event type,
// and that no line holds a message text or a passphrase of the test.
func TestAuditLogEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := testNodeConfig(t, t.TempDir(), "alice-2048")
	cfg.LoginBackoff = 300 * time.Millisecond
	cfg.BackupWorkFactor = 10
	keys := []*protocol.PrivateKey{fixtureKey(t, "alice-2048"), fixtureKey(t, "carol-2048")}
	cfg.NewKey = func(int) (*protocol.PrivateKey, error) { // a new key for the rotation
		k := keys[0]
		keys = keys[1:]
		return k, nil
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	log := slog.New(slog.DiscardHandler)
	alog, stopAudit, err := startAudit(ctx, n, log)
	if err != nil {
		t.Fatal(err)
	}
	napi := newNodeAPI(n)
	napi.audit = alog
	srv, err := api.New(napi, api.Options{Logger: log, Auditor: apiAuditor{alog}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	sctx, stopServe := context.WithCancel(ctx)
	go func() { served <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() { stopServe(); <-served })
	c := &auditClient{t: t, base: "http://" + ln.Addr().String() + "/api/v1"}

	const wrongPass = "wrong passphrase 42"
	texts := []string{"audit secret text one", "audit secret text two"}
	var reg struct{ Token string }
	json.Unmarshal(c.must("POST", "/register", map[string]string{"name": "Alice", "passphrase": testPass}, http.StatusCreated), &reg)
	c.token = reg.Token
	c.must("POST", "/logout", nil, http.StatusNoContent)
	c.token = ""
	for range 5 {
		c.must("POST", "/login", map[string]string{"passphrase": wrongPass}, http.StatusUnauthorized)
	}
	c.must("POST", "/login", map[string]string{"passphrase": wrongPass}, http.StatusTooManyRequests)
	var login struct{ Token string }
	waitFor(t, 10*time.Second, "the throttle to pass", func() bool {
		st, b := c.do("POST", "/login", map[string]string{"passphrase": testPass})
		json.Unmarshal(b, &login)
		return st == http.StatusOK
	})
	c.token = login.Token

	// A friend, a chat, a verification, a rotation, a backup.
	bob := registeredNode(t, "bob-2048", "Bob")
	bme, err := bob.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ame, err := n.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.must("POST", "/friends", map[string]string{"invite": bme.Invite}, http.StatusCreated)
	waitFor(t, 10*time.Second, "Bob sees the request", func() bool {
		f, err := bob.Friend(ctx, ame.UserID)
		return err == nil && f.Status == "pending_in"
	})
	if _, err := bob.AcceptFriend(ctx, ame.UserID); err != nil {
		t.Fatal(err)
	}
	bid := bme.UserID.String()
	waitFor(t, 10*time.Second, "Alice sees the accept", func() bool {
		_, b := c.do("GET", "/friends", nil)
		return bytes.Contains(b, []byte(`"accepted"`))
	})
	c.must("POST", "/send_message", map[string]string{"to": bid, "text": texts[0]}, http.StatusAccepted)
	c.must("POST", "/friends/"+bid+"/verify", nil, http.StatusNoContent)
	c.must("POST", "/keys/rotate", nil, http.StatusOK)
	c.must("POST", "/backup", map[string]string{"passphrase": wrongPass}, http.StatusForbidden)
	c.must("POST", "/backup", map[string]string{"passphrase": testPass}, http.StatusOK)

	// Blocked, Bob's next message is refused: one counted line.
	c.must("POST", "/friends/"+bid+"/block", nil, http.StatusOK)
	if _, err := bob.Send(ctx, ame.UserID, texts[1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the refusal in the audit log", func() bool {
		evs, _ := alog.Recent(100)
		for _, e := range evs {
			if e.Type == audit.EnvelopesRefused {
				return true
			}
		}
		return false
	})
	c.must("DELETE", "/friends/"+bid, nil, http.StatusNoContent)

	// What the node reports and this test cannot easily provoke: a
	// request from a stranger, a friend's rotation, key change and fork.
	for _, typ := range []node.EventType{node.EventFriendRequest, node.EventFriendKeyRotated, node.EventFriendKeyChanged, node.EventKeyFork} {
		recordNodeEvent(alog, node.Event{Type: typ, Friend: node.Friend{}})
	}
	c.must("POST", "/logout", nil, http.StatusNoContent)
	auditCLI(cfg.DataDir, audit.BackupRestored, map[string]string{"via": "cli"})

	var got struct{ Events []api.AuditEvent }
	c.token = login.Token
	stopAudit()
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, audit.File))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var e api.AuditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		seen[e.Event]++
		got.Events = append(got.Events, e)
	}
	for _, want := range []string{
		audit.Registered, audit.Login, audit.LoginFailed, audit.LoginThrottled, audit.TokenIssued, audit.TokenRevoked,
		audit.FriendAdded, audit.FriendRequest, audit.FriendAccepted, audit.FriendRemoved, audit.FriendBlocked,
		audit.FriendVerified, audit.KeyRotated, audit.FriendKeyRotated, audit.FriendKeyChanged, audit.KeyFork,
		audit.EnvelopesRefused, audit.BackupMade, audit.BackupRefused, audit.BackupRestored,
	} {
		if seen[want] == 0 {
			t.Errorf("no %s line in audit.log", want)
		}
	}
	if seen[audit.LoginFailed] != 5 {
		t.Errorf("%d login_failed lines, want 5", seen[audit.LoginFailed])
	}
	for _, secret := range append(texts, testPass, wrongPass, reg.Token, login.Token) {
		if strings.Contains(string(b), secret) {
			t.Errorf("audit.log holds %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("audit.log:\n%s", b)
	}
}
