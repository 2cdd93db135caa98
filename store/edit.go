package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// RequeueFailed puts a failed outgoing message back at the end of its
// recipient's queue, with e (the message sealed again, under the same
// msg_id), sets its status back to pending (its error cleared) and writes
// u (when not nil), the session state after sealing e, in one synced
// transaction. The message keeps its place in the conversation. It
// returns the message as stored: ErrNotFound when there is no such
// message, ErrConflict when it is incoming, has not failed, or is still
// queued.
func (s *Store) RequeueFailed(ctx context.Context, e OutboxEntry, u *SessionUpdate) (Message, error) {
	e.Control, e.Seq = false, 0 // a message's entry; the store gives the next Seq
	if err := e.check(); err != nil {
		return Message{}, err
	}
	var m Message
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if m, _, err = s.getMessage(txn, e.MsgID); err != nil {
			return err
		}
		switch {
		case m.Direction != Out || m.Status != StatusFailed:
			return fmt.Errorf("%w: message %s is %s %s, not a failed outgoing message", ErrConflict, e.MsgID, m.Direction, m.Status)
		case m.To != e.Recipient:
			return fmt.Errorf("%w: outbox entry for another recipient", ErrInvalid)
		}
		if ok, err := exists(txn, outboxKey(e.MsgID)); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("%w: message %s is queued already", ErrConflict, e.MsgID)
			}
			return err
		}
		if err := s.putOutbox(txn, &e); err != nil {
			return err
		}
		if err := s.putSessionsTxn(txn, u); err != nil {
			return err
		}
		m, err = s.setStatus(txn, e.MsgID, StatusPending, "", "")
		return err
	})
	if err != nil {
		return Message{}, err
	}
	return m, nil
}

// DeleteMessage deletes message id from its conversation, with its outbox
// entry if it is still queued, in one synced transaction, and returns the
// message as it was. The ID stays in the replay cache (for SeenTTL from
// now), so a copy that arrives again is refused, not stored anew. When it
// was the conversation's last message, the newest one left takes its
// place. ErrNotFound when there is no such message.
func (s *Store) DeleteMessage(ctx context.Context, id MsgID) (Message, error) {
	var m Message
	err := s.update(ctx, func(txn *badger.Txn) error {
		var (
			key []byte
			err error
		)
		if m, key, err = s.getMessage(txn, id); err != nil {
			return err
		}
		if _, err := s.deleteOutbox(txn, id); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := s.del(txn, key); err != nil {
			return err
		}
		if err := s.del(txn, messageIndexKey(id)); err != nil {
			return err
		}
		if err := s.setEntry(txn, s.seenEntry(id, s.now())); err != nil {
			return err
		}
		return s.unlinkLast(txn, m.Conversation, id, key)
	})
	if err != nil {
		return Message{}, err
	}
	return m, nil
}

// unlinkLast makes the newest message of conv other than the deleted one
// (row key gone) its last message, when the deleted one (id) was.
func (s *Store) unlinkLast(txn *badger.Txn, conv ConversationID, id MsgID, gone []byte) error {
	c, err := s.loadConv(txn, conv)
	if err != nil {
		return err
	}
	if !bytes.Equal(c.LastMessage, id[:]) {
		return nil
	}
	c.LastMessage, c.LastPreview = nil, ""
	prefix := messagePrefix(conv)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	defer it.Close()
	for it.Seek(append(bytes.Clone(prefix), bytes.Repeat([]byte{0xff}, sortKeySize)...)); it.Valid(); it.Next() {
		if bytes.Equal(it.Item().Key(), gone) {
			continue // deleted in this transaction
		}
		plain, err := openItem(it.Item(), s.rows, rowMessage)
		if err != nil {
			return err
		}
		var rec msgRec
		if err := decodeRecord(rowMessage, plain, &rec); err != nil {
			return err
		}
		last, err := rec.message()
		if err != nil {
			return err
		}
		c.LastMessage, c.LastPreview, c.LastAt = last.ID[:], Preview(last.Body), nanos(last.SortTime())
		break
	}
	return s.putRecord(txn, conversationKey(conv), c)
}
