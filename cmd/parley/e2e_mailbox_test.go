package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
)

// metricValue reads one sample (name with its labels, as printed) from a
// Prometheus endpoint through client; -1 when it is not there.
func metricValue(t *testing.T, client *http.Client, url, sample string) float64 {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` ([0-9.e+]+)$`).FindSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestE2EMailbox: a `parley relay` (mailbox on by default) and two
// `parley run --bootstrap <relay>`. Bob's node is stopped; Alice's
// messages go to his mailbox (sent, path mailbox); Bob starts again and
// gets each once, in order, and Alice sees them delivered.
func TestE2EMailbox(t *testing.T) {
	relay, metrics := startRelayProc(t)
	a := startProc(t, "alice", t.TempDir(), nil, "", envBootstrap+"="+relay)
	b := startProc(t, "bob", t.TempDir(), nil, "", envBootstrap+"="+relay)
	a.register("Alice")
	b.register("Bob")
	befriend(t, a, b)
	metric := func(sample string) float64 { return metricValue(t, http.DefaultClient, metrics, sample) }
	b = mailboxRoundTrip(t, a, b, metric, 20)
	if got := metric(`parley_mailbox_deposits_total{result="ok"}`); got < 20 {
		t.Errorf("relay counted %v deposits, want at least 20", got)
	}
	waitFor(t, waitTimeout, "the relay drops what bob stored", func() bool {
		return metric(`parley_mailbox_envelopes_held`) == 0
	})
}

// mailboxRoundTrip stops Bob's node, has Alice send n messages, which
// must go to Bob's mailbox (sent, path mailbox), starts Bob again, and
// checks he gets each once, in order, and Alice sees them delivered
// (metric reads the relay's metrics). It returns Bob's new process.
func mailboxRoundTrip(t *testing.T, a, b *proc, metric func(sample string) float64, n int) *proc {
	t.Helper()
	// Both nodes have subscribed at the relay (one long-lived fetch each;
	// a refused one counts under its code), which registers Bob there.
	waitFor(t, waitTimeout, "bob takes mail at the relay", func() bool {
		return metric(`parley_mailbox_fetches_total{result="ok"}`) >= 2
	})
	b.stop()

	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("while you were away %d", i))
		a.send(b.userID, want[i])
	}
	waitFor(t, waitTimeout, "alice's messages are deposited", func() bool {
		out := split(a.messages(b.userID), "out")
		if len(out) != n {
			return false
		}
		for _, m := range out {
			if m.Status != "sent" || m.Path != "mailbox" {
				return false
			}
		}
		return true
	})

	b = b.restart(true)
	waitFor(t, waitTimeout, "bob gets them", func() bool { return len(split(b.messages(a.userID), "in")) >= n })
	in := split(b.messages(a.userID), "in")
	if len(in) != n {
		t.Fatalf("bob holds %d messages, want %d", len(in), n)
	}
	for i, m := range in {
		if m.Text != want[i] {
			t.Fatalf("message %d is %q, want %q (in order, once each)", i, m.Text, want[i])
		}
	}
	waitFor(t, waitTimeout, "alice sees them delivered", func() bool {
		for _, m := range split(a.messages(b.userID), "out") {
			if m.Status != "delivered" || m.Path != "mailbox" {
				return false
			}
		}
		return true
	})
	return b
}
