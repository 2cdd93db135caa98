package store

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"

	"github.com/parley-chat/parley/protocol"
)

// Benchmarks of what a durable write costs, from the disk's floor up to
// the store's commit queue, meant to be read side by side in one run:
//
//	go test -run '^$' -bench 'Sync|AddOutgoing' -benchtime=2000x ./store/
//
// SyncFloorFdatasync is the cost of one 256-byte append made durable,
// SyncBadgerCommit one synced badger transaction of the same size, and
// SyncBadgerNoSync the same without the sync (badger's own overhead).
// StoreAddOutgoingSerial is a whole synced store write (message, outbox
// entry, conversation: sealed rows) one at a time, and
// StoreAddOutgoingParallel many of them at once, which the commit queue
// gathers into shared transactions: its ns/op is per write, and
// writes/commit says how many shared a sync. us/commit is the time per
// commit (sync included) as the writer saw it.

const syncBenchSize = 256

// BenchmarkSyncFloorFdatasync appends 256 bytes to a file and
// fdatasyncs it, per op: the least a synced write can cost on this disk.
func BenchmarkSyncFloorFdatasync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "floor"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := randBytes(syncBenchSize)
	fd := int(f.Fd())
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(fd); err != nil {
			b.Fatal(err)
		}
	}
	recordPerOp(b, "store-sync", "fdatasync-ms")
}

// openRawBadger opens a bare badger database with the options openDB
// (store.go) gives the store's, with a random 32-byte encryption key and
// the production sizes; keep the two in step.
func openRawBadger(b *testing.B, syncWrites bool) *badger.DB {
	b.Helper()
	o, err := benchOptions().withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	bo := badgerOptions(filepath.Join(b.TempDir(), DBDir), randBytes(32), o).WithSyncWrites(syncWrites)
	db, err := badger.Open(bo)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// benchBadgerCommit commits one transaction of one 256-byte Set per op.
func benchBadgerCommit(b *testing.B, syncWrites bool) {
	db := openRawBadger(b, syncWrites)
	val := randBytes(syncBenchSize)
	key := make([]byte, 9)
	key[0] = 'B'
	var n uint64
	for b.Loop() {
		n++
		binary.BigEndian.PutUint64(key[1:], n)
		txn := db.NewTransaction(true)
		if err := txn.Set(key, val); err != nil {
			b.Fatal(err)
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	recordBadgerCommit(b, syncWrites)
}

// BenchmarkSyncBadgerCommit is one synced badger transaction per op.
func BenchmarkSyncBadgerCommit(b *testing.B) { benchBadgerCommit(b, true) }

// BenchmarkSyncBadgerNoSync is the same without SyncWrites.
func BenchmarkSyncBadgerNoSync(b *testing.B) { benchBadgerCommit(b, false) }

// benchOutgoing is an outgoing message with a 256-byte envelope.
type benchOutgoing struct {
	friend   protocol.ID
	body     []byte
	envelope []byte
}

func newBenchOutgoing() *benchOutgoing {
	return &benchOutgoing{friend: randUser(), body: []byte("a chat message of an ordinary length"), envelope: randBytes(syncBenchSize)}
}

func (o *benchOutgoing) add(ctx context.Context, s *Store) error {
	m := Message{ID: randMsgID(), Conversation: DirectConversation(o.friend), From: testKey.ID(), To: o.friend, Kind: "text", Body: o.body}
	_, err := s.AddOutgoing(ctx, m, OutboxEntry{Recipient: o.friend, Envelope: o.envelope})
	return err
}

// reportCommits reports writes/commit and us/commit from the store's
// counters, less those at the start (c0, w0).
func reportCommits(b *testing.B, s *Store, c0, w0 int) {
	c1, w1 := s.CommitStats()
	commits, writes := c1-c0, w1-w0
	if commits == 0 {
		return
	}
	b.ReportMetric(float64(writes)/float64(commits), "writes/commit")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(commits), "us/commit")
}

// BenchmarkStoreAddOutgoingSerial is one synced AddOutgoing at a time,
// all to one friend.
func BenchmarkStoreAddOutgoingSerial(b *testing.B) {
	s := newBenchStore(b)
	ctx := context.Background()
	o := newBenchOutgoing()
	c0, w0 := s.CommitStats()
	for b.Loop() {
		if err := o.add(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	reportCommits(b, s, c0, w0)
}

// BenchmarkStoreAddOutgoingParallel is AddOutgoing from 8×GOMAXPROCS
// goroutines at once, all to one friend (one conversation row that every
// write updates): the commit queue groups them.
func BenchmarkStoreAddOutgoingParallel(b *testing.B) {
	s := newBenchStore(b)
	ctx := context.Background()
	o := newBenchOutgoing()
	c0, w0 := s.CommitStats()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := o.add(ctx, s); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCommits(b, s, c0, w0)
}
