package node

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// recv reads one event or reports that the channel was closed; it fails
// the test if nothing happens within d.
func recv(tb testing.TB, ch <-chan Event, d time.Duration) (Event, bool) {
	tb.Helper()
	select {
	case e, ok := <-ch:
		return e, ok
	case <-time.After(d):
		tb.Fatalf("no event and no close within %v", d)
		return Event{}, false
	}
}

// numberedEvent is a synthetic event carrying i.
func numberedEvent(i int) Event {
	return Event{Type: EventMessage, Message: store.Message{Body: []byte(strconv.Itoa(i))}}
}

func eventNumber(tb testing.TB, e Event) int {
	tb.Helper()
	i, err := strconv.Atoi(string(e.Message.Body))
	if err != nil || e.Type != EventMessage {
		tb.Fatalf("unexpected event %+v", e)
	}
	return i
}

// publishAll publishes events from..to-1 and fails if publishing blocks.
func publishAll(tb testing.TB, n *Node, from, to int) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := from; i < to; i++ {
			n.events.publish(numberedEvent(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		tb.Fatal("publish blocked")
	}
}

func TestEventsMessageAndStatus(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	evA, evB := watch(t, a), watch(t, b)

	m, err := a.Send(ctx, bID, "watch this")
	if err != nil {
		t.Fatal(err)
	}
	e := evB.waitEvent(t, 10*time.Second, "B's message event", func(e Event) bool {
		return e.Type == EventMessage && e.Message.ID == m.ID
	})
	if string(e.Message.Body) != "watch this" || e.Message.From != aID || e.Message.Direction != store.In {
		t.Fatalf("message event: %+v", e.Message)
	}
	ofM := func(st store.Status) func(Event) bool {
		return func(e Event) bool {
			return e.Type == EventMessageStatus && e.Message.ID == m.ID && e.Message.Status == st
		}
	}
	evA.waitEvent(t, 10*time.Second, "A's delivered event", ofM(store.StatusDelivered))
	if err := b.MarkRead(ctx, aID, protocol.MsgID{}); err != nil {
		t.Fatal(err)
	}
	evA.waitEvent(t, 10*time.Second, "A's read event", ofM(store.StatusRead))
	var order []store.Status
	for _, e := range evA.matching(func(e Event) bool { return e.Type == EventMessageStatus && e.Message.ID == m.ID }) {
		order = append(order, e.Message.Status)
	}
	if len(order) != 2 || order[0] != store.StatusDelivered || order[1] != store.StatusRead {
		t.Fatalf("A's status events: %v, want [delivered read]", order)
	}
	if _, ok := evA.find(isType(EventMessage)); ok {
		t.Fatal("the sender got a message event for its own message")
	}
	// Marking read again sends no second receipt and no second event.
	if err := b.MarkRead(ctx, aID, protocol.MsgID{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "B's outbox drains", func() bool { return len(queuedFor(t, b, aID)) == 0 })
	if n := len(evA.matching(ofM(store.StatusRead))); n != 1 {
		t.Fatalf("%d read events, want 1", n)
	}
}

func TestEventsPresence(t *testing.T) {
	cfgB := testConfig(t, "bob-2048")
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, cfgB, "Bob")
	befriend(t, a, b)
	mb := meOf(t, b)
	evA := watch(t, a)
	online := func() bool {
		f, err := a.Friend(context.Background(), mb.UserID)
		return err == nil && f.Online
	}
	if !online() {
		t.Fatal("a befriended, connected friend is not online")
	}

	closeNode(t, b)
	e := evA.waitEvent(t, 10*time.Second, "peer_offline", isType(EventPeerOffline))
	if e.User != mb.UserID || e.Peer != mb.PeerID {
		t.Fatalf("peer_offline for %s / %s, want %s / %s", e.User, e.Peer, mb.UserID, mb.PeerID)
	}
	if online() {
		t.Fatal("friend still online after closing")
	}
	if _, ok := evA.find(isType(EventPeerOnline)); ok {
		t.Fatal("peer_online before the friend came back")
	}

	unlockNode(t, cfgB) // dials A at start
	e = evA.waitEvent(t, 10*time.Second, "peer_online", isType(EventPeerOnline))
	if e.User != mb.UserID || e.Peer != mb.PeerID {
		t.Fatalf("peer_online for %s / %s", e.User, e.Peer)
	}
	waitFor(t, 5*time.Second, "friend online again", online)
	if n := len(evA.matching(isType(EventPeerOffline))); n != 1 {
		t.Fatalf("%d peer_offline events, want 1", n)
	}
}

func TestEventsSlowSubscriber(t *testing.T) {
	n := startNode(t, testConfig(t, "alice-2048"), "Alice")
	slow, cancelSlow := n.Subscribe(context.Background())
	defer cancelSlow()
	fast := watch(t, n)
	received := func() int { return len(fast.matching(isType(EventMessage))) }

	// In two bursts, each smaller than the buffer, so the fast subscriber
	// keeps up while the slow one falls behind.
	const total = subscriberBuffer + 50
	publishAll(t, n, 0, 200)
	waitFor(t, 10*time.Second, "the fast subscriber gets the first burst", func() bool { return received() == 200 })
	publishAll(t, n, 200, total)
	waitFor(t, 10*time.Second, "the fast subscriber gets everything", func() bool { return received() == total })
	if _, ok := fast.find(isType(EventOverflow)); ok {
		t.Fatal("a subscriber that kept up got an overflow")
	}
	for i, e := range fast.matching(isType(EventMessage)) {
		if got := eventNumber(t, e); got != i {
			t.Fatalf("fast event %d is %d", i, got)
		}
	}

	// The slow one has the first subscriberBuffer events, then, once it
	// has room, one overflow notice before the next event.
	for i := 0; i < subscriberBuffer; i++ {
		e, ok := recv(t, slow, time.Second)
		if !ok || eventNumber(t, e) != i {
			t.Fatalf("slow event %d: %+v (open %v)", i, e, ok)
		}
	}
	select {
	case e := <-slow:
		t.Fatalf("the slow subscriber got a lost event: %+v", e)
	default:
	}
	publishAll(t, n, total, total+1)
	if e, _ := recv(t, slow, time.Second); e.Type != EventOverflow {
		t.Fatalf("first event after falling behind: %+v, want overflow", e)
	}
	if e, _ := recv(t, slow, time.Second); eventNumber(t, e) != total {
		t.Fatalf("after the overflow: %+v, want event %d", e, total)
	}
	// Only one overflow notice per gap.
	publishAll(t, n, total+1, total+2)
	if e, _ := recv(t, slow, time.Second); eventNumber(t, e) != total+1 {
		t.Fatalf("next event: %+v", e)
	}
}

// A full subscriber does not hold up the node: messages are still stored
// and acknowledged.
func TestEventsFullSubscriberDoesNotBlockDelivery(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	stuck, cancel := b.Subscribe(ctx)
	defer cancel()
	publishAll(t, b, 0, subscriberBuffer+1) // full, and behind
	texts := numbered("through", 5)
	for _, text := range texts {
		if _, err := a.Send(ctx, bID, text); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "messages delivered past a full subscriber", func() bool {
		return allStatus(convHistory(t, a, bID), store.StatusDelivered)
	})
	checkExactlyOnce(t, convHistory(t, b, aID), texts)
	if len(stuck) != subscriberBuffer {
		t.Fatalf("stuck subscriber holds %d events", len(stuck))
	}
}

func TestEventsCancelClosesChannel(t *testing.T) {
	n := startNode(t, testConfig(t, "alice-2048"), "Alice")

	ch, cancel := n.Subscribe(context.Background())
	if got := n.events.count(); got != 1 {
		t.Fatalf("%d subscribers, want 1", got)
	}
	n.events.publish(numberedEvent(1))
	cancel()
	if e, ok := recv(t, ch, time.Second); !ok || eventNumber(t, e) != 1 {
		t.Fatalf("buffered event after cancel: %+v, %v", e, ok)
	}
	if _, ok := recv(t, ch, time.Second); ok {
		t.Fatal("channel open after cancel")
	}
	cancel() // twice is fine
	n.events.publish(numberedEvent(2))
	if got := n.events.count(); got != 0 {
		t.Fatalf("%d subscribers after cancel", got)
	}

	ctx, stop := context.WithCancel(context.Background())
	ch, cancel = n.Subscribe(ctx)
	stop()
	if _, ok := recv(t, ch, 5*time.Second); ok {
		t.Fatal("channel open after its context ended")
	}
	cancel() // after the context: still fine
	waitFor(t, 5*time.Second, "the subscriber is gone", func() bool { return n.events.count() == 0 })

	// A context that has already ended closes the channel too.
	ch, _ = n.Subscribe(ctx)
	if _, ok := recv(t, ch, 5*time.Second); ok {
		t.Fatal("channel open for an ended context")
	}
}

// Publishing while subscribers come and go never sends on a closed
// channel (the race detector watches).
func TestEventsConcurrentCancel(t *testing.T) {
	n := startNode(t, testConfig(t, "alice-2048"), "Alice")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				n.events.publish(numberedEvent(i))
			}
		}
	}()
	for i := 0; i < 200; i++ {
		ctx, cancelCtx := context.WithCancel(context.Background())
		ch, cancel := n.Subscribe(ctx)
		if i%2 == 0 {
			cancel()
		} else {
			cancelCtx()
		}
		for range ch { // drains, and ends because the channel closes
		}
		cancel()
		cancelCtx()
	}
	close(stop)
	wg.Wait()
	if got := n.events.count(); got != 0 {
		t.Fatalf("%d subscribers left", got)
	}
}
