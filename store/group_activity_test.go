package store

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// rawRow is the stored bytes of key (sealed), nil if there is none.
func rawRow(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGroupActivityRow: storing a message updates the group's activity
// row (unread, last message) and leaves the group row, which holds the
// signed roster, as it was; a group row written before activity rows
// existed keeps its counters, which the first message carries on.
func TestGroupActivityRow(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	p := newGroupPeer(t)
	joinGroup(t, s, p)
	id := p.state.Group
	before := rawRow(t, s, groupKey(id))
	t0 := time.Now().Truncate(time.Millisecond)
	m0, err := receive(t, s, p.seal(t, "zero", t0))
	if err != nil {
		t.Fatal(err)
	}
	if after := rawRow(t, s, groupKey(id)); !bytes.Equal(before, after) {
		t.Fatal("storing a message rewrote the group row (the roster)")
	}
	g, err := s.Group(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if g.Unread != 1 || g.LastMsg != m0.ID {
		t.Fatalf("group unread %d last %s, want 1 and %s", g.Unread, g.LastMsg, m0.ID)
	}

	// A row of before: counters in the group row, no activity row.
	err = s.update(ctx, func(txn *badger.Txn) error {
		r, err := s.getGroupRec(txn, id)
		if err != nil {
			return err
		}
		r.Unread, r.LastMsg, r.LastAt = 5, m0.ID[:], nanos(m0.SentAt)
		if err := s.putRecord(txn, groupKey(id), r); err != nil {
			return err
		}
		return s.del(txn, groupActKey(id))
	})
	if err != nil {
		t.Fatal(err)
	}
	if gs, err := s.Groups(ctx); err != nil || len(gs) != 1 || gs[0].Unread != 5 {
		t.Fatalf("Groups with an old row = %+v, %v; want unread 5 from the group row", gs, err)
	}
	m1, err := receive(t, s, p.seal(t, "one", t0.Add(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if g, err = s.Group(ctx, id); err != nil || g.Unread != 6 || g.LastMsg != m1.ID {
		t.Fatalf("after a message on an old row: %+v, %v; want unread 6, last %s", g, err, m1.ID)
	}
	if err := s.MarkGroupRead(ctx, id); err != nil {
		t.Fatal(err)
	}
	if g, err = s.Group(ctx, id); err != nil || g.Unread != 0 || g.LastMsg != m1.ID {
		t.Fatalf("after MarkGroupRead: %+v, %v; want unread 0, last %s", g, err, m1.ID)
	}
}
