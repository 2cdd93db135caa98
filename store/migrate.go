package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// migrate brings a database written by an older version up to date; Open
// runs it before the commit queue starts. Each step finds nothing to do
// once it has run, and a step cut short (a crash) is finished at the next
// Open.
func (s *Store) migrate() error {
	if err := s.initOutboxSeq(); err != nil {
		return fmt.Errorf("store: outbox queue: %w", err)
	}
	if err := s.dropOutboxDue(); err != nil {
		return fmt.Errorf("store: removing the old outbox due index: %w", err)
	}
	return nil
}

// inBatches runs fn on items [lo, hi) of n, in as many transactions as
// it takes: it starts with size items in one and halves that whenever
// badger finds a transaction too big. A failed try commits nothing, so
// fn must not keep anything from one (it runs again on the same items).
//
// Migrations run before the commit queue, outside the journal, so what
// they wrote is synced in badger's own files before inBatches returns.
func (s *Store) inBatches(n, size int, fn func(txn *badger.Txn, lo, hi int) error) error {
	if n == 0 {
		return nil
	}
	for lo := 0; lo < n; {
		hi := min(lo+size, n)
		err := s.db.Update(func(txn *badger.Txn) error { return fn(txn, lo, hi) })
		if errors.Is(err, badger.ErrTxnTooBig) && hi-lo > 1 {
			size = (hi - lo) / 2
			continue
		}
		if err != nil {
			return err
		}
		lo = hi
	}
	return syncBadgerFiles(filepath.Join(s.dir, DBDir))
}

// initOutboxSeq sets the sequence counter past every queued entry, and
// gives entries written before queues existed (Seq 0) their place, in
// the order of their old due times (ties by message ID).
func (s *Store) initOutboxSeq() error {
	type oldEntry struct {
		e   OutboxEntry
		due int64
	}
	var last uint64
	var old []oldEntry
	err := s.db.View(func(txn *badger.Txn) error {
		return scanSealed(txn, s.rows, rowOutbox, []byte{kOutbox},
			func(_, plain []byte) error {
				r, err := decodeOutboxRow(plain)
				if err != nil {
					return err
				}
				e, err := r.entry()
				if err != nil {
					return err
				}
				if e.Seq == 0 {
					old = append(old, oldEntry{e, r.OldDue})
				}
				last = max(last, e.Seq)
				return nil
			})
	})
	if err != nil {
		return err
	}
	s.outboxSeq.Store(last)
	slices.SortFunc(old, func(a, b oldEntry) int {
		return cmp.Or(cmp.Compare(a.due, b.due), bytes.Compare(a.e.MsgID[:], b.e.MsgID[:]))
	})
	// 128 entries of a few KiB fit the smallest transactions.
	return s.inBatches(len(old), 128, func(txn *badger.Txn, lo, hi int) error {
		for i := lo; i < hi; i++ {
			e := old[i].e // a failed try must not keep the seqs it gave
			if err := s.putOutbox(txn, &e); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropOutboxDueRound is how many keys dropOutboxDue reads at a time.
const dropOutboxDueRound = 4096

// dropOutboxDue deletes the rows of the outbox due index ('D' keys) that
// versions before the queues wrote beside each entry; the queue is the
// outbox's only order now. The rows are deleted unopened: nothing reads
// them, so a damaged one is no reason to refuse to open. With none left
// (every Open after the first) this is one seek.
func (s *Store) dropOutboxDue() error {
	for {
		var keys [][]byte
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kOutboxDue}})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < dropOutboxDueRound; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		err = s.inBatches(len(keys), len(keys), func(txn *badger.Txn, lo, hi int) error {
			for _, k := range keys[lo:hi] {
				if err := s.del(txn, k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}
