package store

import (
	"context"
	"encoding/binary"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Early sender keys: a member's key for an epoch whose state this node
// does not hold yet (it comes from the admin, maybe later than the
// members' keys). The sender's outbox settled it when it was
// acknowledged, so it is kept here until its state arrives (the node
// applies it then and deletes it) or a later state makes it useless.

// kEarlyKey is the prefix of early sender keys:
// 'Y' ‖ group(32) ‖ epoch u64 ‖ from(32) ‖ chain(32).
const kEarlyKey byte = 'Y'

const rowEarlyKey = "early sender key"

func earlyKeyKey(from protocol.ID, d *protocol.SenderKeyDistribution) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte{kEarlyKey}, d.Group[:]...), d.Epoch)
	return append(append(k, from[:]...), d.Chain[:]...)
}

// EarlyKey is a sender key kept until its state arrives, with the member
// whose session (or card) it came in.
type EarlyKey struct {
	From protocol.ID
	Dist *protocol.SenderKeyDistribution
}

// PutEarlyKey keeps d, from from (sealed with the secrets key: it holds
// a chain key). Keeping it again is no error.
func (s *Store) PutEarlyKey(ctx context.Context, from protocol.ID, d *protocol.SenderKeyDistribution) error {
	key := earlyKeyKey(from, d)
	raw := d.Marshal()
	defer clear(raw)
	return s.update(ctx, func(txn *badger.Txn) error {
		return s.set(txn, key, s.secrets.seal(key, raw))
	})
}

// EarlyKeys returns the kept keys, by group and epoch.
func (s *Store) EarlyKeys(ctx context.Context) ([]EarlyKey, error) {
	var out []EarlyKey
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kEarlyKey}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			if len(key) != 1+protocol.GroupIDSize+8+protocol.IDSize+32 {
				return corrupt(rowEarlyKey, "key size")
			}
			plain, err := openItem(it.Item(), s.secrets, rowEarlyKey)
			if err != nil {
				return err
			}
			d, err := protocol.ParseSenderKeyDistribution(plain)
			clear(plain)
			if err != nil {
				return corrupt(rowEarlyKey, err.Error())
			}
			from := protocol.ID(key[1+protocol.GroupIDSize+8 : 1+protocol.GroupIDSize+8+protocol.IDSize])
			if string(earlyKeyKey(from, d)) != string(key) {
				return corrupt(rowEarlyKey, "row does not match its key")
			}
			out = append(out, EarlyKey{From: from, Dist: d})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteEarlyKeys deletes kept keys (applied, or of an epoch gone by).
func (s *Store) DeleteEarlyKeys(ctx context.Context, keys []EarlyKey) error {
	if len(keys) == 0 {
		return nil
	}
	return s.update(ctx, func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := s.del(txn, earlyKeyKey(k.From, k.Dist)); err != nil {
				return err
			}
		}
		return nil
	})
}
