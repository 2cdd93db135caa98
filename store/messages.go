package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Message is one message of a conversation, received or sent.
type Message struct {
	ID           MsgID
	Conversation ConversationID
	Direction    Direction
	From         protocol.ID
	To           protocol.ID // the recipient user (1:1); zero for a group
	Kind         string      // the application's message kind ("text", ...)
	Body         []byte      // plaintext body
	SentAt       time.Time   // the sender's timestamp
	ReceivedAt   time.Time   // when this node stored it (incoming only)
	Status       Status
	Path         Path
	Error        string // why it failed, for StatusFailed
}

// SortTime is the time a message is ordered by in its conversation:
// ReceivedAt for incoming messages, SentAt for outgoing ones.
func (m *Message) SortTime() time.Time {
	if m.Direction == In {
		return m.ReceivedAt
	}
	return m.SentAt
}

type msgRec struct {
	ID         []byte `json:"id"`
	Conv       []byte `json:"conv"`
	Dir        string `json:"dir"`
	From       []byte `json:"from"`
	To         []byte `json:"to"`
	Kind       string `json:"kind,omitempty"`
	Body       []byte `json:"body,omitempty"`
	SentAt     int64  `json:"sent_at"`
	ReceivedAt int64  `json:"received_at,omitempty"`
	Status     string `json:"status"`
	Path       string `json:"path,omitempty"`
	Error      string `json:"error,omitempty"`
}

func newMsgRec(m *Message) *msgRec {
	return &msgRec{
		ID:         m.ID[:],
		Conv:       m.Conversation[:],
		Dir:        string(m.Direction),
		From:       m.From[:],
		To:         m.To[:],
		Kind:       m.Kind,
		Body:       m.Body,
		SentAt:     nanos(m.SentAt),
		ReceivedAt: nanos(m.ReceivedAt),
		Status:     string(m.Status),
		Path:       string(m.Path),
		Error:      m.Error,
	}
}

func (r *msgRec) message() (Message, error) {
	m := Message{
		Direction:  Direction(r.Dir),
		Kind:       r.Kind,
		Body:       r.Body,
		SentAt:     fromNanos(r.SentAt),
		ReceivedAt: fromNanos(r.ReceivedAt),
		Status:     Status(r.Status),
		Path:       Path(r.Path),
		Error:      r.Error,
	}
	if len(r.ID) != MsgIDSize || len(r.Conv) != convSize ||
		len(r.From) != protocol.IDSize || len(r.To) != protocol.IDSize {
		return m, corrupt(rowMessage, "IDs")
	}
	m.ID, m.Conversation = MsgID(r.ID), ConversationID(r.Conv)
	m.From, m.To = protocol.ID(r.From), protocol.ID(r.To)
	return m, nil
}

// check validates what every stored message needs.
func (m *Message) check() error {
	switch {
	case m.ID.IsZero():
		return fmt.Errorf("%w: zero message ID", ErrInvalid)
	case m.Conversation.IsZero():
		return fmt.Errorf("%w: message without conversation", ErrInvalid)
	case !m.Status.Valid():
		return fmt.Errorf("%w: message status %q", ErrInvalid, m.Status)
	case !m.Path.Valid():
		return fmt.Errorf("%w: message path %q", ErrInvalid, m.Path)
	}
	if !m.SentAt.IsZero() {
		if err := checkTime("sent time", m.SentAt); err != nil {
			return err
		}
	}
	return checkTime("sort time", m.SortTime())
}

// prepareIncoming fills in an incoming message's defaults.
func prepareIncoming(m *Message, now time.Time) error {
	switch m.Direction {
	case "":
		m.Direction = In
	case In:
	default:
		return fmt.Errorf("%w: received message with direction %q", ErrInvalid, m.Direction)
	}
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = now
	}
	if m.Status == "" {
		m.Status = StatusDelivered
	}
	return m.check()
}

// putMessage writes a new message row and its index entry.
func (s *Store) putMessage(txn *badger.Txn, m *Message) error {
	sk := sortKey(m.SortTime(), m.ID)
	if err := s.putRecord(txn, messageKey(m.Conversation, sk), newMsgRec(m)); err != nil {
		return err
	}
	ik := messageIndexKey(m.ID)
	idx := make([]byte, 0, convSize+sortKeySize)
	idx = append(append(idx, m.Conversation[:]...), sk...)
	return s.set(txn, ik, s.rows.seal(ik, idx))
}

// checkNew fails with ErrDuplicate if id is seen (by the store's clock) or
// already has a message.
func checkNew(txn *badger.Txn, id MsgID, now time.Time) error {
	live, err := seenLive(txn, id, now)
	if err != nil {
		return err
	}
	if !live {
		if live, err = exists(txn, messageIndexKey(id)); err != nil {
			return err
		}
	}
	if live {
		return fmt.Errorf("%w: %s", ErrDuplicate, id)
	}
	return nil
}

// receiveTxn writes one incoming message, its seen row, and its effect on
// the conversation (kept in convs, written by the caller).
func (s *Store) receiveTxn(txn *badger.Txn, m *Message, now time.Time, convs map[ConversationID]*convRec) error {
	if err := checkNew(txn, m.ID, now); err != nil {
		return err
	}
	if err := s.putMessage(txn, m); err != nil {
		return err
	}
	if err := s.setEntry(txn, s.seenEntry(m.ID, now)); err != nil {
		return err
	}
	c, ok := convs[m.Conversation]
	if !ok {
		var err error
		if c, err = s.loadConv(txn, m.Conversation); err != nil {
			return err
		}
		convs[m.Conversation] = c
	}
	c.apply(m)
	return nil
}

func (s *Store) putConvs(txn *badger.Txn, convs map[ConversationID]*convRec) error {
	for id, c := range convs {
		if err := s.putRecord(txn, conversationKey(id), c); err != nil {
			return err
		}
	}
	return nil
}

// StoreReceived stores an incoming message: the message, its seen ID (with
// the seen TTL) and the conversation update (last message, unread+1), in
// one transaction synced to disk before it returns. It fills in Direction
// (In), ReceivedAt (the store's clock) and Status (delivered) when they
// are empty, and returns the message as stored. A message ID that is
// already seen or stored is ErrDuplicate and changes nothing.
func (s *Store) StoreReceived(ctx context.Context, m Message) (Message, error) {
	return s.StoreReceivedWith(ctx, m, nil)
}

// StoreReceivedWith is StoreReceived that also writes u (when not nil),
// the sender's session state after opening m, in the same transaction: a
// crash never leaves the message stored with its ratchet un-advanced, or
// the reverse. On ErrDuplicate nothing is written, u neither.
func (s *Store) StoreReceivedWith(ctx context.Context, m Message, u *SessionUpdate) (Message, error) {
	now := s.now()
	if err := prepareIncoming(&m, now); err != nil {
		return Message{}, err
	}
	err := s.update(ctx, func(txn *badger.Txn) error {
		convs := make(map[ConversationID]*convRec, 1)
		if err := s.receiveTxn(txn, &m, now, convs); err != nil {
			return err
		}
		if err := s.putSessionsTxn(txn, u); err != nil {
			return err
		}
		return s.putConvs(txn, convs)
	})
	if err != nil {
		return Message{}, err
	}
	return m, nil
}

// StoreReceivedBatch stores many incoming messages with one transaction
// and one sync, as StoreReceived does one. It fills in the defaults in
// msgs and returns one result per message: nil, ErrDuplicate (also for a
// repeat within the batch) or ErrInvalid. The error is for the batch as a
// whole (nothing was stored). A batch too big for one badger transaction
// is split in halves, each whole message staying in one transaction.
func (s *Store) StoreReceivedBatch(ctx context.Context, msgs []Message) ([]error, error) {
	return s.StoreReceivedBatchWith(ctx, msgs, nil)
}

// StoreReceivedBatchWith is StoreReceivedBatch that also writes u (when
// not nil), the sender's session state after opening all of msgs, with
// them: in the same transaction, or in the last one when the batch is
// split, so the stored state is never ahead of the stored messages.
func (s *Store) StoreReceivedBatchWith(ctx context.Context, msgs []Message, u *SessionUpdate) ([]error, error) {
	now := s.now()
	results := make([]error, len(msgs))
	var valid []int
	for i := range msgs {
		// A nanosecond apart, so that the conversation keeps them in the
		// order they came (history sorts by receive time, then by ID).
		if results[i] = prepareIncoming(&msgs[i], now.Add(time.Duration(i))); results[i] == nil {
			valid = append(valid, i)
		}
	}
	if err := s.receiveBatch(ctx, msgs, valid, now, results, u); err != nil {
		return nil, err
	}
	return results, nil
}

func (s *Store) receiveBatch(ctx context.Context, msgs []Message, idx []int, now time.Time, results []error, u *SessionUpdate) error {
	if len(idx) == 0 {
		if u == nil {
			return nil
		}
		return s.update(ctx, func(txn *badger.Txn) error { return s.putSessionsTxn(txn, u) })
	}
	err := s.update(ctx, func(txn *badger.Txn) error {
		convs := make(map[ConversationID]*convRec)
		for _, i := range idx {
			err := s.receiveTxn(txn, &msgs[i], now, convs)
			if err != nil && !errors.Is(err, ErrDuplicate) {
				return err
			}
			results[i] = err
		}
		if err := s.putSessionsTxn(txn, u); err != nil {
			return err
		}
		return s.putConvs(txn, convs)
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(idx) > 1 {
		half := len(idx) / 2
		if err := s.receiveBatch(ctx, msgs, idx[:half], now, results, nil); err != nil {
			return err
		}
		return s.receiveBatch(ctx, msgs, idx[half:], now, results, u)
	}
	return err
}

// Message returns the message with ID id, or ErrNotFound.
func (s *Store) Message(ctx context.Context, id MsgID) (Message, error) {
	var m Message
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		m, _, err = s.getMessage(txn, id)
		return err
	})
	return m, err
}

// getMessage finds a message through the index and returns it with its
// row key.
func (s *Store) getMessage(txn *badger.Txn, id MsgID) (Message, []byte, error) {
	idx, err := s.getSealed(txn, s.rows, rowMessageIndex, messageIndexKey(id))
	if errors.Is(err, ErrNotFound) {
		return Message{}, nil, fmt.Errorf("%w: message %s", ErrNotFound, id)
	}
	if err != nil {
		return Message{}, nil, err
	}
	if len(idx) != convSize+sortKeySize {
		return Message{}, nil, corrupt(rowMessageIndex, "value size")
	}
	key := append([]byte{kMessage}, idx...)
	var rec msgRec
	if err := s.getRecord(txn, rowMessage, key, &rec); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Message{}, nil, corrupt(rowMessageIndex, "points to no message")
		}
		return Message{}, nil, err
	}
	m, err := rec.message()
	if err != nil {
		return Message{}, nil, err
	}
	if err := checkMessageKey(&m, key); err != nil {
		return Message{}, nil, err
	}
	if m.ID != id {
		return Message{}, nil, tampered(rowMessageIndex)
	}
	return m, key, nil
}

// checkMessageKey checks that a decoded message belongs under key. The
// seal already binds the row to its key; this catches our own mistakes.
func checkMessageKey(m *Message, key []byte) error {
	if len(key) != msgKeySize || ConversationID(key[1:1+convSize]) != m.Conversation ||
		string(key[1+convSize:]) != string(sortKey(m.SortTime(), m.ID)) {
		return corrupt(rowMessage, "row does not match its key")
	}
	return nil
}

// AddOutgoing stores an outgoing message and its outbox entry, and updates
// the conversation, in one synced transaction. It fills in Direction
// (Out), SentAt (the store's clock), Status (pending) and the entry's
// MsgID when they are empty; the entry goes at the end of its
// recipient's queue. A message ID already stored is ErrDuplicate.
func (s *Store) AddOutgoing(ctx context.Context, m Message, e OutboxEntry) (Message, error) {
	return s.AddOutgoingWith(ctx, m, e, nil)
}

// AddOutgoingWith is AddOutgoing that also writes u (when not nil), the
// session state after sealing m, in the same transaction.
func (s *Store) AddOutgoingWith(ctx context.Context, m Message, e OutboxEntry, u *SessionUpdate) (Message, error) {
	m, p, err := s.QueueOutgoing(ctx, m, e, u)
	if err != nil {
		return Message{}, err
	}
	if err := p.Wait(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// QueueOutgoing is AddOutgoingWith that returns as soon as the write is
// in the commit queue: writes queued one after another are committed in
// that order, so a caller that queues under its own lock orders its
// writes by that lock and waits for them outside it. It returns the
// message as it will be stored; Pending.Wait says whether it was.
func (s *Store) QueueOutgoing(ctx context.Context, m Message, e OutboxEntry, u *SessionUpdate) (Message, *Pending, error) {
	now := s.now()
	switch m.Direction {
	case "":
		m.Direction = Out
	case Out:
	default:
		return Message{}, nil, fmt.Errorf("%w: outgoing message with direction %q", ErrInvalid, m.Direction)
	}
	if m.SentAt.IsZero() {
		m.SentAt = now
	}
	if m.Status == "" {
		m.Status = StatusPending
	}
	if e.MsgID.IsZero() {
		e.MsgID = m.ID
	}
	e.Seq = 0 // the store gives the next one
	if err := m.check(); err != nil {
		return Message{}, nil, err
	}
	if e.MsgID != m.ID {
		return Message{}, nil, fmt.Errorf("%w: outbox entry for another message", ErrInvalid)
	}
	if err := e.check(); err != nil {
		return Message{}, nil, err
	}
	done, err := s.queue(ctx, func(txn *badger.Txn) error {
		if err := checkFreeID(txn, m.ID); err != nil {
			return err
		}
		if err := s.putMessage(txn, &m); err != nil {
			return err
		}
		if err := s.putOutbox(txn, &e); err != nil {
			return err
		}
		if err := s.putSessionsTxn(txn, u); err != nil {
			return err
		}
		c, err := s.loadConv(txn, m.Conversation)
		if err != nil {
			return err
		}
		c.apply(&m)
		return s.putRecord(txn, conversationKey(m.Conversation), c)
	})
	if err != nil {
		return Message{}, nil, err
	}
	return m, &Pending{done: done}, nil
}

// UpdateStatus sets a message's status, and its path when path is not
// empty, and its error text. A message never moves back: pending < failed
// < sent < delivered < read, except that a failed message may go back to
// pending (a retry). An update that would move it back changes nothing.
// It returns the message as stored.
func (s *Store) UpdateStatus(ctx context.Context, id MsgID, st Status, path Path, errText string) (Message, error) {
	if !st.Valid() || !path.Valid() {
		return Message{}, fmt.Errorf("%w: status %q path %q", ErrInvalid, st, path)
	}
	var m Message
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		m, err = s.setStatus(txn, id, st, path, errText)
		return err
	})
	return m, err
}

func (s *Store) setStatus(txn *badger.Txn, id MsgID, st Status, path Path, errText string) (Message, error) {
	m, key, err := s.getMessage(txn, id)
	if err != nil {
		return Message{}, err
	}
	if st.rank() < m.Status.rank() && !(m.Status == StatusFailed && st == StatusPending) {
		return m, nil
	}
	m.Status = st
	if path != "" {
		m.Path = path
	}
	m.Error = errText
	if err := s.putRecord(txn, key, newMsgRec(&m)); err != nil {
		return Message{}, err
	}
	return m, nil
}
