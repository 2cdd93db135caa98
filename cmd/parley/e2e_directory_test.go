package main

import (
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
)

var (
	relayAddrLine    = regexp.MustCompile(`(?m)^  (/ip4/127\.0\.0\.1/tcp/[0-9]+/p2p/\S+)$`)
	relayMetricsLine = regexp.MustCompile(`(?m)^Metrics: (http://127\.0\.0\.1:[0-9]+/metrics)$`)
)

// startRelayProc runs `parley relay` on loopback with metrics and returns
// its TCP bootstrap address and metrics URL; it is stopped (SIGTERM, clean
// exit) when the test ends.
func startRelayProc(t *testing.T) (addr, metrics string) {
	t.Helper()
	return startRelayProcIn(t, "", relayAddrLine, "--listen", "/ip4/127.0.0.1/tcp/0")
}

// startRelayProcIn runs `parley relay` with args in network namespace ns
// (none when "") and returns the first of its printed addresses that
// addrLine matches (its first group).
func startRelayProcIn(t *testing.T, ns string, addrLine *regexp.Regexp, args ...string) (addr, metrics string) {
	t.Helper()
	args = append([]string{"relay", "--data-dir", t.TempDir(), "--metrics", "127.0.0.1:0"}, args...)
	cmd := exec.Command(parleyBinary(t), args...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, cmd.Path}, args...)...)
	}
	cmd.Env = childEnv()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("relay did not exit cleanly: %v", err)
			}
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			t.Errorf("relay did not exit within %v of SIGTERM", stopTimeout)
		}
		if t.Failed() {
			t.Logf("relay stdout:\n%s\nrelay stderr:\n%s", stdout, stderr)
		}
	})
	waitFor(t, startTimeout, "the relay's addresses", func() bool {
		return addrLine.MatchString(stdout.String()) && relayMetricsLine.MatchString(stdout.String())
	})
	return addrLine.FindStringSubmatch(stdout.String())[1], relayMetricsLine.FindStringSubmatch(stdout.String())[1]
}

// TestThreeProcessDirectory is the README's network: one `parley relay`
// and two `parley run --bootstrap <relay>`. Bob finds Alice by name, adds
// her by user ID alone (no invite), and they chat.
func TestThreeProcessDirectory(t *testing.T) {
	relay, metrics := startRelayProc(t)
	a := startProc(t, "alice", t.TempDir(), nil, "", envBootstrap+"="+relay)
	b := startProc(t, "bob", t.TempDir(), nil, "", envBootstrap+"="+relay)
	a.register("Alice")
	b.register("Bob")

	// Name search: every claim is checked against the signed record.
	var found []api.SearchResult
	waitFor(t, waitTimeout, "bob finds alice by name", func() bool {
		var r struct {
			Results []api.SearchResult `json:"results"`
		}
		b.must("GET", "/api/v1/directory/search?name="+url.QueryEscape(" ALICE "), nil, http.StatusOK, &r)
		found = r.Results
		return len(found) == 1
	})
	if found[0].UserID != a.userID || found[0].Name != "Alice" || found[0].Friend {
		t.Fatalf("search result %+v", found[0])
	}
	var e api.DirectoryEntry
	b.must("GET", "/api/v1/directory/"+a.userID, nil, http.StatusOK, &e)
	if e.UserID != a.userID || e.Name != "Alice" || len(e.Devices) != 1 || e.Seq == 0 || !e.ExpiresAt.After(time.Now()) {
		t.Fatalf("directory entry %+v", e)
	}
	_, body := b.call("GET", "/api/v1/directory/"+strings.Repeat("a", 52), nil, nil)
	if code := errorCode(body); code != "not_found" {
		t.Errorf("lookup of a user nobody published: code %q (%s)", code, body)
	}

	// Bob adds Alice by user ID alone; Alice accepts by user ID.
	var f api.Friend
	b.must("POST", "/api/v1/friends", map[string]string{"user_id": a.userID}, http.StatusCreated, &f)
	if f.UserID != a.userID || f.Status != "pending_out" {
		t.Fatalf("bob added alice by ID: %+v", f)
	}
	waitFor(t, waitTimeout, "alice sees bob's request", func() bool { return a.friendStatus(b.userID) == "pending_in" })
	a.must("POST", "/api/v1/friends", map[string]string{"user_id": b.userID}, http.StatusCreated, &f)
	waitFor(t, waitTimeout, "bob sees alice's accept", func() bool { return b.friendStatus(a.userID) == "accepted" })

	b.send(a.userID, "hello alice, found you in the directory")
	a.send(b.userID, "hello bob")
	waitFor(t, waitTimeout, "both messages delivered", func() bool {
		in := split(a.messages(b.userID), "in")
		out := split(b.messages(a.userID), "in")
		return len(in) == 1 && len(out) == 1
	})
	waitFor(t, waitTimeout, "bob's message shows delivered", func() bool {
		out := split(b.messages(a.userID), "out")
		return len(out) == 1 && out[0].Status == "delivered"
	})

	// The relay's metrics count what it stored and served.
	resp, err := http.Get(metrics)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"parley_dht_records_stored", `parley_dht_requests_served_total{type="GET_VALUE"}`, "parley_relay_reservations", "libp2p_"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("relay metrics lack %s", want)
		}
	}
}

// TestE2ERotateKey: Alice stops her node, rotates her key with `parley
// rotate-key`, and starts again. Bob's node moves to her new key (the card
// she sends proves the rotation; no directory here), they chat both ways,
// and the safety numbers are what they were.
func TestE2ERotateKey(t *testing.T) {
	a, b := startPair(t)
	safety := func(p *proc, id string) string {
		for _, f := range p.friends() {
			if f.UserID == id {
				return f.SafetyNumber
			}
		}
		return ""
	}
	sa, sb := safety(a, b.userID), safety(b, a.userID)
	if sa == "" || sa != sb {
		t.Fatalf("safety numbers %q / %q", sa, sb)
	}
	a.send(b.userID, "before the rotation")
	a.stop()
	out, err := exec.Command(parleyBinary(t), "rotate-key", "--data-dir", a.dataDir, "--passphrase-file", a.passFile).CombinedOutput()
	if err != nil {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Rotated the identity key of "+a.userID) {
		t.Fatalf("rotate-key printed %q", out)
	}
	a = a.restart(true)
	var me api.Me
	a.must("GET", "/api/v1/me", nil, http.StatusOK, &me)
	if me.UserID != a.userID {
		t.Fatalf("user ID after the rotation: %s, was %s", me.UserID, a.userID)
	}
	a.send(b.userID, "after the rotation")
	b.send(a.userID, "to the new key")
	waitFor(t, waitTimeout, "both messages arrive", func() bool {
		return len(split(b.messages(a.userID), "in")) == 2 && len(split(a.messages(b.userID), "in")) == 1
	})
	if got := safety(b, a.userID); got != sb {
		t.Errorf("Bob's safety number for Alice changed: %q, was %q", got, sb)
	}
	if got := safety(a, b.userID); got != sa {
		t.Errorf("Alice's safety number for Bob changed: %q, was %q", got, sa)
	}
}
