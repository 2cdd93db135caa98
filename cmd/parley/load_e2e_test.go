package main

// End-to-end load test: many API clients at once on one node, mixing
// sends and reads. Helpers are in e2e_helpers_test.go,
// faults_e2e_test.go and e2e_metrics_test.go.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
)

// loadTally counts API answers by route and status.
type loadTally struct {
	mu     sync.Mutex
	counts map[string]map[int]int // route → status → answers
	errs   []error
}

func (l *loadTally) add(route string, status int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[route] == nil {
		l.counts[route] = make(map[int]int)
	}
	l.counts[route][status]++
	if err != nil {
		l.errs = append(l.errs, err)
	}
}

// String lists the counts, one route a line ("status 0" is a request
// that got no answer).
func (l *loadTally) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	routes := make([]string, 0, len(l.counts))
	for r := range l.counts {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	var sb strings.Builder
	for _, r := range routes {
		statuses := make([]int, 0, len(l.counts[r]))
		for s := range l.counts[r] {
			statuses = append(statuses, s)
		}
		sort.Ints(statuses)
		fmt.Fprintf(&sb, "\n  %-28s", r)
		for _, s := range statuses {
			fmt.Fprintf(&sb, " %d×%d", s, l.counts[r][s])
		}
	}
	return sb.String()
}

// serverErrors counts the 5xx answers.
func (l *loadTally) serverErrors() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, byStatus := range l.counts {
		for s, c := range byStatus {
			if s >= 500 {
				n += c
			}
		}
	}
	return n
}

// loadRead is one of the read requests a load client makes.
type loadRead struct {
	route, path string
	out         func() any // a fresh value the 200 answer decodes into
}

// TestE2ELoad has 100 API clients, each with its own HTTP client, make
// 50 requests each at once on alice: every other one sends a message to
// bob, the others read her history with bob, her friends, her profile or
// her conversations. No answer is a 5xx, every send is a 202 and every
// read a 200 (the API documents no 429 for these routes: it throttles
// only wrong passphrases). Then alice's outgoing history, all delivered,
// equals bob's incoming history: the same messages (IDs and texts, each
// once, the IDs the sends answered) in the same order, which keeps each
// client's send order.
func TestE2ELoad(t *testing.T) {
	t.Parallel()
	start := time.Now()
	a, b := startPair(t)
	t.Logf("alice and bob are friends (%v)", time.Since(start))
	loadStart := time.Now()
	const clients, perClient = 100, 50
	const total = clients * perClient / 2 // the sends
	bob := b.userID
	reads := []loadRead{
		{"GET get_messages", "/api/v1/get_messages?limit=50&with=" + url.QueryEscape(bob), func() any { return new(struct{ Messages []api.Message }) }},
		{"GET friends", "/api/v1/friends", func() any { return new(struct{ Friends []api.Friend }) }},
		{"GET me", "/api/v1/me", func() any { return new(api.Me) }},
		{"GET conversations", "/api/v1/conversations", func() any { return new(struct{ Conversations []api.Conversation }) }},
	}

	tally := &loadTally{counts: make(map[string]map[int]int)}
	sentIDs := make([][]string, clients) // per client, the msg IDs of its sends in order
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newRawSender(a)
			defer s.close()
			for i := range perClient {
				if i%2 == 0 {
					text := fmt.Sprintf("c%03d-%02d", c, i/2)
					body, _ := json.Marshal(map[string]string{"to": bob, "text": text})
					status, b, err := s.do("POST", "/api/v1/send_message", body)
					var r struct {
						ID     string `json:"msg_id"`
						Status string `json:"status"`
					}
					switch {
					case err != nil:
						err = fmt.Errorf("client %d: send %s: %w", c, text, err)
					case status != http.StatusAccepted:
						err = fmt.Errorf("client %d: send %s = %d %s, want 202", c, text, status, b)
					case json.Unmarshal(b, &r) != nil || r.ID == "" || r.Status != "pending":
						err = fmt.Errorf("client %d: send %s answered %s", c, text, b)
					}
					tally.add("POST send_message", status, err)
					if err != nil {
						return // the order of this client's later sends would not say much
					}
					sentIDs[c] = append(sentIDs[c], r.ID)
					continue
				}
				rd := reads[(c+i/2)%len(reads)]
				status, b, err := s.do("GET", rd.path, nil)
				switch {
				case err != nil:
					err = fmt.Errorf("client %d: %s: %w", c, rd.route, err)
				case status != http.StatusOK:
					err = fmt.Errorf("client %d: %s = %d %s, want 200", c, rd.route, status, b)
				default:
					if jerr := json.Unmarshal(b, rd.out()); jerr != nil {
						err = fmt.Errorf("client %d: %s: decoding %s: %w", c, rd.route, b, jerr)
					}
				}
				tally.add(rd.route, status, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d clients made %d requests each in %v (%v); answers by route and status:%s",
		clients, perClient, time.Since(loadStart), time.Since(start), tally)
	if n := tally.serverErrors(); n > 0 {
		t.Errorf("%d answers were 5xx", n)
	}
	for i, err := range tally.errs {
		if i == 20 {
			t.Errorf("... and %d more", len(tally.errs)-20)
			break
		}
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	waitSlow(t, deliverTimeout, 250*time.Millisecond, "all of alice's messages delivered and in bob's store",
		func() bool {
			return allDelivered(split(a.messages(bob), "out"), total) && len(split(b.messages(a.userID), "in")) >= total
		},
		func() string {
			return fmt.Sprintf("alice's sent: %s; bob's received: %d",
				statusCounts(split(a.messages(bob), "out")), len(split(b.messages(a.userID), "in")))
		})
	t.Logf("all delivered (%v)", time.Since(start))

	out := split(a.messages(bob), "out")    // alice's history order: the order she sealed them in
	in := split(b.messages(a.userID), "in") // bob's storage order
	var want []string
	textOf := make(map[string]string, total) // msg ID → text, from the sends' answers
	for c, ids := range sentIDs {
		for i, id := range ids {
			text := fmt.Sprintf("c%03d-%02d", c, i)
			want = append(want, text)
			textOf[id] = text
		}
	}
	checkExactlyOnce(t, "alice, sent", out, want, "delivered")
	checkExactlyOnce(t, "bob, received", in, want, "")
	for _, m := range out {
		if textOf[m.ID] != m.Text {
			t.Errorf("alice has %q as %s, whose send answered %q", m.Text, m.ID, textOf[m.ID])
		}
	}
	for i := range out {
		if in[i].ID != out[i].ID || in[i].Text != out[i].Text {
			lo, hi := max(0, i-3), min(len(out), i+4)
			t.Fatalf("alice's history and bob's differ first at position %d: alice %s %q, bob %s %q (alice[%d:%d] = %q, bob[%d:%d] = %q)",
				i, out[i].ID, out[i].Text, in[i].ID, in[i].Text, lo, hi, texts(out[lo:hi]), lo, hi, texts(in[lo:hi]))
		}
	}
	// Each client's messages in the order it sent them.
	last := make([]int, clients)
	for c := range last {
		last[c] = -1
	}
	for pos, m := range in {
		var c, i int
		if _, err := fmt.Sscanf(m.Text, "c%d-%d", &c, &i); err != nil || c < 0 || c >= clients {
			t.Errorf("unexpected message %q", m.Text)
			continue
		}
		if i <= last[c] {
			t.Errorf("client %d's %q at position %d comes after its message %d", c, m.Text, pos, last[c])
		}
		last[c] = i
	}
	t.Logf("done in %v", time.Since(start))
}
