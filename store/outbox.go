package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// OutboxEntry is a sealed envelope waiting to be delivered (again).
type OutboxEntry struct {
	MsgID     MsgID
	Recipient protocol.ID
	Envelope  []byte // the encoded envelope, ready to send
	// Control marks an envelope with no message row of its own (a contact
	// request or accept, a receipt): finishing it only removes the entry.
	Control bool
	// Session marks an entry whose Envelope holds a session message
	// (protocol.SessionMessage) rather than an envelope.
	Session bool
	// Seq is the entry's place in its recipient's queue: the store gives
	// each new entry the next number when the write is committed, so
	// entries to one recipient are in the order they were written
	// (OutboxQueue). It stays the same when the entry is sealed again.
	// The queue is the outbox's only order: when to try again is the
	// courier's business (node/outbox keeps its backoff in memory).
	Seq uint64
}

// outboxRec is an entry on disk (outboxrow.go: its layout). JSON records
// written by older versions also
// hold "attempts" (ignored: encoding/json skips unknown fields) and
// "next_attempt", read only to give entries from before the queues their
// place (initOutboxSeq); neither is written any more.
type outboxRec struct {
	MsgID     []byte `json:"msg_id"`
	Recipient []byte `json:"recipient"`
	Envelope  []byte `json:"envelope"`
	OldDue    int64  `json:"next_attempt,omitempty"`
	Control   bool   `json:"control,omitempty"`
	Session   bool   `json:"session,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
}

func (e *OutboxEntry) check() error {
	switch {
	case e.MsgID.IsZero():
		return fmt.Errorf("%w: outbox entry without message ID", ErrInvalid)
	case e.Recipient.IsZero():
		return fmt.Errorf("%w: outbox entry without recipient", ErrInvalid)
	case len(e.Envelope) == 0:
		return fmt.Errorf("%w: outbox entry without envelope", ErrInvalid)
	}
	return nil
}

func (r *outboxRec) entry() (OutboxEntry, error) {
	e := OutboxEntry{Envelope: r.Envelope, Control: r.Control, Session: r.Session, Seq: r.Seq}
	if len(r.MsgID) != MsgIDSize || len(r.Recipient) != protocol.IDSize {
		return e, corrupt(rowOutbox, "IDs")
	}
	e.MsgID, e.Recipient = MsgID(r.MsgID), protocol.ID(r.Recipient)
	return e, nil
}

// putOutbox writes an entry and its queue row. A new entry (Seq 0) gets
// the next sequence number.
func (s *Store) putOutbox(txn *badger.Txn, e *OutboxEntry) error {
	if e.Seq == 0 {
		e.Seq = s.outboxSeq.Add(1)
	}
	qk := outboxQueueKey(e.Recipient, e.Seq, e.MsgID)
	if err := s.set(txn, qk, s.rows.seal(qk, nil)); err != nil {
		return err
	}
	key := outboxKey(e.MsgID)
	plain := encodeOutboxRow(&outboxRec{
		Seq:       e.Seq,
		MsgID:     e.MsgID[:],
		Recipient: e.Recipient[:],
		Envelope:  e.Envelope,
		Control:   e.Control,
		Session:   e.Session,
	})
	return s.set(txn, key, s.rows.seal(key, plain))
}

// getOutbox reads an entry (ErrNotFound if there is none).
func (s *Store) getOutbox(txn *badger.Txn, id MsgID) (OutboxEntry, error) {
	plain, err := s.getSealed(txn, s.rows, rowOutbox, outboxKey(id))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return OutboxEntry{}, fmt.Errorf("%w: outbox entry %s", ErrNotFound, id)
		}
		return OutboxEntry{}, err
	}
	rec, err := decodeOutboxRow(plain)
	if err != nil {
		return OutboxEntry{}, err
	}
	e, err := rec.entry()
	if err == nil && e.MsgID != id {
		err = corrupt(rowOutbox, "entry under another message ID")
	}
	return e, err
}

// deleteOutbox removes an entry and its queue row.
func (s *Store) deleteOutbox(txn *badger.Txn, id MsgID) (OutboxEntry, error) {
	e, err := s.getOutbox(txn, id)
	if err != nil {
		return e, err
	}
	if err := s.del(txn, outboxQueueKey(e.Recipient, e.Seq, id)); err != nil {
		return e, err
	}
	return e, s.del(txn, outboxKey(id))
}

// OutboxEntry returns the outbox entry of message id, or ErrNotFound.
func (s *Store) OutboxEntry(ctx context.Context, id MsgID) (OutboxEntry, error) {
	var e OutboxEntry
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		e, err = s.getOutbox(txn, id)
		return err
	})
	return e, err
}

// ResealOutbox replaces the bytes of message id's entry (a message sealed
// again, in a new session, after the first copy could not be opened),
// keeping its place in the queue, and writes u (when not nil) in the same
// transaction. ErrNotFound if the entry is gone (settled meanwhile).
func (s *Store) ResealOutbox(ctx context.Context, id MsgID, sealed []byte, session bool, u *SessionUpdate) (OutboxEntry, error) {
	if len(sealed) == 0 {
		return OutboxEntry{}, fmt.Errorf("%w: empty envelope", ErrInvalid)
	}
	var e OutboxEntry
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if e, err = s.deleteOutbox(txn, id); err != nil {
			return err
		}
		e.Envelope, e.Session = sealed, session
		if err := s.putSessionsTxn(txn, u); err != nil {
			return err
		}
		return s.putOutbox(txn, &e)
	})
	if err != nil {
		return OutboxEntry{}, err
	}
	return e, nil
}

// RemoveOutbox deletes the entry of message id and its index row
// (ErrNotFound if there is none).
func (s *Store) RemoveOutbox(ctx context.Context, id MsgID) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		_, err := s.deleteOutbox(txn, id)
		return err
	})
}

// AddControl queues a control envelope (one with no message row: a contact
// request or accept, a receipt) for delivery. An entry with the same ID is
// ErrDuplicate.
func (s *Store) AddControl(ctx context.Context, e OutboxEntry) error {
	return s.AddControlWith(ctx, e, nil)
}

// AddControlWith is AddControl that also writes u (when not nil), the
// session state after sealing e, in the same transaction.
func (s *Store) AddControlWith(ctx context.Context, e OutboxEntry, u *SessionUpdate) error {
	e.Control = true
	e.Seq = 0 // the store gives the next one
	if err := e.check(); err != nil {
		return err
	}
	return s.update(ctx, func(txn *badger.Txn) error {
		if err := checkFreeID(txn, e.MsgID); err != nil {
			return err
		}
		if err := s.putSessionsTxn(txn, u); err != nil {
			return err
		}
		return s.putOutbox(txn, &e)
	})
}

// OutboxQueue returns up to limit entries queued for recipient to whose
// Seq is above after, in queue (write) order. A courier reads its queue
// with it, from the last entry it put on the wire.
func (s *Store) OutboxQueue(ctx context.Context, to protocol.ID, after uint64, limit int) ([]OutboxEntry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalid, limit)
	}
	prefix := append([]byte{kOutboxQueue}, to[:]...)
	var out []OutboxEntry
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(binary.BigEndian.AppendUint64(slices.Clip(prefix), after+1)); it.Valid() && len(out) < limit; it.Next() {
			item := it.Item()
			_, seq, id, err := parseOutboxQueueKey(item.Key())
			if err != nil {
				return err
			}
			if _, err := openItem(item, s.rows, rowOutboxQueue); err != nil {
				return err
			}
			e, err := s.getOutbox(txn, id)
			if errors.Is(err, ErrNotFound) {
				return corrupt(rowOutboxQueue, "points to no entry")
			}
			if err != nil {
				return err
			}
			if e.Seq != seq || e.Recipient != to {
				return corrupt(rowOutboxQueue, "does not match the entry")
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OutboxRecipients lists the recipients that have entries queued.
func (s *Store) OutboxRecipients(ctx context.Context) ([]protocol.ID, error) {
	var out []protocol.ID
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kOutboxQueue}})
		defer it.Close()
		for it.Rewind(); it.Valid(); {
			to, _, _, err := parseOutboxQueueKey(it.Item().Key())
			if err != nil {
				return err
			}
			out = append(out, to)
			// Skip the rest of this recipient's queue.
			it.Seek(binary.BigEndian.AppendUint64(append([]byte{kOutboxQueue}, to[:]...), math.MaxUint64))
			if it.Valid() && bytes.HasPrefix(it.Item().Key(), append([]byte{kOutboxQueue}, to[:]...)) {
				it.Next()
			}
		}
		return nil
	})
	return out, err
}

// Settle is the outcome of one delivery, for FinishOutboxes.
type Settle struct {
	MsgID  MsgID
	Status Status
	Path   Path
	Error  string
}

// FinishOutboxes ends the delivery of entries (delivered, or failed for
// good) in one write: each entry is removed and its message's status set
// (as UpdateStatus does) in the same transaction, so there is no window
// where a message is neither queued nor marked. A control entry is only
// removed. It returns, per entry, the message as stored (the zero Message
// for a control entry, or one already finished) and ErrNotFound for an
// entry that was gone already.
func (s *Store) FinishOutboxes(ctx context.Context, settles []Settle) ([]Message, []error, error) {
	for _, x := range settles {
		if !x.Status.Valid() || !x.Path.Valid() {
			return nil, nil, fmt.Errorf("%w: status %q path %q", ErrInvalid, x.Status, x.Path)
		}
	}
	msgs := make([]Message, len(settles))
	errs := make([]error, len(settles))
	err := s.updateLazy(ctx, func(txn *badger.Txn) error {
		for i, x := range settles {
			msgs[i], errs[i] = Message{}, nil
			e, err := s.deleteOutbox(txn, x.MsgID)
			if errors.Is(err, ErrNotFound) {
				errs[i] = err
				continue
			}
			if err != nil {
				return err
			}
			if e.Control {
				continue
			}
			if msgs[i], err = s.setStatus(txn, x.MsgID, x.Status, x.Path, x.Error); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return msgs, errs, nil
}

// checkFreeID is ErrDuplicate when id already names a message or an
// outbox entry.
func checkFreeID(txn *badger.Txn, id MsgID) error {
	for _, k := range [][]byte{messageIndexKey(id), outboxKey(id)} {
		if ok, err := exists(txn, k); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("%w: %s", ErrDuplicate, id)
			}
			return err
		}
	}
	return nil
}
