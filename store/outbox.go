package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// OutboxEntry is a sealed envelope waiting to be delivered (again).
type OutboxEntry struct {
	MsgID       MsgID
	Recipient   protocol.ID
	Envelope    []byte // the encoded envelope, ready to send
	Attempts    int    // delivery attempts so far
	NextAttempt time.Time
	// Control marks an envelope with no message row of its own (a contact
	// request or accept, a receipt): finishing it only removes the entry.
	Control bool
	// Session marks an entry whose Envelope holds a session message
	// (protocol.SessionMessage) rather than an envelope.
	Session bool
	// Seq is the entry's place in its recipient's queue: the store gives
	// each new entry the next number when the write is committed, so
	// entries to one recipient are in the order they were written
	// (OutboxQueue). It stays the same when the entry is rescheduled or
	// sealed again.
	Seq uint64
}

type outboxRec struct {
	MsgID       []byte `json:"msg_id"`
	Recipient   []byte `json:"recipient"`
	Envelope    []byte `json:"envelope"`
	Attempts    int    `json:"attempts"`
	NextAttempt int64  `json:"next_attempt"`
	Control     bool   `json:"control,omitempty"`
	Session     bool   `json:"session,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
}

func (e *OutboxEntry) check() error {
	switch {
	case e.MsgID.IsZero():
		return fmt.Errorf("%w: outbox entry without message ID", ErrInvalid)
	case e.Recipient.IsZero():
		return fmt.Errorf("%w: outbox entry without recipient", ErrInvalid)
	case len(e.Envelope) == 0:
		return fmt.Errorf("%w: outbox entry without envelope", ErrInvalid)
	case e.Attempts < 0:
		return fmt.Errorf("%w: negative attempts", ErrInvalid)
	}
	return checkTime("next attempt", e.NextAttempt)
}

func (r *outboxRec) entry() (OutboxEntry, error) {
	e := OutboxEntry{Envelope: r.Envelope, Attempts: r.Attempts, NextAttempt: fromNanos(r.NextAttempt), Control: r.Control, Session: r.Session, Seq: r.Seq}
	if len(r.MsgID) != MsgIDSize || len(r.Recipient) != protocol.IDSize {
		return e, corrupt(rowOutbox, "IDs")
	}
	e.MsgID, e.Recipient = MsgID(r.MsgID), protocol.ID(r.Recipient)
	return e, nil
}

// putOutbox writes an entry, its due-index row and its queue row. A new
// entry (Seq 0) gets the next sequence number.
func (s *Store) putOutbox(txn *badger.Txn, e *OutboxEntry) error {
	if e.Seq == 0 {
		e.Seq = s.outboxSeq.Add(1)
	}
	qk := outboxQueueKey(e.Recipient, e.Seq, e.MsgID)
	if err := txn.Set(qk, s.rows.seal(qk, nil)); err != nil {
		return err
	}
	rec := &outboxRec{
		Seq:         e.Seq,
		MsgID:       e.MsgID[:],
		Recipient:   e.Recipient[:],
		Envelope:    e.Envelope,
		Attempts:    e.Attempts,
		NextAttempt: nanos(e.NextAttempt),
		Control:     e.Control,
		Session:     e.Session,
	}
	if err := s.putRecord(txn, outboxKey(e.MsgID), rec); err != nil {
		return err
	}
	dk := outboxDueKey(e.NextAttempt, e.MsgID)
	return txn.Set(dk, s.rows.seal(dk, nil))
}

// getOutbox reads an entry (ErrNotFound if there is none).
func (s *Store) getOutbox(txn *badger.Txn, id MsgID) (OutboxEntry, error) {
	var rec outboxRec
	if err := s.getRecord(txn, rowOutbox, outboxKey(id), &rec); err != nil {
		if errors.Is(err, ErrNotFound) {
			return OutboxEntry{}, fmt.Errorf("%w: outbox entry %s", ErrNotFound, id)
		}
		return OutboxEntry{}, err
	}
	e, err := rec.entry()
	if err == nil && e.MsgID != id {
		err = corrupt(rowOutbox, "entry under another message ID")
	}
	return e, err
}

// deleteOutbox removes an entry and its due-index row.
func (s *Store) deleteOutbox(txn *badger.Txn, id MsgID) (OutboxEntry, error) {
	e, err := s.getOutbox(txn, id)
	if err != nil {
		return e, err
	}
	if err := txn.Delete(outboxDueKey(e.NextAttempt, id)); err != nil {
		return e, err
	}
	if err := txn.Delete(outboxQueueKey(e.Recipient, e.Seq, id)); err != nil {
		return e, err
	}
	return e, txn.Delete(outboxKey(id))
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

// DueOutbox returns up to limit entries whose next attempt is at or before
// at, earliest first (ties by message ID). It walks the due-time index
// forward and stops at the first entry not yet due.
func (s *Store) DueOutbox(ctx context.Context, at time.Time, limit int) ([]OutboxEntry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalid, limit)
	}
	var out []OutboxEntry
	err := s.view(ctx, func(txn *badger.Txn) error {
		// Keys only: the index values are empty seals, checked one by one.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kOutboxDue}})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			item := it.Item()
			key := item.Key()
			if len(key) != 1+timeSize+MsgIDSize {
				return corrupt(rowOutboxDue, "key size")
			}
			due := getTime(key[1:])
			if due.After(at) {
				break
			}
			if _, err := openItem(item, s.rows, rowOutboxDue); err != nil {
				return err
			}
			e, err := s.getOutbox(txn, MsgID(key[1+timeSize:]))
			if errors.Is(err, ErrNotFound) {
				return corrupt(rowOutboxDue, "points to no entry")
			}
			if err != nil {
				return err
			}
			if !e.NextAttempt.Equal(due) {
				return corrupt(rowOutboxDue, "due time does not match the entry")
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

// RescheduleOutbox counts a failed attempt (Attempts+1) and moves the
// entry's next attempt to next, updating the due index in the same
// transaction. It returns the updated entry.
func (s *Store) RescheduleOutbox(ctx context.Context, id MsgID, next time.Time) (OutboxEntry, error) {
	if err := checkTime("next attempt", next); err != nil {
		return OutboxEntry{}, err
	}
	var e OutboxEntry
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if e, err = s.deleteOutbox(txn, id); err != nil {
			return err
		}
		e.Attempts++ // e keeps its Seq
		e.NextAttempt = next
		return s.putOutbox(txn, &e)
	})
	if err != nil {
		return OutboxEntry{}, err
	}
	return e, nil
}

// ResealOutbox replaces the bytes of message id's entry (a message sealed
// again, in a new session, after the first copy could not be opened),
// makes it due at next, and writes u (when not nil) in the same
// transaction. ErrNotFound if the entry is gone (settled meanwhile).
func (s *Store) ResealOutbox(ctx context.Context, id MsgID, sealed []byte, session bool, next time.Time, u *SessionUpdate) (OutboxEntry, error) {
	if len(sealed) == 0 {
		return OutboxEntry{}, fmt.Errorf("%w: empty envelope", ErrInvalid)
	}
	if err := checkTime("next attempt", next); err != nil {
		return OutboxEntry{}, err
	}
	var e OutboxEntry
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if e, err = s.deleteOutbox(txn, id); err != nil {
			return err
		}
		e.Envelope, e.Session, e.NextAttempt = sealed, session, next
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

// FinishOutbox removes the entry of message id and sets the message's
// status (as UpdateStatus does) in one transaction: a delivery, or a final
// failure, leaves no window where the message is neither retried nor
// marked. For a control entry it only removes the entry and returns the
// zero Message.
func (s *Store) FinishOutbox(ctx context.Context, id MsgID, st Status, path Path, errText string) (Message, error) {
	if !st.Valid() || !path.Valid() {
		return Message{}, fmt.Errorf("%w: status %q path %q", ErrInvalid, st, path)
	}
	var m Message
	err := s.update(ctx, func(txn *badger.Txn) error {
		e, err := s.deleteOutbox(txn, id)
		if err != nil || e.Control {
			return err
		}
		m, err = s.setStatus(txn, id, st, path, errText)
		return err
	})
	return m, err
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
	if e.NextAttempt.IsZero() {
		e.NextAttempt = s.now()
	}
	if err := e.check(); err != nil {
		return err
	}
	return s.update(ctx, func(txn *badger.Txn) error {
		for _, k := range [][]byte{messageIndexKey(e.MsgID), outboxKey(e.MsgID)} {
			if ok, err := exists(txn, k); err != nil || ok {
				if err == nil {
					err = fmt.Errorf("%w: %s", ErrDuplicate, e.MsgID)
				}
				return err
			}
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
			key := item.Key()
			if len(key) != len(prefix)+8+MsgIDSize {
				return corrupt(rowOutboxQueue, "key size")
			}
			if _, err := openItem(item, s.rows, rowOutboxQueue); err != nil {
				return err
			}
			seq := getUint64(key[len(prefix):])
			e, err := s.getOutbox(txn, MsgID(key[len(prefix)+8:]))
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
			key := it.Item().Key()
			if len(key) < 1+protocol.IDSize {
				return corrupt(rowOutboxQueue, "key size")
			}
			to := protocol.ID(key[1 : 1+protocol.IDSize])
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

// FinishOutboxes finishes many entries (as FinishOutbox does one) in one
// write. It returns, per entry, the message as stored (the zero Message
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
	err := s.update(ctx, func(txn *badger.Txn) error {
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

// initOutboxSeq sets the sequence counter past every queued entry, and
// gives entries written before queues existed (Seq 0) their place, in
// due order.
func (s *Store) initOutboxSeq() error {
	var last uint64
	var old []OutboxEntry
	err := s.db.View(func(txn *badger.Txn) error {
		return s.scanRecords(txn, s.rows, rowOutbox, []byte{kOutbox}, func() any { return new(outboxRec) },
			func(_ []byte, rec any) error {
				e, err := rec.(*outboxRec).entry()
				if err != nil {
					return err
				}
				if e.Seq == 0 {
					old = append(old, e)
				}
				last = max(last, e.Seq)
				return nil
			})
	})
	if err != nil {
		return err
	}
	s.outboxSeq.Store(last)
	if len(old) == 0 {
		return nil
	}
	slices.SortFunc(old, func(a, b OutboxEntry) int {
		if c := a.NextAttempt.Compare(b.NextAttempt); c != 0 {
			return c
		}
		return bytes.Compare(a.MsgID[:], b.MsgID[:])
	})
	// In batches, so that a large outbox fits badger's transactions.
	n := 128
	for len(old) > 0 {
		n = min(n, len(old))
		batch := old[:n]
		err := s.db.Update(func(txn *badger.Txn) error {
			for i := range batch {
				e := batch[i] // a failed try must not keep the seqs it gave
				if err := s.putOutbox(txn, &e); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, badger.ErrTxnTooBig) && n > 1 {
			n /= 2
			continue
		}
		if err != nil {
			return err
		}
		old = old[n:]
	}
	return nil
}
