package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Groups. A group is one row holding its current signed state (the
// protocol.GroupState encoding) and what this node knows of it (removed,
// unread, last message); its sender-key chains, one row per (epoch,
// sender, chain), sealed with the secrets key since they hold chain keys
// and, for one's own, the Ed25519 signing key; and its messages (see
// group_messages.go). The layout is documented in doc.go.

// Group row prefixes (see doc.go).
const (
	kGroup      byte = 'G' // 'G' ‖ group ID(32)
	kGroupChain byte = 'E' // 'E' ‖ group(32) ‖ epoch u64 ‖ sender(32) ‖ chain(32)
	kGroupMsg   byte = 'N' // 'N' ‖ group(32) ‖ time ‖ msg ID(16)
	kGroupIndex byte = 'W' // 'W' ‖ group(32) ‖ sender(32) ‖ chain(32) ‖ iteration u32
	kGroupAct   byte = 'A' // 'A' ‖ group(32): unread count and latest message (groupActRec)
)

// Group row kind names, for errors.
const (
	rowGroup      = "group"
	rowGroupChain = "group sender key"
	rowGroupMsg   = "group message"
	rowGroupIndex = "group message index"
	rowGroupAct   = "group activity"
)

func groupKey(g protocol.GroupID) []byte { return append([]byte{kGroup}, g[:]...) }

func groupActKey(g protocol.GroupID) []byte { return append([]byte{kGroupAct}, g[:]...) }

func groupChainPrefix(g protocol.GroupID, epoch uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{kGroupChain}, g[:]...), epoch)
}

func groupChainKey(g protocol.GroupID, epoch uint64, sender protocol.ID, chain protocol.ChainID) []byte {
	return append(append(groupChainPrefix(g, epoch), sender[:]...), chain[:]...)
}

// Group is what the store keeps of a group.
type Group struct {
	State     *protocol.GroupState // the current state
	Removed   bool                 // this user was removed (or left)
	UpdatedAt time.Time            // when State was stored
	Unread    int                  // incoming messages since the last MarkGroupRead
	LastMsg   MsgID                // the latest message in history order; zero: none
	LastAt    time.Time            // its sender's time
}

// ID returns the group's ID.
func (g *Group) ID() protocol.GroupID { return g.State.Group }

// groupRec is a group's row. Its Unread, LastMsg and LastAt are those of
// rows written before the activity row existed: a group's activity row
// (groupActRec), once written, holds them, so that storing a message does
// not rewrite the signed roster (kilobytes in a large group).
type groupRec struct {
	State   []byte `json:"state"`
	Removed bool   `json:"removed,omitempty"`
	Updated int64  `json:"updated"`
	Unread  int    `json:"unread,omitempty"`
	LastMsg []byte `json:"last_msg,omitempty"`
	LastAt  int64  `json:"last_at,omitempty"`
}

// groupActRec is a group's activity: its unread count and latest message
// in history order.
type groupActRec struct {
	Unread  int    `json:"unread,omitempty"`
	LastMsg []byte `json:"last_msg,omitempty"`
	LastAt  int64  `json:"last_at,omitempty"`
}

// getGroupAct reads group id's activity; a group without an activity row
// has it in its group row (r, read here when nil).
func (s *Store) getGroupAct(txn *badger.Txn, id protocol.GroupID, r *groupRec) (*groupActRec, error) {
	var a groupActRec
	err := s.getRecord(txn, rowGroupAct, groupActKey(id), &a)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return &a, err
	}
	if r == nil {
		if r, err = s.getGroupRec(txn, id); err != nil {
			return nil, err
		}
	}
	return &groupActRec{Unread: r.Unread, LastMsg: r.LastMsg, LastAt: r.LastAt}, nil
}

// groupWithAct is group id from its row and its activity.
func (s *Store) groupWithAct(txn *badger.Txn, id protocol.GroupID, r *groupRec) (*Group, error) {
	a, err := s.getGroupAct(txn, id, r)
	if err != nil {
		return nil, err
	}
	g, err := r.group(id)
	if err != nil {
		return nil, err
	}
	g.Unread, g.LastAt, g.LastMsg = a.Unread, fromNanos(a.LastAt), MsgID{}
	if len(a.LastMsg) == MsgIDSize {
		g.LastMsg = MsgID(a.LastMsg)
	}
	return g, nil
}

func (r *groupRec) group(id protocol.GroupID) (*Group, error) {
	st, err := protocol.ParseGroupState(r.State)
	if err != nil {
		return nil, corrupt(rowGroup, err.Error())
	}
	if st.Group != id {
		return nil, corrupt(rowGroup, "row does not match its key")
	}
	return &Group{State: st, Removed: r.Removed, UpdatedAt: fromNanos(r.Updated)}, nil
}

func (s *Store) getGroupRec(txn *badger.Txn, id protocol.GroupID) (*groupRec, error) {
	var r groupRec
	if err := s.getRecord(txn, rowGroup, groupKey(id), &r); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: group %s", ErrNotFound, id)
		}
		return nil, err
	}
	return &r, nil
}

// PutGroupState stores a group's state: a new group, or a state of a
// later epoch than the stored one (older or equal epochs are ErrInvalid,
// nothing written). The caller has verified it (protocol.VerifyGroupGenesis
// or GroupState.Accept). own, when not nil, is this user's new sender
// chain for the state's epoch, written in the same transaction. A state
// that no longer lists self marks the group removed.
func (s *Store) PutGroupState(ctx context.Context, st *protocol.GroupState, own *protocol.SenderChain) error {
	return s.putGroupState(ctx, st, own, nil)
}

// putGroupState is PutGroupState that also runs more (when not nil) in
// the same transaction.
func (s *Store) putGroupState(ctx context.Context, st *protocol.GroupState, own *protocol.SenderChain, more func(txn *badger.Txn) error) error {
	if own != nil && (own.Group() != st.Group || own.Epoch() != st.Epoch || !own.Own()) {
		return fmt.Errorf("%w: own sender chain for another group or epoch", ErrInvalid)
	}
	self := s.UserID()
	now := s.now()
	return s.update(ctx, func(txn *badger.Txn) error {
		r, err := s.getGroupRec(txn, st.Group)
		switch {
		case errors.Is(err, ErrNotFound):
			r = &groupRec{}
		case err != nil:
			return err
		default:
			old, err := protocol.ParseGroupState(r.State)
			if err != nil {
				return corrupt(rowGroup, err.Error())
			}
			if st.Epoch <= old.Epoch {
				return fmt.Errorf("%w: group %s epoch %d is not after the stored %d", ErrInvalid, st.Group, st.Epoch, old.Epoch)
			}
		}
		r.State, r.Updated, r.Removed = st.Marshal(), now.UnixNano(), !st.IsMember(self)
		if err := s.putRecord(txn, groupKey(st.Group), r); err != nil {
			return err
		}
		if own != nil {
			if err := s.putChainTxn(txn, own); err != nil {
				return err
			}
		}
		if more != nil {
			return more(txn)
		}
		return nil
	})
}

// SetGroupRemoved marks a group removed (this user left, or learnt of
// their removal some other way) or not.
func (s *Store) SetGroupRemoved(ctx context.Context, id protocol.GroupID, removed bool) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		r, err := s.getGroupRec(txn, id)
		if err != nil {
			return err
		}
		r.Removed = removed
		return s.putRecord(txn, groupKey(id), r)
	})
}

// MarkGroupRead sets a group's unread count to zero.
func (s *Store) MarkGroupRead(ctx context.Context, id protocol.GroupID) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		a, err := s.getGroupAct(txn, id, nil)
		if err != nil {
			return err
		}
		if a.Unread == 0 {
			return nil
		}
		a.Unread = 0
		return s.putRecord(txn, groupActKey(id), a)
	})
}

// Group returns a stored group, or ErrNotFound.
func (s *Store) Group(ctx context.Context, id protocol.GroupID) (*Group, error) {
	var g *Group
	err := s.view(ctx, func(txn *badger.Txn) error {
		r, err := s.getGroupRec(txn, id)
		if err != nil {
			return err
		}
		g, err = s.groupWithAct(txn, id, r)
		return err
	})
	return g, err
}

// Groups returns every stored group, in group ID order.
func (s *Store) Groups(ctx context.Context) ([]*Group, error) {
	var out []*Group
	err := s.view(ctx, func(txn *badger.Txn) error {
		return s.scanRecords(txn, s.rows, rowGroup, []byte{kGroup}, func() any { return new(groupRec) },
			func(key []byte, rec any) error {
				if len(key) != 1+protocol.GroupIDSize {
					return corrupt(rowGroup, "key length")
				}
				g, err := s.groupWithAct(txn, protocol.GroupID(key[1:]), rec.(*groupRec))
				if err != nil {
					return err
				}
				out = append(out, g)
				return nil
			})
	})
	return out, err
}

// PutSenderChain stores a sender chain received from another member
// (protocol.AcceptSenderKey). A chain already stored is ErrDuplicate and
// is not replaced: moving a chain back would let replayed iterations
// derive keys again. The chain's group must be stored.
func (s *Store) PutSenderChain(ctx context.Context, c *protocol.SenderChain) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		if _, err := s.getGroupRec(txn, c.Group()); err != nil {
			return err
		}
		key := groupChainKey(c.Group(), c.Epoch(), c.Sender(), c.ID())
		if ok, err := exists(txn, key); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("%w: sender chain of %s in group %s epoch %d", ErrDuplicate, c.Sender(), c.Group(), c.Epoch())
			}
			return err
		}
		return s.putChainTxn(txn, c)
	})
}

func (s *Store) putChainTxn(txn *badger.Txn, c *protocol.SenderChain) error {
	key := groupChainKey(c.Group(), c.Epoch(), c.Sender(), c.ID())
	plain := c.Marshal()
	defer clear(plain)
	return s.set(txn, key, s.secrets.seal(key, plain))
}

func (s *Store) getChainTxn(txn *badger.Txn, key []byte) (*protocol.SenderChain, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading %s row: %w", rowGroupChain, err)
	}
	return s.openChain(item)
}

// openChain opens the chain row item (found by Get or an iterator).
func (s *Store) openChain(item *badger.Item) (*protocol.SenderChain, error) {
	plain, err := openItem(item, s.secrets, rowGroupChain)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	c, err := protocol.ParseSenderChain(plain)
	if err != nil {
		return nil, corrupt(rowGroupChain, err.Error())
	}
	if string(groupChainKey(c.Group(), c.Epoch(), c.Sender(), c.ID())) != string(item.Key()) {
		return nil, corrupt(rowGroupChain, "row does not match its key")
	}
	return c, nil
}

// SenderChain returns the stored chain of sender in a group's epoch, or
// ErrNotFound.
func (s *Store) SenderChain(ctx context.Context, g protocol.GroupID, epoch uint64, sender protocol.ID, chain protocol.ChainID) (*protocol.SenderChain, error) {
	var c *protocol.SenderChain
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		c, err = s.getChainTxn(txn, groupChainKey(g, epoch, sender, chain))
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: sender chain of %s in group %s epoch %d", ErrNotFound, sender, g, epoch)
		}
		return err
	})
	return c, err
}

// SenderChains returns every stored chain of a group's epoch (the
// user's own and the other members'), in (sender, chain) order.
func (s *Store) SenderChains(ctx context.Context, g protocol.GroupID, epoch uint64) ([]*protocol.SenderChain, error) {
	return s.chainsUnder(ctx, groupChainPrefix(g, epoch), func(*protocol.SenderChain) bool { return true })
}

// OwnChain returns this user's chain of a group's epoch, or ErrNotFound.
// Only this user's rows are read (the key holds the sender), not every
// member's.
func (s *Store) OwnChain(ctx context.Context, g protocol.GroupID, epoch uint64) (*protocol.SenderChain, error) {
	self := s.UserID()
	prefix := append(groupChainPrefix(g, epoch), self[:]...)
	chains, err := s.chainsUnder(ctx, prefix, (*protocol.SenderChain).Own)
	if err != nil {
		return nil, err
	}
	if len(chains) == 0 {
		return nil, fmt.Errorf("%w: own sender chain in group %s epoch %d", ErrNotFound, g, epoch)
	}
	return chains[0], nil
}

// chainsUnder returns the chains whose keys start with prefix and that
// keep says to, in key order.
func (s *Store) chainsUnder(ctx context.Context, prefix []byte, keep func(*protocol.SenderChain) bool) ([]*protocol.SenderChain, error) {
	var out []*protocol.SenderChain
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			c, err := s.openChain(it.Item())
			if err != nil {
				return err
			}
			if keep(c) {
				out = append(out, c)
			}
		}
		return nil
	})
	return out, err
}
