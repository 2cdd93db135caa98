package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parley-chat/parley/protocol"

	"github.com/parley-chat/parley/store"
)

// TestPartFailureClosesNode: a part whose serve fails stops the node —
// it closes (releasing its data directory), says why (Err), and refuses
// calls — instead of running on without it.
func TestPartFailureClosesNode(t *testing.T) {
	errBoom := errors.New("boom")
	fail := make(chan struct{})
	cfg := testConfig(t, "alice-2048")
	cfg.extraParts = []part{{name: "failing", serve: func(ctx context.Context) error {
		select {
		case <-fail:
			return errBoom
		case <-ctx.Done():
			return nil
		}
	}}}
	n := startNode(t, cfg, "Alice")
	if got := n.State(); got != StateUnlocked {
		t.Fatalf("State = %s, want unlocked", got)
	}
	close(fail)
	select {
	case <-n.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not close after a part failed")
	}
	if got := n.State(); got != StateClosed {
		t.Fatalf("State after a failed part = %s, want closed", got)
	}
	if err := n.Err(); !errors.Is(err, errBoom) {
		t.Fatalf("Err = %v, want the part's error", err)
	}
	if _, err := n.Me(context.Background()); !isErr(err, ErrClosed) {
		t.Fatalf("Me after the failure: %v, want ErrClosed", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close after the failure: %v", err)
	}
	// The data directory is free again: a new node can open it.
	cfg.extraParts = nil
	closeNode(t, unlockNode(t, cfg))
}

// TestCloseInFlight closes a node while its API-side calls are in
// flight — sends to a friend, messages arriving from that friend, a key
// rotation — and checks that nothing acknowledged is lost (every Send
// that returned nil is in the store after a restart; every message the
// friend shows delivered is in it too) and that no goroutine is left
// behind once both nodes are closed.
func TestCloseInFlight(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	acfg := testConfig(t, "alice-2048")
	acfg.NewKey = keyQueue(fixtureKey(t, "alice-2048"), fixtureKey(t, "alice-3072"))
	a, err := New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Register(ctx, "Alice", []byte(testPass)); err != nil {
		t.Fatal(err)
	}
	b, err := New(testConfig(t, "bob-2048"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctx, "Bob", []byte(testPass)); err != nil {
		t.Fatal(err)
	}
	befriend(t, a, b)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID

	// Traffic both ways, until A is closed under it.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted []string // texts whose Send on A returned nil
	)
	stop := make(chan struct{})
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keepSending(t, a, bID, fmt.Sprintf("a%d", w), stop, func(text string) {
				mu.Lock()
				accepted = append(accepted, text)
				mu.Unlock()
			})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		keepSending(t, b, aID, "b", stop, nil)
	}()
	rotated := make(chan error, 1)
	go func() { rotated <- a.RotateKey(ctx) }()

	// Close A once traffic flows both ways.
	waitFor(t, 30*time.Second, "messages flowing both ways", func() bool {
		mu.Lock()
		sent := len(accepted)
		mu.Unlock()
		// B shows one of its messages to A delivered (A stored it).
		ms, _, err := b.Messages(ctx, aID, "", 50)
		delivered := 0
		for _, m := range ms {
			if m.Direction == store.Out && m.Status == store.StatusDelivered {
				delivered++
			}
		}
		return err == nil && sent > 20 && delivered > 0
	})
	if err := a.Close(); err != nil {
		t.Fatalf("Close while busy: %v", err)
	}
	if got := a.State(); got != StateClosed {
		t.Fatalf("State after Close = %s", got)
	}
	close(stop)
	wg.Wait()
	if err := <-rotated; err != nil && !isErr(err, ErrClosed) && !errors.Is(err, store.ErrClosed) {
		// A rotation cut short by Close may fail; it must not hang.
		t.Logf("RotateKey during Close: %v", err)
	}
	bHistory := convHistory(t, b, aID)
	if err := b.Close(); err != nil {
		t.Fatalf("Close B: %v", err)
	}

	// Reopen A: every accepted send is stored exactly once, in order per
	// sender; everything B shows delivered is in A's store.
	a2 := unlockNode(t, acfg)
	history := convHistory(t, a2, bID)
	stored := make(map[string]int)
	for _, m := range history {
		stored[string(m.Body)]++
	}
	mu.Lock()
	for _, text := range accepted {
		if stored[text] != 1 {
			t.Errorf("accepted send %q stored %d times after Close and restart", text, stored[text])
		}
	}
	t.Logf("%d sends accepted before Close; A holds %d messages", len(accepted), len(history))
	mu.Unlock()
	delivered := 0
	for _, m := range bHistory {
		if m.Direction == store.Out && m.Status == store.StatusDelivered {
			delivered++
			if stored[string(m.Body)] != 1 {
				t.Errorf("B shows %q delivered, but A holds it %d times", m.Body, stored[string(m.Body)])
			}
		}
	}
	if delivered == 0 {
		t.Error("B delivered nothing to A before Close: the test did not test receiving")
	}
	closeNode(t, a2)
}

// keepSending sends "prefix-i" from n to to, i = 0, 1, ..., until stop is
// closed or n is closed, and calls sent (if not nil) with each text whose
// Send returned nil. Any other error fails the test.
func keepSending(t *testing.T, n *Node, to protocol.ID, prefix string, stop <-chan struct{}, sent func(string)) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		text := fmt.Sprintf("%s-%d", prefix, i)
		if _, err := n.Send(context.Background(), to, text); err != nil {
			if !isErr(err, ErrClosed) {
				t.Errorf("Send %s: %v", text, err)
			}
			return
		}
		if sent != nil {
			sent(text)
		}
	}
}
