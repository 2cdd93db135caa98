package directory

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	record "github.com/libp2p/go-libp2p-record"

	"github.com/parley-chat/parley/protocol"
)

// keyPrefix starts every user record's DHT key.
const keyPrefix = "/" + Namespace + "/"

// Key returns the DHT key of user's record: "/parley-user/<user-id>", the
// user ID in its printed form (lower-case base32).
func Key(user protocol.ID) string { return keyPrefix + user.String() }

// ParseKey returns the user ID a DHT key names. Only the exact form Key
// returns is accepted (so one user has one key); anything else is
// ErrKeyMismatch.
func ParseKey(key string) (protocol.ID, error) {
	s, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return protocol.ID{}, fmt.Errorf("%w: key %.80q is not in /%s/", ErrKeyMismatch, key, Namespace)
	}
	id, err := protocol.ParseID(s)
	if err != nil || Key(id) != key {
		return protocol.ID{}, fmt.Errorf("%w: key %.80q does not name a user ID", ErrKeyMismatch, key)
	}
	return id, nil
}

// Validator is the DHT record validator for the /parley-user namespace;
// install it with dht.NamespacedValidator(directory.Namespace, v). The zero
// value is ready to use.
type Validator struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// OnValidate, if set, is called with the result of every Validate
	// (nil when the record was accepted), for metrics. It must be safe for
	// concurrent use.
	OnValidate func(err error)
}

var _ record.Validator = Validator{}

func (v Validator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Validate accepts value under key only if it is a valid record (see
// ParseRecord and Record.Verify) of the user that key names.
func (v Validator) Validate(key string, value []byte) error {
	_, err := v.validate(key, value, v.now())
	if v.OnValidate != nil {
		v.OnValidate(err)
	}
	return err
}

func (v Validator) validate(key string, value []byte, now time.Time) (*Record, error) {
	user, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	r, err := ParseRecord(value)
	if err != nil {
		return nil, err
	}
	if r.UserID() != user {
		return nil, fmt.Errorf("%w: record of %s under %s", ErrKeyMismatch, r.UserID(), key)
	}
	if err := r.Verify(now); err != nil {
		return nil, err
	}
	return r, nil
}

// Select returns the index of the best valid record among values: the
// highest sequence number, then the latest issue time, then the
// lexicographically smallest encoding, then the first index. Invalid values
// are skipped (Select checks each candidate fully, best first, and stops at
// the first valid one); if none is valid the error wraps ErrNoValidRecord.
func (v Validator) Select(key string, values [][]byte) (int, error) {
	if _, err := ParseKey(key); err != nil {
		return -1, fmt.Errorf("%w: %w", ErrNoValidRecord, err)
	}
	type cand struct {
		i int
		r *Record
	}
	cands := make([]cand, 0, len(values))
	var lastErr error
	for i, b := range values {
		r, err := ParseRecord(b)
		if err != nil {
			lastErr = err
			continue
		}
		cands = append(cands, cand{i, r})
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		switch {
		case a.r.seq != b.r.seq:
			if a.r.seq > b.r.seq {
				return -1
			}
			return 1
		case !a.r.issuedAt.Equal(b.r.issuedAt):
			return b.r.issuedAt.Compare(a.r.issuedAt)
		}
		return bytes.Compare(a.r.raw, b.r.raw)
	})
	now := v.now()
	for _, c := range cands {
		if _, err := v.validate(key, values[c.i], now); err != nil {
			lastErr = err
			continue
		}
		return c.i, nil
	}
	if lastErr == nil {
		return -1, fmt.Errorf("%w: no values", ErrNoValidRecord)
	}
	return -1, fmt.Errorf("%w: %d values, last refused: %w", ErrNoValidRecord, len(values), lastErr)
}
