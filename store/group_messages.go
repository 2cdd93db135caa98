package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// GroupMessage is one message of a group, sent or received.
type GroupMessage struct {
	Group      protocol.GroupID
	ID         MsgID
	Epoch      uint64
	From       protocol.ID
	Chain      protocol.ChainID
	Iteration  uint32
	Kind       string // the application's message kind ("text", ...)
	Body       []byte // plaintext
	Raw        []byte // the message as on the wire (protocol.GroupMessage), for members catching up
	Direction  Direction
	SentAt     time.Time // the sender's timestamp: history order
	ReceivedAt time.Time // when this node stored it (incoming only)
}

type groupMsgRec struct {
	Group      []byte `json:"group"`
	ID         []byte `json:"id"`
	Epoch      uint64 `json:"epoch"`
	From       []byte `json:"from"`
	Chain      []byte `json:"chain"`
	Iteration  uint32 `json:"iteration"`
	Kind       string `json:"kind,omitempty"`
	Body       []byte `json:"body,omitempty"`
	Raw        []byte `json:"raw,omitempty"`
	Dir        string `json:"dir"`
	SentAt     int64  `json:"sent_at"`
	ReceivedAt int64  `json:"received_at,omitempty"`
}

func (r *groupMsgRec) message() (GroupMessage, error) {
	m := GroupMessage{
		Epoch: r.Epoch, Iteration: r.Iteration, Kind: r.Kind, Body: r.Body, Raw: r.Raw,
		Direction: Direction(r.Dir), SentAt: fromNanos(r.SentAt), ReceivedAt: fromNanos(r.ReceivedAt),
	}
	if len(r.Group) != protocol.GroupIDSize || len(r.ID) != MsgIDSize || len(r.From) != protocol.IDSize || len(r.Chain) != len(protocol.ChainID{}) {
		return m, corrupt(rowGroupMsg, "IDs")
	}
	m.Group, m.ID, m.From, m.Chain = protocol.GroupID(r.Group), MsgID(r.ID), protocol.ID(r.From), protocol.ChainID(r.Chain)
	return m, nil
}

func groupMsgPrefix(g protocol.GroupID) []byte { return append([]byte{kGroupMsg}, g[:]...) }

func groupMsgKey(g protocol.GroupID, sk []byte) []byte { return append(groupMsgPrefix(g), sk...) }

func groupIndexPrefix(g protocol.GroupID, sender protocol.ID, chain protocol.ChainID) []byte {
	k := make([]byte, 0, 1+protocol.GroupIDSize+protocol.IDSize+len(chain)+4)
	return append(append(append(append(k, kGroupIndex), g[:]...), sender[:]...), chain[:]...)
}

func groupIndexKey(g protocol.GroupID, sender protocol.ID, chain protocol.ChainID, n uint32) []byte {
	return binary.BigEndian.AppendUint32(groupIndexPrefix(g, sender, chain), n)
}

// check validates a group message before it is stored with chain, the
// sender chain's state after it.
func (m *GroupMessage) check(chain *protocol.SenderChain) error {
	switch {
	case m.Group.IsZero() || m.ID.IsZero() || m.From.IsZero() || m.Epoch == 0:
		return fmt.Errorf("%w: group message without group, ID, sender or epoch", ErrInvalid)
	case m.Direction != In && m.Direction != Out:
		return fmt.Errorf("%w: group message direction %q", ErrInvalid, m.Direction)
	case chain == nil:
		return fmt.Errorf("%w: group message without its sender chain", ErrInvalid)
	case chain.Group() != m.Group || chain.Epoch() != m.Epoch || chain.Sender() != m.From || chain.ID() != m.Chain:
		return fmt.Errorf("%w: sender chain of another group, epoch, sender or chain", ErrInvalid)
	case chain.Iteration() <= m.Iteration:
		return fmt.Errorf("%w: sender chain at %d is not past the message's iteration %d", ErrInvalid, chain.Iteration(), m.Iteration)
	}
	if err := checkTime("sent time", m.SentAt); err != nil {
		return err
	}
	if m.Direction == In {
		return checkTime("received time", m.ReceivedAt)
	}
	return nil
}

// StoreGroupMessage stores a group message once, by (group, sender,
// chain, iteration), with chain, its sender chain's state after sealing
// or opening it, in one synced transaction: the message, its index, the
// chain and the group's unread count and last message. A message whose
// (group, sender, chain, iteration) or whose (sender time, ID) is stored
// already is ErrDuplicate and nothing is written, the chain neither; so
// is a group that is not stored (ErrNotFound). It fills in Direction (In)
// and ReceivedAt (the store's clock) when they are empty.
//
// Opening a message moves its chain; two messages of one chain opened
// concurrently from the same stored state would each store their own
// next state, and the later write wins. Callers open and store the
// messages of one chain one at a time.
func (s *Store) StoreGroupMessage(ctx context.Context, m GroupMessage, chain *protocol.SenderChain) (GroupMessage, error) {
	if m.Direction == "" {
		m.Direction = In
	}
	if m.Direction == In && m.ReceivedAt.IsZero() {
		m.ReceivedAt = s.now()
	}
	if err := m.check(chain); err != nil {
		return GroupMessage{}, err
	}
	err := s.update(ctx, func(txn *badger.Txn) error {
		switch ok, err := exists(txn, groupKey(m.Group)); {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("%w: group %s", ErrNotFound, m.Group)
		}
		a, err := s.getGroupAct(txn, m.Group, nil)
		if err != nil {
			return err
		}
		ik := groupIndexKey(m.Group, m.From, m.Chain, m.Iteration)
		sk := sortKey(m.SentAt, m.ID)
		mk := groupMsgKey(m.Group, sk)
		for _, k := range [][]byte{ik, mk} {
			if ok, err := exists(txn, k); err != nil || ok {
				if err == nil {
					err = fmt.Errorf("%w: group message %s (iteration %d of %s)", ErrDuplicate, m.ID, m.Iteration, m.From)
				}
				return err
			}
		}
		rec := &groupMsgRec{
			Group: m.Group[:], ID: m.ID[:], Epoch: m.Epoch, From: m.From[:], Chain: m.Chain[:], Iteration: m.Iteration,
			Kind: m.Kind, Body: m.Body, Raw: m.Raw, Dir: string(m.Direction), SentAt: nanos(m.SentAt), ReceivedAt: nanos(m.ReceivedAt),
		}
		if err := s.putRecord(txn, mk, rec); err != nil {
			return err
		}
		if err := s.set(txn, ik, s.rows.seal(ik, sk)); err != nil {
			return err
		}
		if err := s.putChainTxn(txn, chain); err != nil {
			return err
		}
		if m.Direction == In {
			a.Unread++
		}
		if len(a.LastMsg) != MsgIDSize || bytes.Compare(sk, sortKey(fromNanos(a.LastAt), MsgID(a.LastMsg))) > 0 {
			a.LastMsg, a.LastAt = m.ID[:], nanos(m.SentAt)
		}
		return s.putRecord(txn, groupActKey(m.Group), a)
	})
	if err != nil {
		return GroupMessage{}, err
	}
	return m, nil
}

func (s *Store) readGroupMsg(item *badger.Item, g protocol.GroupID) (GroupMessage, error) {
	plain, err := openItem(item, s.rows, rowGroupMsg)
	if err != nil {
		return GroupMessage{}, err
	}
	defer clear(plain)
	var rec groupMsgRec
	if err := decodeRecord(rowGroupMsg, plain, &rec); err != nil {
		return GroupMessage{}, err
	}
	m, err := rec.message()
	if err != nil {
		return m, err
	}
	if m.Group != g || !bytes.Equal(item.Key(), groupMsgKey(g, sortKey(m.SentAt, m.ID))) {
		return m, corrupt(rowGroupMsg, "row does not match its key")
	}
	return m, nil
}

// GroupMessages returns up to limit messages of a group that sort before
// the cursor (from the newest for the empty cursor), newest first, and the
// cursor of the next (older) page, empty when there is none. Group
// messages sort by the sender's time, then by ID, so every member shows
// them in the same order.
func (s *Store) GroupMessages(ctx context.Context, g protocol.GroupID, before Cursor, limit int) ([]GroupMessage, Cursor, error) {
	return pageBefore(ctx, s, groupMsgPrefix(g), before, limit,
		func(item *badger.Item) (GroupMessage, error) { return s.readGroupMsg(item, g) },
		func(m GroupMessage) []byte { return sortKey(m.SentAt, m.ID) })
}

// GroupChainMessages returns up to limit stored messages of one chain
// from iteration from on, in iteration order: what a member who missed
// them asks for ("what do you have after iteration N of chain C").
func (s *Store) GroupChainMessages(ctx context.Context, g protocol.GroupID, sender protocol.ID, chain protocol.ChainID, from uint32, limit int) ([]GroupMessage, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: page size %d", ErrInvalid, limit)
	}
	limit = min(limit, MaxPageSize)
	var out []GroupMessage
	err := s.view(ctx, func(txn *badger.Txn) error {
		prefix := groupIndexPrefix(g, sender, chain)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(groupIndexKey(g, sender, chain, from)); it.Valid() && len(out) < limit; it.Next() {
			item := it.Item()
			sk, err := openItem(item, s.rows, rowGroupIndex)
			if err != nil {
				return err
			}
			if len(sk) != sortKeySize {
				return corrupt(rowGroupIndex, "sort key length")
			}
			mi, err := txn.Get(groupMsgKey(g, sk))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return corrupt(rowGroupIndex, "index without its message")
			}
			if err != nil {
				return err
			}
			m, err := s.readGroupMsg(mi, g)
			if err != nil {
				return err
			}
			n := binary.BigEndian.Uint32(item.Key()[len(prefix):])
			if m.From != sender || m.Chain != chain || m.Iteration != n {
				return corrupt(rowGroupIndex, "index does not match its message")
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}
