package store

import (
	"crypto/rand"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// Fixtures shared by the whole test binary: RSA key generation is the
// slowest thing here, so each key is made once, in TestMain.
var (
	testKey  *protocol.PrivateKey // the store owner
	otherKey *protocol.PrivateKey // someone else
	testPass = []byte("correct horse battery staple")
)

// cheapKDF keeps tests fast; one test runs the default parameters.
var cheapKDF = KDFParams{Time: 1, MemoryKiB: 8 << 10, Threads: 1}

func TestMain(m *testing.M) {
	// The crash child (see crash_test.go) needs no keys.
	if os.Getenv(crashEnv) == "" {
		var err error
		if testKey, err = protocol.GenerateKey(protocol.MinRSABits); err == nil {
			otherKey, err = protocol.GenerateKey(protocol.MinRSABits)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "generating test keys:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	closeBenchFixtures()
	os.Exit(code)
}

// testClock is an injectable clock that moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Now().Truncate(time.Second)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testOptions are cheap: small KDF, small badger caches and memtables.
func testOptions(c *testClock) Options {
	o := Options{
		KDF:            cheapKDF,
		BlockCacheSize: 4 << 20,
		IndexCacheSize: 2 << 20,
		MemTableSize:   4 << 20,
	}
	if c != nil {
		o.Now = c.Now
	}
	return o
}

// newTestStore creates a store in a fresh temp dir, closed at cleanup.
func newTestStore(t testing.TB) (*Store, string, *testClock) {
	t.Helper()
	dir := t.TempDir()
	c := newClock()
	s, err := Create(dir, testPass, testKey, testOptions(c))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir, c
}

// reopen closes s and opens its directory again with the same clock.
func reopen(t testing.TB, s *Store, c *testClock) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openTest(t, s.Dir(), c)
}

// openTest opens the store in dir, closed at cleanup.
func openTest(t testing.TB, dir string, c *testClock) *Store {
	t.Helper()
	s, err := Open(dir, testPass, testOptions(c))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randMsgID() MsgID         { return MsgID(randBytes(MsgIDSize)) }
func randUser() protocol.ID    { return protocol.ID(randBytes(protocol.IDSize)) }
func randConv() ConversationID { return ConversationID(randBytes(convSize)) }

// incoming is a received text message from a friend in their 1:1
// conversation.
func incoming(from protocol.ID, body string) Message {
	return Message{
		ID:           randMsgID(),
		Conversation: DirectConversation(from),
		From:         from,
		To:           testKey.ID(),
		Kind:         "text",
		Body:         []byte(body),
		SentAt:       time.Now().Add(-time.Second),
	}
}
