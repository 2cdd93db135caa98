package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// PutHostKey stores the node's libp2p host key (opaque bytes, as the
// caller marshals it), sealed with the secrets key, replacing any previous
// one.
func (s *Store) PutHostKey(ctx context.Context, key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty host key", ErrInvalid)
	}
	return s.update(ctx, func(txn *badger.Txn) error {
		return s.set(txn, hostKeyKey(), s.secrets.seal(hostKeyKey(), key))
	})
}

// HostKey returns the stored host key, or ErrNotFound.
func (s *Store) HostKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		key, err = s.getSealed(txn, s.secrets, rowHostKey, hostKeyKey())
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: host key", ErrNotFound)
	}
	return key, err
}
