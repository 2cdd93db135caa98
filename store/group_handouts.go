package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Group hand-outs. A new epoch makes group controls for every other
// member (the state, from its signer; this user's new sender key, from
// every member), hundreds in a large group. They are written as one job
// in the transaction that stores the state (PutGroupStateHandout), so a
// state is never stored without what must be handed out for it, and the
// node works the job off in batches: each batch's sealed envelopes go to
// the outbox, and the job's progress is written, in one transaction
// (QueueHandouts). A crash between batches resumes at the first item not
// queued; nothing is queued twice.
//
// A job is two rows: the job itself (bodies and items, written once, and
// again only when a pass leaves items behind) and its progress (small,
// written with every batch).

// kHandout is the prefix of hand-out jobs:
// 'J' ‖ group(32) ‖ epoch u64 ‖ 0 (job) or 1 (progress). One job per
// group and epoch; within a group, key order is epoch order.
const kHandout byte = 'J'

const rowHandout = "group hand-out"

// maxHandoutItems bounds a job: every other member gets at most a state
// and a sender key, and removed members a state.
const maxHandoutItems = 3 * protocol.MaxGroupMembers

func handoutKey(g protocol.GroupID, epoch uint64, part byte) []byte {
	return append(binary.BigEndian.AppendUint64(append([]byte{kHandout}, g[:]...), epoch), part)
}

const (
	handoutJob      byte = 0
	handoutProgress byte = 1
)

// Handout is a job of group controls to hand out for one epoch of a
// group, with its progress.
type Handout struct {
	Group protocol.GroupID
	Epoch uint64
	// Bodies are the controls' bodies by kind (the encoded state, the
	// encoded sender-key distribution).
	Bodies map[protocol.Kind][]byte
	// Items are the hand-outs of this pass, in order; Next is the first
	// not queued yet.
	Items []HandoutItem
	Next  int
	// Later are items of this pass left behind (a recipient whose key
	// could not be found now), for the next pass.
	Later []HandoutItem
	// Tries counts the passes that left items behind: the node retries
	// with backoff, then gives up.
	Tries int
}

// HandoutItem is one control for one recipient.
type HandoutItem struct {
	To   protocol.ID   `json:"to"`
	Kind protocol.Kind `json:"kind"`
}

// Done reports whether nothing is left to queue.
func (h *Handout) Done() bool { return h.Next >= len(h.Items) && len(h.Later) == 0 }

func (h *Handout) check() error {
	if len(h.Items) > maxHandoutItems || len(h.Later) > len(h.Items) || h.Next < 0 || h.Next > len(h.Items) {
		return fmt.Errorf("%w: hand-out of %d items", ErrInvalid, len(h.Items))
	}
	for _, items := range [][]HandoutItem{h.Items, h.Later} {
		for _, it := range items {
			if len(h.Bodies[it.Kind]) == 0 || it.To.IsZero() {
				return fmt.Errorf("%w: hand-out item without a body or recipient", ErrInvalid)
			}
		}
	}
	return nil
}

type handoutRec struct {
	Group  []byte                   `json:"group"`
	Epoch  uint64                   `json:"epoch"`
	Bodies map[protocol.Kind][]byte `json:"bodies"`
	Items  []HandoutItem            `json:"items"`
}

type handoutProgressRec struct {
	Next  int           `json:"next"`
	Later []HandoutItem `json:"later,omitempty"`
	Tries int           `json:"tries,omitempty"`
}

// putHandoutTxn writes h: nothing left, both rows go; a pass over with
// items left behind, the job is written again with those as its items;
// else the progress. Rows are sealed with the secrets key: a sender-key
// body holds a chain key.
func (s *Store) putHandoutTxn(txn *badger.Txn, h *Handout, job bool) error {
	jk, pk := handoutKey(h.Group, h.Epoch, handoutJob), handoutKey(h.Group, h.Epoch, handoutProgress)
	if h.Done() {
		if err := s.del(txn, jk); err != nil {
			return err
		}
		return s.del(txn, pk)
	}
	prog := handoutProgressRec{Next: h.Next, Later: h.Later, Tries: h.Tries}
	items := h.Items
	if h.Next >= len(h.Items) {
		items, prog.Next, prog.Later, job = h.Later, 0, nil, true
	}
	if job {
		if err := s.putRecordWith(txn, s.secrets, jk, &handoutRec{Group: h.Group[:], Epoch: h.Epoch, Bodies: h.Bodies, Items: items}); err != nil {
			return err
		}
	}
	return s.putRecordWith(txn, s.secrets, pk, &prog)
}

// PutGroupStateHandout is PutGroupState that also writes h (when not nil
// and not empty), the controls to hand out for st, in the same
// transaction.
func (s *Store) PutGroupStateHandout(ctx context.Context, st *protocol.GroupState, own *protocol.SenderChain, h *Handout) error {
	if h != nil {
		if h.Group != st.Group || h.Epoch != st.Epoch {
			return fmt.Errorf("%w: hand-out for another group or epoch", ErrInvalid)
		}
		if err := h.check(); err != nil {
			return err
		}
	}
	return s.putGroupState(ctx, st, own, func(txn *badger.Txn) error {
		if h == nil || h.Done() {
			return nil
		}
		return s.putHandoutTxn(txn, h, true)
	})
}

// Handouts returns the jobs not finished, in key order (by group, then
// epoch).
func (s *Store) Handouts(ctx context.Context) ([]Handout, error) {
	var out []Handout
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kHandout}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			if len(key) != 1+protocol.GroupIDSize+8+1 {
				return corrupt(rowHandout, "key size")
			}
			if key[len(key)-1] != handoutJob {
				continue // a progress row, read with its job
			}
			var r handoutRec
			plain, err := openItem(it.Item(), s.secrets, rowHandout)
			if err != nil {
				return err
			}
			err = decodeRecord(rowHandout, plain, &r)
			clear(plain)
			if err != nil {
				return err
			}
			if len(r.Group) != protocol.GroupIDSize || string(handoutKey(protocol.GroupID(r.Group), r.Epoch, handoutJob)) != string(key) {
				return corrupt(rowHandout, "row does not match its key")
			}
			h := Handout{Group: protocol.GroupID(r.Group), Epoch: r.Epoch, Bodies: r.Bodies, Items: r.Items}
			var p handoutProgressRec
			switch err := s.getRecordWith(txn, s.secrets, rowHandout, handoutKey(h.Group, h.Epoch, handoutProgress), &p); {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				return err
			default:
				h.Next, h.Later, h.Tries = p.Next, p.Later, p.Tries
			}
			if err := h.check(); err != nil {
				return corrupt(rowHandout, err.Error())
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// HandoutBatchBytes is how many bytes of envelopes one QueueHandouts call
// should carry at most: a share of what one transaction can hold.
func (s *Store) HandoutBatchBytes() int { return int(s.opts.MemTableSize * 15 / 100 / 3) }

// QueueHandouts queues entries (control envelopes sealed from a batch of
// h's items) in the outbox and writes h's progress (h as it is after the
// batch), in one transaction; a job with nothing left is deleted. It is
// ErrNotFound, and writes nothing, if the job is gone; an entry whose ID
// is taken is ErrDuplicate.
func (s *Store) QueueHandouts(ctx context.Context, h *Handout, entries []OutboxEntry) error {
	p, err := s.QueueHandoutsAsync(ctx, h, entries)
	if err != nil {
		return err
	}
	return p.Wait()
}

// QueueHandoutsAsync is QueueHandouts that returns once the write is in
// the commit queue; its Pending reports the outcome. The caller may seal
// its next batch meanwhile, and queue it once this one is committed.
func (s *Store) QueueHandoutsAsync(ctx context.Context, h *Handout, entries []OutboxEntry) (*Pending, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	for i := range entries {
		entries[i].Control, entries[i].Seq = true, 0
		if err := entries[i].check(); err != nil {
			return nil, err
		}
	}
	done, err := s.queue(ctx, func(txn *badger.Txn) error {
		if ok, err := exists(txn, handoutKey(h.Group, h.Epoch, handoutJob)); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("%w: hand-out of group %s epoch %d", ErrNotFound, h.Group, h.Epoch)
			}
			return err
		}
		for i := range entries {
			e := &entries[i]
			if err := checkFreeID(txn, e.MsgID); err != nil {
				return err
			}
			if err := s.putOutbox(txn, e); err != nil {
				return err
			}
		}
		return s.putHandoutTxn(txn, h, false)
	})
	if err != nil {
		return nil, err
	}
	return &Pending{done: done}, nil
}

// DropHandout deletes a job (given up on).
func (s *Store) DropHandout(ctx context.Context, g protocol.GroupID, epoch uint64) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		for _, part := range []byte{handoutJob, handoutProgress} {
			if err := s.del(txn, handoutKey(g, epoch, part)); err != nil {
				return err
			}
		}
		return nil
	})
}
