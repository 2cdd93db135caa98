package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/store"
)

func TestTwoNodesChat(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	ma, _ := a.Me(ctx)
	mb, _ := b.Me(ctx)

	const n = 20
	for i := 0; i < n; i++ {
		if _, err := a.Send(ctx, mb.UserID, fmt.Sprintf("hello %d", i)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	waitFor(t, 20*time.Second, "all delivered", func() bool {
		ms, _, err := b.Messages(ctx, ma.UserID, "", 100)
		return err == nil && len(ms) == n
	})
	ms, _, _ := b.Messages(ctx, ma.UserID, "", 100)
	for i, m := range ms {
		if want := fmt.Sprintf("hello %d", n-1-i); string(m.Body) != want {
			t.Errorf("message %d = %q, want %q", i, m.Body, want)
		}
	}
	waitFor(t, 10*time.Second, "sender sees delivered", func() bool {
		ms, _, _ := a.Messages(ctx, mb.UserID, "", 100)
		for _, m := range ms {
			if m.Status != store.StatusDelivered {
				return false
			}
		}
		return len(ms) == n
	})
	if err := b.MarkRead(ctx, ma.UserID, ms[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "sender sees read", func() bool {
		ms, _, _ := a.Messages(ctx, mb.UserID, "", 100)
		for _, m := range ms {
			if m.Status != store.StatusRead {
				return false
			}
		}
		return true
	})
}
