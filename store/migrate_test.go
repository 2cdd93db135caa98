package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// prevOutboxRec is an outbox record as versions before this one wrote
// it: with the delivery schedule (attempts, next_attempt) and, before the
// queues, without a seq.
type prevOutboxRec struct {
	MsgID       []byte `json:"msg_id"`
	Recipient   []byte `json:"recipient"`
	Envelope    []byte `json:"envelope"`
	Attempts    int    `json:"attempts"`
	NextAttempt int64  `json:"next_attempt"`
	Control     bool   `json:"control,omitempty"`
	Session     bool   `json:"session,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
}

// prevEntry is an entry to write in the old format: its due time and
// attempts beside it.
type prevEntry struct {
	OutboxEntry
	Due      time.Time
	Attempts int
}

// oldDueKey is the key of the old due index: 'D' ‖ due time ‖ msg ID.
func oldDueKey(due time.Time, id MsgID) []byte {
	b := make([]byte, 1+timeSize+MsgIDSize)
	b[0] = kOutboxDue
	putTime(b[1:], due)
	copy(b[1+timeSize:], id[:])
	return b
}

// putPrevOutbox writes entries as older versions did: the record in the
// old format and a due-index row. The record keeps e.Seq; an entry with
// Seq 0 (from before the queues) gets no queue row, and one with a Seq
// must have its queue row already (written by AddOutgoing, say).
func putPrevOutbox(t *testing.T, s *Store, es ...prevEntry) {
	t.Helper()
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, e := range es {
			rec := &prevOutboxRec{MsgID: e.MsgID[:], Recipient: e.Recipient[:], Envelope: e.Envelope,
				Attempts: e.Attempts, NextAttempt: nanos(e.Due), Control: e.Control, Session: e.Session, Seq: e.Seq}
			if err := s.putRecord(txn, outboxKey(e.MsgID), rec); err != nil {
				return err
			}
			dk := oldDueKey(e.Due, e.MsgID)
			if err := txn.Set(dk, s.rows.seal(dk, nil)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// countKeys counts the keys under prefix.
func countKeys(t *testing.T, s *Store, prefix byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rawOutboxRec reads id's outbox record as it is on disk: an old one's
// JSON fields, or a binary one's seq and "layout".
func rawOutboxRec(t *testing.T, s *Store, id MsgID) map[string]any {
	t.Helper()
	plain := rawOutboxPlain(t, s, id)
	if len(plain) > 0 && plain[0] == outboxRowV1 {
		// Written by this version: the binary layout has no old fields.
		r, err := decodeOutboxRow(plain)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"layout": "binary", "seq": r.Seq}
	}
	var m map[string]any
	if err := json.Unmarshal(plain, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// reopenAt closes s and opens its directory again with the options it
// was opened with.
func reopenAt(t *testing.T, s *Store) *Store {
	t.Helper()
	dir, o := s.Dir(), s.opts
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, testPass, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOutboxSeqMigration opens a store holding entries without Seq: they
// get Seqs above the existing ones, in due order, once.
func TestOutboxSeqMigration(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	a, b := randUser(), randUser()
	m, e := outgoingMsg(a, "new format")
	if _, err := s.AddOutgoing(ctx, m, e); err != nil {
		t.Fatal(err)
	}
	newSeq := entrySeq(t, s, m.ID)
	t0 := c.Now()
	ctl := func(to protocol.ID, env string, due time.Duration) prevEntry {
		return prevEntry{OutboxEntry: OutboxEntry{MsgID: randMsgID(), Recipient: to, Envelope: []byte(env), Control: true}, Due: t0.Add(due)}
	}
	old := []prevEntry{
		ctl(a, "old 3", 3*time.Second),
		ctl(a, "old 1", 1*time.Second),
		ctl(b, "old 2", 2*time.Second),
		ctl(a, "old 2 too", 2*time.Second),
	}
	putPrevOutbox(t, s, old...)
	if e, err := s.OutboxEntry(ctx, old[0].MsgID); err != nil || e.Seq != 0 {
		t.Fatalf("old entry before reopen: %+v, %v", e, err)
	}

	s = reopen(t, s, c)
	// Due order: old[1] (1s), then old[2] and old[3] (2s, by message ID),
	// then old[0] (3s).
	mid := []prevEntry{old[2], old[3]}
	if bytes.Compare(mid[0].MsgID[:], mid[1].MsgID[:]) > 0 {
		mid[0], mid[1] = mid[1], mid[0]
	}
	order := []prevEntry{old[1], mid[0], mid[1], old[0]}
	last := newSeq
	seqs := map[MsgID]uint64{}
	for _, o := range order {
		seq := entrySeq(t, s, o.MsgID)
		if seq <= last {
			t.Fatalf("migrated entries out of due order, or not above the existing ones: Seq %d after %d", seq, last)
		}
		last, seqs[o.MsgID] = seq, seq
	}
	want := []MsgID{m.ID}
	for _, o := range order {
		if o.Recipient == a {
			want = append(want, o.MsgID)
		}
	}
	if ids, _ := queueIDs(t, s, a, 0, 100); !slices.Equal(ids, want) {
		t.Fatalf("a's queue after migration: %v, want %v", ids, want)
	}
	if ids, _ := queueIDs(t, s, b, 0, 100); !slices.Equal(ids, []MsgID{old[2].MsgID}) {
		t.Fatalf("b's queue after migration: %v", ids)
	}
	if n := countKeys(t, s, kOutboxDue); n != 0 {
		t.Fatalf("%d due-index rows after migration, want none", n)
	}
	// The migrated records are in the new format.
	if rec := rawOutboxRec(t, s, old[0].MsgID); rec["next_attempt"] != nil || rec["attempts"] != nil || rec["seq"] == nil {
		t.Fatalf("migrated record %v", rec)
	}

	// The migration is done once: another reopen keeps the Seqs.
	s = reopen(t, s, c)
	for id, seq := range seqs {
		if got := entrySeq(t, s, id); got != seq {
			t.Fatalf("entry %s: Seq %d after the second reopen, was %d", id, got, seq)
		}
	}
	m2, e2 := outgoingMsg(a, "after migration")
	if _, err := s.AddOutgoing(ctx, m2, e2); err != nil {
		t.Fatal(err)
	}
	if seq := entrySeq(t, s, m2.ID); seq <= last {
		t.Fatalf("new entry has Seq %d, not above the migrated %d", seq, last)
	}
	if _, errs, err := s.FinishOutboxes(ctx, []Settle{{MsgID: old[0].MsgID, Status: StatusSent}}); err != nil || errs[0] != nil {
		t.Fatalf("finishing a migrated entry: %v, %v", errs, err)
	}
}

// TestOutboxSeqMigrationLarge migrates more old entries than one badger
// transaction of a small memtable holds (Open once failed on them with
// ErrTxnTooBig, every time).
func TestOutboxSeqMigrationLarge(t *testing.T) {
	t.Parallel()
	s := newSmallStore(t)
	to := randUser()
	env := bytes.Repeat([]byte("e"), 1024)
	const n, chunk = 400, 40
	for i := 0; i < n; i += chunk {
		var es []prevEntry
		for range chunk {
			es = append(es, prevEntry{OutboxEntry: OutboxEntry{MsgID: randMsgID(), Recipient: to, Envelope: env, Control: true}, Due: time.Now()})
		}
		putPrevOutbox(t, s, es...)
	}
	s = reopenAt(t, s)
	if ids, _ := queueIDs(t, s, to, 0, 2*n); len(ids) != n {
		t.Fatalf("%d entries queued after migration, want %d", len(ids), n)
	}
	if k := countKeys(t, s, kOutboxDue); k != 0 {
		t.Fatalf("%d due-index rows after migration, want none", k)
	}
}

// TestOutboxDueIndexDropped opens a store written by the version before
// this one: entries with Seqs and queue rows, but also attempts,
// next_attempt and a due-index row each. Open deletes every due-index
// row, however many (here more than one round of dropOutboxDue and more
// than one transaction of a small memtable), damaged or pointing nowhere,
// and the entries keep their places and still read.
func TestOutboxDueIndexDropped(t *testing.T) {
	t.Parallel()
	s := newSmallStore(t)
	ctx := t.Context()
	a := randUser()
	var prev []prevEntry
	for i := range 4 {
		m, e := outgoingMsg(a, fmt.Sprint("prev ", i))
		if _, err := s.AddOutgoing(ctx, m, e); err != nil {
			t.Fatal(err)
		}
		e, err := s.OutboxEntry(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Due times out of queue order, as backoffs left them.
		prev = append(prev, prevEntry{OutboxEntry: e, Due: time.Now().Add(time.Duration(4-i) * time.Minute), Attempts: i})
	}
	ctl := OutboxEntry{MsgID: randMsgID(), Recipient: a, Envelope: []byte("ctl"), Session: true}
	if err := s.AddControl(ctx, ctl); err != nil {
		t.Fatal(err)
	}
	ctl, err := s.OutboxEntry(ctx, ctl.MsgID)
	if err != nil {
		t.Fatal(err)
	}
	prev = append(prev, prevEntry{OutboxEntry: ctl, Due: time.Now(), Attempts: 7})
	putPrevOutbox(t, s, prev...)
	wantIDs, wantEs := queueIDs(t, s, a, 0, 100)
	if len(wantIDs) != len(prev) {
		t.Fatalf("%d entries queued in the old format, want %d", len(wantIDs), len(prev))
	}

	// Leftover rows: many pointing to no entry, one that is no valid seal.
	const orphans = 2*dropOutboxDueRound + 100
	for i := 0; i < orphans; i += 500 {
		err := s.db.Update(func(txn *badger.Txn) error {
			for range min(500, orphans-i) {
				k := oldDueKey(time.Now(), randMsgID())
				if err := txn.Set(k, s.rows.seal(k, nil)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	rawSet(t, s, oldDueKey(time.Now(), randMsgID()), []byte("not a sealed value"))
	if n := countKeys(t, s, kOutboxDue); n != len(prev)+orphans+1 {
		t.Fatalf("%d due-index rows written, want %d", n, len(prev)+orphans+1)
	}

	s = reopenAt(t, s)
	if n := countKeys(t, s, kOutboxDue); n != 0 {
		t.Fatalf("%d due-index rows after Open, want none", n)
	}
	ids, es := queueIDs(t, s, a, 0, 100)
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("queue after Open: %v, want %v", ids, wantIDs)
	}
	for i, e := range es {
		w := wantEs[i]
		if e.Seq != w.Seq || e.Control != w.Control || e.Session != w.Session || !bytes.Equal(e.Envelope, w.Envelope) {
			t.Fatalf("entry %d after Open: %+v, want %+v", i, e, w)
		}
	}
	// Records keep the old fields until they are written again, which
	// drops them.
	if rec := rawOutboxRec(t, s, ids[1]); rec["attempts"] == nil {
		t.Fatalf("untouched record %v: the old fields are gone", rec)
	}
	if _, err := s.ResealOutbox(ctx, ids[1], []byte("sealed again"), false, nil); err != nil {
		t.Fatal(err)
	}
	if rec := rawOutboxRec(t, s, ids[1]); rec["attempts"] != nil || rec["next_attempt"] != nil {
		t.Fatalf("record written again: %v, want no attempts or next_attempt", rec)
	}
	if n := countKeys(t, s, kOutboxDue); n != 0 {
		t.Fatalf("ResealOutbox wrote %d due-index rows", n)
	}
	// New entries go after the old ones, and the store opens again.
	m, e := outgoingMsg(a, "new")
	if _, err := s.AddOutgoing(ctx, m, e); err != nil {
		t.Fatal(err)
	}
	s = reopenAt(t, s)
	if ids, _ := queueIDs(t, s, a, 0, 100); !slices.Equal(ids, append(wantIDs, m.ID)) {
		t.Fatalf("queue after the second Open: %v", ids)
	}
	if _, errs, err := s.FinishOutboxes(ctx, []Settle{{MsgID: ids[0], Status: StatusDelivered}, {MsgID: ctl.MsgID, Status: StatusDelivered}}); err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("finishing old entries: %v, %v", errs, err)
	}
}
