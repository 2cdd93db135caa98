package store

import "github.com/dgraph-io/badger/v4"

// set, setEntry and del are the store's only writes to badger (a test
// holds the package to it): each also adds the write to the journal batch
// of the transaction the commit queue is building (journal.go). Outside
// the commit queue (migrations at Open, before it starts) nothing is
// recorded, and Open syncs badger's files after them instead.

func (s *Store) set(txn *badger.Txn, key, val []byte) error {
	if err := txn.Set(key, val); err != nil {
		return err
	}
	if b := s.batch(); b != nil {
		b.set(key, val, 0, 0)
	}
	return nil
}

func (s *Store) setEntry(txn *badger.Txn, e *badger.Entry) error {
	if err := txn.SetEntry(e); err != nil {
		return err
	}
	if b := s.batch(); b != nil {
		b.set(e.Key, e.Value, e.ExpiresAt, e.UserMeta)
	}
	return nil
}

func (s *Store) del(txn *badger.Txn, key []byte) error {
	if err := txn.Delete(key); err != nil {
		return err
	}
	if b := s.batch(); b != nil {
		b.del(key)
	}
	return nil
}

// batch is the journal batch of the transaction being built, nil when
// none is (only the commit queue's goroutine builds one).
func (s *Store) batch() *batch {
	if s.commits == nil {
		return nil
	}
	return s.commits.cur
}
