package main

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/fixtures"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
)

// testPass is the passphrase of every test identity.
const testPass = "correct horse battery"

// fixtureKey loads a fixture key (name like "alice-2048"), so that tests
// need not generate RSA keys.
func fixtureKey(tb testing.TB, name string) *protocol.PrivateKey { return fixtures.Key(tb, name) }

// testNodeConfig is a cheap node config on dir, listening on loopback.
func testNodeConfig(tb testing.TB, dir, keyName string) node.Config {
	tb.Helper()
	key := fixtureKey(tb, keyName)
	return node.Config{
		DataDir:     dir,
		Listen:      []string{"/ip4/127.0.0.1/tcp/0"},
		KDF:         cheapKDF,
		NewKey:      func(int) (*protocol.PrivateKey, error) { return key, nil },
		Logger:      slog.New(slog.DiscardHandler),
		RetryMin:    50 * time.Millisecond,
		RetryMax:    500 * time.Millisecond,
		DialTimeout: 2 * time.Second,
	}
}

// newTestNode makes a node (state new) on a temp dir and closes it when
// the test ends.
func newTestNode(tb testing.TB, keyName string) *node.Node {
	tb.Helper()
	n, err := node.New(testNodeConfig(tb, tb.TempDir(), keyName))
	if err != nil {
		tb.Fatalf("node.New: %v", err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}

// registeredNode makes a node and registers name on it.
func registeredNode(tb testing.TB, keyName, name string) *node.Node {
	tb.Helper()
	n := newTestNode(tb, keyName)
	if err := n.Register(context.Background(), name, []byte(testPass)); err != nil {
		tb.Fatalf("Register: %v", err)
	}
	return n
}

// waitFor polls cond every few milliseconds until it holds, and fails the
// test when d passes first.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
