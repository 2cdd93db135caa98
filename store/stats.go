package store

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// OutboxStats counts the outbox entries and finds the send time of the
// oldest queued message (zero when none, or only control entries, are
// queued). It reads the queues' keys and, per recipient, the first
// message in the queue, which is its oldest: a queue is in write order,
// and a friend's messages are written in the order of their timestamps.
// For metrics, at scrape time: a backlog of thousands costs a key scan,
// not thousands of rows opened.
func (s *Store) OutboxStats(ctx context.Context) (n int, oldest time.Time, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kOutboxQueue}})
		defer it.Close()
		var (
			cur   protocol.ID
			found bool // cur's oldest message is read
		)
		for it.Rewind(); it.Valid(); it.Next() {
			to, _, id, err := parseOutboxQueueKey(it.Item().Key())
			if err != nil {
				return err
			}
			n++
			if to != cur {
				cur, found = to, false
			}
			if found {
				continue
			}
			m, _, err := s.getMessage(txn, id)
			if errors.Is(err, ErrNotFound) {
				continue // a control entry
			}
			if err != nil {
				return err
			}
			found = true
			if oldest.IsZero() || m.SentAt.Before(oldest) {
				oldest = m.SentAt
			}
		}
		return nil
	})
	return n, oldest, err
}

// Size is the disk space the database's files take, in bytes (blocks
// allocated, so badger's preallocated, sparse value log counts for what
// it holds). badger's own Size is only refreshed once a minute.
func (s *Store) Size() int64 {
	var total int64
	filepath.WalkDir(filepath.Join(s.dir, DBDir), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			} else {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}
