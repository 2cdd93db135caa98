package store

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// OutboxStats counts the outbox entries and finds the send time of the
// oldest queued message (zero when none, or only control entries, are
// queued). It reads every entry: for metrics, at scrape time.
func (s *Store) OutboxStats(ctx context.Context) (n int, oldest time.Time, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kOutbox}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			key := it.Item().Key()
			if len(key) != 1+MsgIDSize {
				continue
			}
			m, _, err := s.getMessage(txn, MsgID(key[1:]))
			if errors.Is(err, ErrNotFound) {
				continue // a control entry
			}
			if err != nil {
				return err
			}
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
