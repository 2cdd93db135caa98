package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// natLabAddrLine is the relay's TCP address on the lab's public side.
var natLabAddrLine = regexp.MustCompile(`(?m)^  (/ip4/` + regexp.QuoteMeta(relayIP) + `/tcp/[0-9]+/p2p/\S+)$`)

// holePunchTimeout is how long after two nodes first connect (through
// the relay) a direct path must exist.
const holePunchTimeout = 30 * time.Second

// TestNATRelayThenDirect: Alice and Bob, each behind a home router doing
// NAT, bootstrap from a relay on the public side, find each other by user
// ID and chat at once, through the relay's circuit while nothing else
// connects them; hole punching then makes a direct connection, and
// messages go direct. Each message's path is checked against the routers'
// counters, which say what really carried the bytes. The same again right
// after Bob restarts.
func TestNATRelayThenDirect(t *testing.T) {
	lab, a, b, _ := natPair(t)
	chatUntilDirect(t, lab, b, a, lab.homes[1], "before a restart")

	// Right after a restart, the same: at once, then direct.
	b = b.restart(true)
	chatUntilDirect(t, lab, b, a, lab.homes[1], "after bob restarted")
	chatUntilDirect(t, lab, a, b, lab.homes[0], "alice to bob after bob restarted")
}

// natPair starts the lab (two homes behind NATs), a relay on its public
// side, and Alice and Bob, each in a home, who find each other by user ID
// and become friends; metrics is the relay's metrics URL.
func natPair(t *testing.T) (lab *natLab, a, b *proc, metrics string) {
	lab = newNATLab(t, 2)
	relay, metrics := startRelayProcIn(t, lab.pub, natLabAddrLine,
		"--listen", "/ip4/"+relayIP+"/tcp/4001", "--listen", "/ip4/"+relayIP+"/udp/4001/quic-v1")
	// Both of the relay's addresses, as its start-up message lists them:
	// QUIC dials from the listening port, so the relay sees (and tells)
	// the NAT's mapping of it even right after a restart, when TCP's
	// port is still held by the old connection's TIME_WAIT.
	_, relayID, _ := strings.Cut(relay, "/p2p/")
	boot := envBootstrap + "=" + relay + ",/ip4/" + relayIP + "/udp/4001/quic-v1/p2p/" + relayID
	// Each in its own home, on the default port, as on any device.
	listen := []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}
	// libp2p's own account of the hole punch, in the logs of a failed run.
	logs := "GOLOG_LOG_LEVEL=error,p2p-holepunch=debug"
	a = startProcIn(t, lab.homes[0].ns, "alice", t.TempDir(), listen, "", boot, logs)
	b = startProcIn(t, lab.homes[1].ns, "bob", t.TempDir(), listen, "", boot, logs)
	a.register("Alice")
	b.register("Bob")

	// Bob adds Alice by user ID: her directory record names her relay,
	// where she holds a slot from the start. Alice accepts by ID.
	start := time.Now()
	waitFor(t, waitTimeout, "bob finds alice in the directory", func() bool {
		resp, _ := b.call("GET", "/api/v1/directory/"+a.userID, nil, nil)
		return resp.StatusCode == http.StatusOK
	})
	b.must("POST", "/api/v1/friends", map[string]string{"user_id": a.userID}, http.StatusCreated, nil)
	waitFor(t, waitTimeout, "alice sees bob's request", func() bool { return a.friendStatus(b.userID) == "pending_in" })
	a.must("POST", "/api/v1/friends", map[string]string{"user_id": b.userID}, http.StatusCreated, nil)
	waitFor(t, waitTimeout, "bob sees alice's accept", func() bool { return b.friendStatus(a.userID) == "accepted" })
	t.Logf("friends %v after bob looked alice up", time.Since(start).Round(time.Millisecond))
	if n := lab.counter(lab.homes[1], "relay"); n == 0 {
		t.Fatal("bob's router forwarded nothing to the relay")
	}
	return lab, a, b, metrics
}

// chatUntilDirect sends from → to, a message every 250 ms as a person
// typing, each delivered before the next, until one goes direct; it fails
// unless that happens within holePunchTimeout. Every path is checked
// against the counters of the sender's home router: a message labelled
// relay moved packets to the relay, one labelled direct moved packets
// elsewhere (to the other home's router).
func chatUntilDirect(t *testing.T, lab *natLab, from, to *proc, home natHome, when string) {
	t.Helper()
	start := time.Now()
	pace := time.NewTicker(250 * time.Millisecond)
	defer pace.Stop()
	for i := 1; ; i++ {
		relayed, direct := lab.counter(home, "relay"), lab.counter(home, "direct")
		n := len(split(from.messages(to.userID), "out")) + 1
		sent := time.Now()
		from.send(to.userID, fmt.Sprintf("%s: message %d", when, i))
		var path string
		waitFor(t, waitTimeout, fmt.Sprintf("%s: message %d delivered", when, i), func() bool {
			out := split(from.messages(to.userID), "out")
			if len(out) < n || out[n-1].Status != "delivered" {
				return false
			}
			path = out[n-1].Path
			return true
		})
		took := time.Since(sent)
		relayed, direct = lab.counter(home, "relay")-relayed, lab.counter(home, "direct")-direct
		t.Logf("%s: message %d delivered in %v by %s (packets to the relay %d, elsewhere %d), %v after the first",
			when, i, took.Round(time.Millisecond), path, relayed, direct, time.Since(start).Round(time.Millisecond))
		switch path {
		case "relay":
			if relayed == 0 {
				t.Fatalf("%s: message %d says relay, but nothing went to the relay", when, i)
			}
		case "direct":
			if direct == 0 {
				t.Fatalf("%s: message %d says direct, but nothing went anywhere but the relay", when, i)
			}
			return
		default:
			t.Fatalf("%s: message %d delivered with path %q", when, i, path)
		}
		if time.Since(start) > holePunchTimeout {
			t.Fatalf("%s: still no direct path %v after the first message", when, holePunchTimeout)
		}
		<-pace.C
	}
}

// TestNATMailbox: Alice and Bob, each behind a NAT, are friends; Bob's
// node stops; Alice's 50 messages go to his mailbox on the relay (sent,
// path mailbox); Bob starts again behind his NAT, fetches them (each once,
// in order), and Alice sees them delivered.
func TestNATMailbox(t *testing.T) {
	lab, a, b, metrics := natPair(t)
	client := nsHTTPClient(lab.pub) // the relay's metrics are on loopback in its namespace
	mailboxRoundTrip(t, a, b, func(sample string) float64 { return metricValue(t, client, metrics, sample) }, 50)
}
