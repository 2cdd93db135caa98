package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// PreviewSize caps a conversation's last-message preview, in bytes.
const PreviewSize = 140

// Conversation is the summary of a conversation.
type Conversation struct {
	ID          ConversationID
	LastMessage MsgID     // the message with the latest sort time
	LastPreview string    // its body, cut to PreviewSize, if it is UTF-8 text
	LastAt      time.Time // its sort time
	Unread      int       // incoming messages since the last MarkRead
}

type convRec struct {
	ID          []byte `json:"id"`
	LastMessage []byte `json:"last_msg,omitempty"`
	LastPreview string `json:"last_preview,omitempty"`
	LastAt      int64  `json:"last_at"`
	Unread      int    `json:"unread"`
}

func (r *convRec) conversation() (Conversation, error) {
	c := Conversation{LastPreview: r.LastPreview, LastAt: fromNanos(r.LastAt), Unread: r.Unread}
	if len(r.ID) != convSize || (len(r.LastMessage) != 0 && len(r.LastMessage) != MsgIDSize) {
		return c, corrupt(rowConversation, "IDs")
	}
	c.ID = ConversationID(r.ID)
	if len(r.LastMessage) != 0 {
		c.LastMessage = MsgID(r.LastMessage)
	}
	return c, nil
}

// loadConv reads a conversation row, or starts a new one.
func (s *Store) loadConv(txn *badger.Txn, id ConversationID) (*convRec, error) {
	rec := new(convRec)
	err := s.getRecord(txn, rowConversation, conversationKey(id), rec)
	if errors.Is(err, ErrNotFound) {
		return &convRec{ID: id[:]}, nil
	}
	return rec, err
}

// apply records a new message in the conversation: it becomes the last
// message unless a later one is already there, and an incoming message
// counts as unread.
func (r *convRec) apply(m *Message) {
	at := m.SortTime()
	if nanos(at) >= r.LastAt {
		r.LastMessage = m.ID[:]
		r.LastPreview = Preview(m.Body)
		r.LastAt = nanos(at)
	}
	if m.Direction == In {
		r.Unread++
	}
}

// Preview is the start of body shown in a list of conversations: at most
// PreviewSize bytes, cut at a character boundary ("" if not UTF-8).
func Preview(body []byte) string {
	if !utf8.Valid(body) {
		return ""
	}
	if len(body) <= PreviewSize {
		return string(body)
	}
	n := PreviewSize
	for n > 0 && !utf8.RuneStart(body[n]) {
		n--
	}
	return string(body[:n])
}

// Conversation returns one conversation, or ErrNotFound.
func (s *Store) Conversation(ctx context.Context, id ConversationID) (Conversation, error) {
	var c Conversation
	err := s.view(ctx, func(txn *badger.Txn) error {
		var rec convRec
		if err := s.getRecord(txn, rowConversation, conversationKey(id), &rec); err != nil {
			return err
		}
		var err error
		c, err = rec.conversation()
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Conversation{}, fmt.Errorf("%w: conversation %s", ErrNotFound, id)
	}
	return c, err
}

// Conversations returns every conversation, newest activity first (ties
// by ID). It reads them all: a node has hundreds, not millions.
func (s *Store) Conversations(ctx context.Context) ([]Conversation, error) {
	var out []Conversation
	err := s.view(ctx, func(txn *badger.Txn) error {
		return s.scanRecords(txn, s.rows, rowConversation, []byte{kConversation}, func() any { return new(convRec) },
			func(_ []byte, rec any) error {
				c, err := rec.(*convRec).conversation()
				if err != nil {
					return err
				}
				out = append(out, c)
				return nil
			})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Conversation) int {
		if c := b.LastAt.Compare(a.LastAt); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	return out, nil
}

// MarkRead sets a conversation's unread count to zero.
func (s *Store) MarkRead(ctx context.Context, id ConversationID) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		var rec convRec
		key := conversationKey(id)
		if err := s.getRecord(txn, rowConversation, key, &rec); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: conversation %s", ErrNotFound, id)
			}
			return err
		}
		if rec.Unread == 0 {
			return nil
		}
		rec.Unread = 0
		return s.putRecord(txn, key, &rec)
	})
}
