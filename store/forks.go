package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Fork kinds: what the two sides of a KeyFork are.
const (
	ForkRecord   = "record"   // two directory records (their encodings)
	ForkRotation = "rotation" // two rotation statements (their encodings)
)

// KeyFork is evidence that a user's key signed two histories: two
// different valid statements of theirs at the same sequence number, kept
// as received. It is stored once per pair, whichever side came first.
type KeyFork struct {
	UserID protocol.ID
	Kind   string // ForkRecord or ForkRotation
	Seq    uint64 // where the two histories part
	// Source says where the newer side came from: "directory", "lookup"
	// (a DHT server that holds another record), "card".
	Source string
	First  []byte // the statement known first
	Second []byte // the one that contradicts it
	At     time.Time
}

type keyForkRec struct {
	UserID []byte `json:"user_id"`
	Kind   string `json:"kind"`
	Seq    uint64 `json:"seq"`
	Source string `json:"source,omitempty"`
	First  []byte `json:"first"`
	Second []byte `json:"second"`
	At     int64  `json:"at"`
}

// forkDigest names a pair of statements whatever their order.
func forkDigest(kind string, a, b []byte) [32]byte {
	if bytes.Compare(a, b) > 0 {
		a, b = b, a
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00", kind, len(a))
	h.Write(a)
	h.Write(b)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// PutKeyFork stores the evidence f, sealed like every row. It reports
// whether it is new: the same pair of statements (in either order) is
// stored once.
func (s *Store) PutKeyFork(ctx context.Context, f KeyFork) (bool, error) {
	switch {
	case f.UserID.IsZero():
		return false, fmt.Errorf("%w: key fork without user ID", ErrInvalid)
	case f.Kind != ForkRecord && f.Kind != ForkRotation:
		return false, fmt.Errorf("%w: key fork kind %q", ErrInvalid, f.Kind)
	case len(f.First) == 0 || len(f.Second) == 0 || bytes.Equal(f.First, f.Second):
		return false, fmt.Errorf("%w: key fork needs two different statements", ErrInvalid)
	}
	if f.At.IsZero() {
		f.At = s.now()
	}
	key := keyForkKey(f.UserID, forkDigest(f.Kind, f.First, f.Second))
	added := false
	err := s.update(ctx, func(txn *badger.Txn) error {
		ok, err := exists(txn, key)
		if err != nil || ok {
			return err
		}
		added = true
		return s.putRecord(txn, key, &keyForkRec{
			UserID: f.UserID[:], Kind: f.Kind, Seq: f.Seq, Source: f.Source,
			First: f.First, Second: f.Second, At: nanos(f.At),
		})
	})
	if err != nil {
		return false, err
	}
	return added, nil
}

// KeyForks returns the evidence stored for user, in key order.
func (s *Store) KeyForks(ctx context.Context, user protocol.ID) ([]KeyFork, error) {
	var out []KeyFork
	err := s.view(ctx, func(txn *badger.Txn) error {
		return s.scanRecords(txn, s.rows, rowKeyFork, keyForkPrefix(user), func() any { return new(keyForkRec) },
			func(_ []byte, rec any) error {
				r := rec.(*keyForkRec)
				if len(r.UserID) != protocol.IDSize {
					return corrupt(rowKeyFork, "user ID")
				}
				out = append(out, KeyFork{
					UserID: protocol.ID(r.UserID), Kind: r.Kind, Seq: r.Seq, Source: r.Source,
					First: r.First, Second: r.Second, At: fromNanos(r.At),
				})
				return nil
			})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
