package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// getSealed reads and opens the sealed row at key. A missing row is
// ErrNotFound (unwrapped, for the caller to describe).
func (s *Store) getSealed(txn *badger.Txn, sl *sealer, kind string, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading %s row: %w", kind, err)
	}
	return openItem(item, sl, kind)
}

// openItem opens the sealed value of an item found by Get or an iterator.
func openItem(item *badger.Item, sl *sealer, kind string) ([]byte, error) {
	var plain []byte
	err := item.Value(func(v []byte) error {
		var err error
		plain, err = sl.open(kind, item.Key(), v)
		return err
	})
	return plain, err
}

// getRecord reads a sealed JSON row (rows key) into v.
func (s *Store) getRecord(txn *badger.Txn, kind string, key []byte, v any) error {
	return s.getRecordWith(txn, s.rows, kind, key, v)
}

func (s *Store) getRecordWith(txn *badger.Txn, sl *sealer, kind string, key []byte, v any) error {
	plain, err := s.getSealed(txn, sl, kind, key)
	if err != nil {
		return err
	}
	defer clear(plain)
	return decodeRecord(kind, plain, v)
}

func decodeRecord(kind string, plain []byte, v any) error {
	if err := json.Unmarshal(plain, v); err != nil {
		return corrupt(kind, err.Error())
	}
	return nil
}

// putRecord seals v as JSON (rows key) under key.
func (s *Store) putRecord(txn *badger.Txn, key []byte, v any) error {
	return s.putRecordWith(txn, s.rows, key, v)
}

func (s *Store) putRecordWith(txn *badger.Txn, sl *sealer, key []byte, v any) error {
	plain, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encoding row: %w", err)
	}
	sealed := sl.seal(key, plain)
	clear(plain)
	return s.set(txn, key, sealed)
}

// exists reports whether key has a (live) row.
func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, err
}

// scanRecords decodes every sealed JSON row under prefix, in key order,
// calling fn for each. It stops at the first row that fails to open.
func (s *Store) scanRecords(txn *badger.Txn, sl *sealer, kind string, prefix []byte, newRec func() any, fn func(key []byte, rec any) error) error {
	return scanSealed(txn, sl, kind, prefix, func(key, plain []byte) error {
		rec := newRec()
		err := decodeRecord(kind, plain, rec)
		clear(plain)
		if err != nil {
			return err
		}
		return fn(key, rec)
	})
}

// scanSealed calls fn with the key (a copy) and the opened value of every
// row under prefix.
func scanSealed(txn *badger.Txn, sl *sealer, kind string, prefix []byte, fn func(key, plain []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		plain, err := openItem(item, sl, kind)
		if err != nil {
			return err
		}
		if err := fn(item.KeyCopy(nil), plain); err != nil {
			return err
		}
	}
	return nil
}
