package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// MaxPageSize caps the messages one Messages call returns.
const MaxPageSize = 500

// Cursor is an opaque position in a conversation's history, from a
// previous Messages call. The empty Cursor is the newest end.
type Cursor string

func encodeCursor(sk []byte) Cursor { return Cursor(base64.RawURLEncoding.EncodeToString(sk)) }

func decodeCursor(c Cursor) ([]byte, error) {
	sk, err := base64.RawURLEncoding.DecodeString(string(c))
	if err != nil || len(sk) != sortKeySize {
		return nil, fmt.Errorf("%w: bad cursor", ErrInvalid)
	}
	return sk, nil
}

// Messages returns up to limit messages of a conversation that sort
// before the cursor (all of them for the empty cursor), newest first, and
// the cursor of the next (older) page, empty when there is none. Messages
// sort by SortTime, then by ID, so a walk from the empty cursor sees every
// message once even when many share a timestamp. A row that fails its
// integrity check fails the whole page.
func (s *Store) Messages(ctx context.Context, conv ConversationID, before Cursor, limit int) ([]Message, Cursor, error) {
	return pageBefore(ctx, s, messagePrefix(conv), before, limit,
		func(item *badger.Item) (Message, error) {
			plain, err := openItem(item, s.rows, rowMessage)
			if err != nil {
				return Message{}, err
			}
			var rec msgRec
			if err := decodeRecord(rowMessage, plain, &rec); err != nil {
				return Message{}, err
			}
			m, err := rec.message()
			if err != nil {
				return Message{}, err
			}
			return m, checkMessageKey(&m, item.Key())
		},
		func(m Message) []byte { return sortKey(m.SortTime(), m.ID) })
}

// pageBefore is a page of rows under prefix whose keys end in a sort key
// (sortKey): up to limit that sort before the cursor (from the newest for
// the empty cursor), newest first, each read by read, and the cursor of
// the next (older) page, made of the last one's key (key), empty when
// there is none.
func pageBefore[T any](ctx context.Context, s *Store, prefix []byte, before Cursor, limit int,
	read func(*badger.Item) (T, error), key func(T) []byte) ([]T, Cursor, error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: page size %d", ErrInvalid, limit)
	}
	limit = min(limit, MaxPageSize)
	seek := append(prefix[:len(prefix):len(prefix)], bytes.Repeat([]byte{0xff}, sortKeySize)...)
	skipSeek := false
	if before != "" {
		sk, err := decodeCursor(before)
		if err != nil {
			return nil, "", err
		}
		seek, skipSeek = append(prefix[:len(prefix):len(prefix)], sk...), true
	}
	var (
		out  []T
		next Cursor
	)
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{
			Prefix:         prefix,
			Reverse:        true,
			PrefetchValues: true,
			PrefetchSize:   min(limit+1, 100),
		})
		defer it.Close()
		it.Seek(seek)
		if skipSeek && it.Valid() && bytes.Equal(it.Item().Key(), seek) {
			it.Next()
		}
		for ; it.Valid(); it.Next() {
			if len(out) == limit {
				next = encodeCursor(key(out[len(out)-1]))
				return nil
			}
			v, err := read(it.Item())
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
