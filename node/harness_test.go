package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// testClock is an injectable clock. A running clock follows the wall
// clock plus an offset that Advance moves forward (timers, backoff and
// stream deadlines keep working); a frozen clock moves only when told.
type testClock struct {
	mu     sync.Mutex
	off    time.Duration
	frozen time.Time // zero for a running clock
}

func newRunningClock() *testClock { return &testClock{} }

func newFrozenClock() *testClock {
	return &testClock{frozen: time.Now().Truncate(time.Second)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		return c.frozen
	}
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		c.frozen = c.frozen.Add(d)
		return
	}
	c.off += d
}

// unlockNode opens an existing data directory (cfg.DataDir) with testPass
// and closes the node when the test ends.
func unlockNode(tb testing.TB, cfg Config) *Node {
	tb.Helper()
	n, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { n.Close() })
	if got := n.State(); got != StateLocked {
		tb.Fatalf("State of a registered directory = %s, want %s", got, StateLocked)
	}
	if err := n.Unlock(context.Background(), []byte(testPass)); err != nil {
		tb.Fatalf("Unlock: %v", err)
	}
	return n
}

// closeNode closes n and fails the test on an error.
func closeNode(tb testing.TB, n *Node) {
	tb.Helper()
	if err := n.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

// meOf returns n's own user.
func meOf(tb testing.TB, n *Node) Me {
	tb.Helper()
	me, err := n.Me(context.Background())
	if err != nil {
		tb.Fatalf("Me: %v", err)
	}
	return me
}

// unlockedOf returns n's running session (tests live in package node).
func unlockedOf(tb testing.TB, n *Node) *unlocked {
	tb.Helper()
	s, err := n.running()
	if err != nil {
		tb.Fatalf("session: %v", err)
	}
	return s
}

// convHistory returns the whole conversation of n with user, oldest first.
func convHistory(tb testing.TB, n *Node, with protocol.ID) []store.Message {
	tb.Helper()
	ms, _, err := n.Messages(context.Background(), with, "", store.MaxPageSize)
	if err != nil {
		tb.Fatalf("Messages: %v", err)
	}
	out := make([]store.Message, len(ms))
	for i, m := range ms {
		out[len(ms)-1-i] = m
	}
	return out
}

// queuedFor lists n's outbox entries (messages and control envelopes) for
// user.
func queuedFor(tb testing.TB, n *Node, user protocol.ID) []store.OutboxEntry {
	tb.Helper()
	es, err := unlockedOf(tb, n).st.OutboxQueue(context.Background(), user, 0, 1<<20)
	if err != nil {
		tb.Fatalf("OutboxQueue: %v", err)
	}
	var out []store.OutboxEntry
	for _, e := range es {
		if e.Recipient == user {
			out = append(out, e)
		}
	}
	return out
}

// friendStatus is n's view of user's status, "" if unknown.
func friendStatus(n *Node, user protocol.ID) store.FriendStatus {
	f, err := n.Friend(context.Background(), user)
	if err != nil {
		return ""
	}
	return f.Status
}

// allStatus reports whether every message in ms has status st.
func allStatus(ms []store.Message, st store.Status) bool {
	for _, m := range ms {
		if m.Status != st {
			return false
		}
	}
	return true
}

// bodies are the messages' bodies, in order.
func bodies(ms []store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

// numbered is "prefix 0", "prefix 1", ...
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

// checkExactlyOnce fails unless ms holds want, in order, each message ID
// once.
func checkExactlyOnce(tb testing.TB, ms []store.Message, want []string) {
	tb.Helper()
	seen := make(map[protocol.MsgID]bool)
	for _, m := range ms {
		if seen[m.ID] {
			tb.Errorf("message %s stored twice", m.ID)
		}
		seen[m.ID] = true
	}
	if got := bodies(ms); strings.Join(got, "|") != strings.Join(want, "|") {
		tb.Fatalf("history = %q\nwant      %q", got, want)
	}
}

// eventWaiter collects a subscription's events for the test to wait on.
type eventWaiter struct {
	mu     sync.Mutex
	events []Event
	closed bool
}

// watch subscribes to n's events until the test ends.
func watch(tb testing.TB, n *Node) *eventWaiter {
	tb.Helper()
	ch, cancel := n.Subscribe(context.Background())
	w := &eventWaiter{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range ch {
			w.mu.Lock()
			w.events = append(w.events, e)
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
	}()
	tb.Cleanup(func() { cancel(); <-done })
	return w
}

// find returns the first event matching match, if any arrived.
func (w *eventWaiter) find(match func(Event) bool) (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.events {
		if match(e) {
			return e, true
		}
	}
	return Event{}, false
}

// matching returns every event that matches, in arrival order.
func (w *eventWaiter) matching(match func(Event) bool) []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Event
	for _, e := range w.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for an event matching match and returns it.
func (w *eventWaiter) waitEvent(tb testing.TB, d time.Duration, what string, match func(Event) bool) Event {
	tb.Helper()
	var got Event
	waitFor(tb, d, what, func() bool {
		e, ok := w.find(match)
		got = e
		return ok
	})
	return got
}

func isType(t EventType) func(Event) bool {
	return func(e Event) bool { return e.Type == t }
}
