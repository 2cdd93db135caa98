package node

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/protocoltest"
	"github.com/parley-chat/parley/store"
	"github.com/parley-chat/parley/store/storetest"
)

// fixtureKey loads a fixture key (name like "alice-2048"), so that tests
// need not generate RSA keys.
func fixtureKey(tb testing.TB, name string) *protocol.PrivateKey { return protocoltest.Key(tb, name) }

// testConfig is a node config on a temp dir, listening on loopback only.
func testConfig(tb testing.TB, keyName string) Config {
	tb.Helper()
	key := fixtureKey(tb, keyName)
	return Config{
		DataDir:     tb.TempDir(),
		Listen:      []string{"/ip4/127.0.0.1/tcp/0"},
		KDF:         storetest.CheapKDF,
		NewKey:      func(int) (*protocol.PrivateKey, error) { return key, nil },
		Logger:      testLogger(tb),
		RetryMin:    50 * time.Millisecond,
		RetryMax:    500 * time.Millisecond,
		DialTimeout: 2 * time.Second,
	}
}

func testLogger(tb testing.TB) *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

const testPass = "correct horse battery"

// startNode registers a node on cfg and closes it when the test ends.
func startNode(tb testing.TB, cfg Config, name string) *Node {
	tb.Helper()
	n, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { n.Close() })
	if err := n.Register(context.Background(), name, []byte(testPass)); err != nil {
		tb.Fatalf("Register: %v", err)
	}
	return n
}

// befriend makes a and b accepted friends through invite cards.
func befriend(tb testing.TB, a, b *Node) {
	tb.Helper()
	ctx := context.Background()
	ma, err := a.Me(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	mb, err := b.Me(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
		tb.Fatalf("a adds b: %v", err)
	}
	waitFor(tb, 10*time.Second, "b sees a's request", func() bool {
		f, err := b.Friend(ctx, ma.UserID)
		return err == nil && f.Status == store.FriendPendingIn
	})
	if _, err := b.AcceptFriend(ctx, ma.UserID); err != nil {
		tb.Fatalf("b accepts a: %v", err)
	}
	waitFor(tb, 10*time.Second, "a sees b's accept", func() bool {
		f, err := a.Friend(ctx, mb.UserID)
		return err == nil && f.Status == store.FriendAccepted
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isErr(err, target error) bool { return errors.Is(err, target) }
