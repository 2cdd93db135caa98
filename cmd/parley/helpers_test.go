package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/protocoltest"
	"github.com/parley-chat/parley/store/storetest"
)

// cheapKDF makes a test store cheap to create.
var cheapKDF = storetest.CheapKDF

// testPass is the passphrase of every test identity.
const testPass = "correct horse battery"

// fixtureKey loads a fixture key (name like "alice-2048"), so that tests
// need not generate RSA keys.
func fixtureKey(tb testing.TB, name string) *protocol.PrivateKey { return protocoltest.Key(tb, name) }

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

// waitFor polls cond every pollEvery until it holds, and fails the test
// when d passes first.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		<-tick.C
	}
}

// pollEvery is how often waitFor and the end-to-end helpers poll.
const pollEvery = 20 * time.Millisecond

// clearParleyEnv sets every PARLEY_* variable to "" for the test (and
// restores them after it), so that a test that parses flags and the
// environment, or calls run, does not see the developer's or CI's own
// settings. Tests that use it cannot be parallel.
func clearParleyEnv(t *testing.T) {
	t.Helper()
	names := []string{envDataDir, envAPI, envAPITLSCert, envAPITLSKey, envAPIHost, envListen, envBootstrap,
		envPassphraseFile, envLogLevel, "PARLEY_TEST_KDF", "PARLEY_TEST_KEY_BITS", "PARLEY_TEST_LOGIN_BACKOFF"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PARLEY_") {
			names = append(names, k)
		}
	}
	for _, k := range names {
		t.Setenv(k, "")
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
