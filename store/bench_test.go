package store

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/argon2"
)

// benchOptions use the production badger sizes and a cheap KDF (only
// BenchmarkUnlock measures the KDF).
func benchOptions() Options { return Options{KDF: cheapKDF} }

func newBenchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Create(b.TempDir(), testPass, testKey, benchOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkStoreReceived measures synced stores of incoming messages, one
// transaction per message and 64 per transaction; both report ns/msg.
func BenchmarkStoreReceived(b *testing.B) {
	ctx := context.Background()
	body := make([]byte, 200)
	b.Run("one", func(b *testing.B) {
		s := newBenchStore(b)
		from := randUser()
		for b.Loop() {
			m := incoming(from, "")
			m.Body = body
			if _, err := s.StoreReceived(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
	})
	b.Run("batch64", func(b *testing.B) {
		const size = 64
		s := newBenchStore(b)
		from := randUser()
		batch := make([]Message, size)
		for b.Loop() {
			for i := range batch {
				batch[i] = incoming(from, "")
				batch[i].Body = body
			}
			res, err := s.StoreReceivedBatch(ctx, batch)
			if err != nil || res[0] != nil {
				b.Fatal(err, res[0])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/msg")
	})
}

// pageFixture is a store with one conversation of pageConvSize messages,
// built once per test binary and closed by TestMain.
var pageFixture struct {
	once sync.Once
	s    *Store
	dir  string
	conv ConversationID
	mid  Cursor
	err  error
}

const pageConvSize = 100_000

func closeBenchFixtures() {
	if pageFixture.s != nil {
		pageFixture.s.Close()
		os.RemoveAll(pageFixture.dir)
	}
}

// bulkReceive is the fast path for benchmarks: it writes message, index
// and seen rows with a badger WriteBatch (few syncs, no conflict
// checks) and the conversation row once at the end.
func bulkReceive(s *Store, msgs []Message) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	now := s.now()
	conv := &convRec{ID: msgs[0].Conversation[:]}
	for i := range msgs {
		m := &msgs[i]
		if err := prepareIncoming(m, now); err != nil {
			return err
		}
		sk := sortKey(m.SortTime(), m.ID)
		key := messageKey(m.Conversation, sk)
		plain, err := json.Marshal(newMsgRec(m))
		if err != nil {
			return err
		}
		if err := wb.Set(key, s.rows.seal(key, plain)); err != nil {
			return err
		}
		ik := messageIndexKey(m.ID)
		if err := wb.Set(ik, s.rows.seal(ik, append(m.Conversation[:], sk...))); err != nil {
			return err
		}
		if err := wb.SetEntry(s.seenEntry(m.ID, now)); err != nil {
			return err
		}
		conv.apply(m)
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return s.update(context.Background(), func(txn *badger.Txn) error {
		return s.putRecord(txn, conversationKey(msgs[0].Conversation), conv)
	})
}

func pageStore(b *testing.B) {
	b.Helper()
	pageFixture.once.Do(func() {
		f := &pageFixture
		if f.dir, f.err = os.MkdirTemp("", "parley-store-bench-"); f.err != nil {
			return
		}
		if f.s, f.err = Create(f.dir, testPass, testKey, benchOptions()); f.err != nil {
			return
		}
		start := time.Now()
		from := randUser()
		f.conv = DirectConversation(from)
		base := time.Now().Add(-time.Duration(pageConvSize) * time.Second)
		const chunk = 10_000
		for n := 0; n < pageConvSize; n += chunk {
			msgs := make([]Message, chunk)
			for i := range msgs {
				msgs[i] = incoming(from, fmt.Sprintf("message number %d, with a body of ordinary length for a chat", n+i))
				msgs[i].ReceivedAt = base.Add(time.Duration(n+i) * time.Second)
			}
			if f.err = bulkReceive(f.s, msgs); f.err != nil {
				return
			}
		}
		// A cursor half way down the history.
		var cur Cursor
		for range pageConvSize / 2 / MaxPageSize {
			if _, cur, f.err = f.s.Messages(context.Background(), f.conv, cur, MaxPageSize); f.err != nil {
				return
			}
		}
		f.mid = cur
		fmt.Fprintf(os.Stderr, "populated %d messages in %v\n", pageConvSize, time.Since(start).Round(time.Millisecond))
	})
	if pageFixture.err != nil {
		b.Fatal(pageFixture.err)
	}
}

// BenchmarkMessagesPage reads a page of 50 from a conversation of 100,000
// messages, at the newest end and half way down; the target is ≤ 2 ms.
func BenchmarkMessagesPage(b *testing.B) {
	pageStore(b)
	f := &pageFixture
	for _, bc := range []struct {
		name   string
		cursor Cursor
	}{{"newest", ""}, {"middle", f.mid}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				msgs, next, err := f.s.Messages(ctx, f.conv, bc.cursor, 50)
				if err != nil || len(msgs) != 50 || next == "" {
					b.Fatal(len(msgs), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
			recordPerOp(b, "store-page", bc.name+"-ms/page")
		})
	}
}

// BenchmarkUnlock opens an existing store created with the default
// Argon2id parameters, and times the bare argon2.IDKey with the same
// parameters in the same run: the KDF should be most of the unlock time.
func BenchmarkUnlock(b *testing.B) {
	dir := b.TempDir()
	o := Options{KDF: DefaultKDF}
	s, err := Create(dir, testPass, testKey, o)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	salt := randBytes(saltSize)
	var open, kdf time.Duration
	for b.Loop() {
		t0 := time.Now()
		s, err := Open(dir, testPass, o)
		if err != nil {
			b.Fatal(err)
		}
		open += time.Since(t0)
		b.StopTimer()
		s.Close()
		t1 := time.Now()
		argon2.IDKey(testPass, salt, DefaultKDF.Time, DefaultKDF.MemoryKiB, DefaultKDF.Threads, keySize)
		kdf += time.Since(t1)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(open.Seconds()*1000/n, "open-ms")
	b.ReportMetric(kdf.Seconds()*1000/n, "argon2-ms")
	b.ReportMetric(100*kdf.Seconds()/open.Seconds(), "argon2-%")
}
