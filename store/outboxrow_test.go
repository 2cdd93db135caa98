package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestOutboxRowLayouts writes entries in the binary layout and in the JSON
// one older versions wrote, and reads both back; damaged binary rows are
// ErrCorrupt, not an entry.
func TestOutboxRowLayouts(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	to := randUser()

	m, e := outgoingMsg(to, "binary")
	e.Session = true
	if _, err := s.AddOutgoing(ctx, m, e); err != nil {
		t.Fatal(err)
	}
	got, err := s.OutboxEntry(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.MsgID != m.ID || got.Recipient != to || !got.Session || got.Control || got.Seq == 0 || !bytes.Equal(got.Envelope, e.Envelope) {
		t.Fatalf("entry read back: %+v, wrote %+v", got, e)
	}
	plain := rawOutboxPlain(t, s, m.ID)
	if plain[0] != outboxRowV1 || len(plain) != outboxRowHeader+len(e.Envelope) {
		t.Fatalf("row of %d bytes starting %#x, want the binary layout of %d", len(plain), plain[0], outboxRowHeader+len(e.Envelope))
	}
	j, err := json.Marshal(&outboxRec{MsgID: m.ID[:], Recipient: to[:], Envelope: e.Envelope, Session: true, Seq: got.Seq})
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) >= len(j) {
		t.Fatalf("binary row %d bytes, JSON %d: no smaller", len(plain), len(j))
	}

	// The JSON an older version wrote for the same entry reads the same.
	putRawOutbox(t, s, m.ID, j)
	old, err := s.OutboxEntry(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if old.MsgID != got.MsgID || old.Recipient != got.Recipient || old.Session != got.Session || old.Control != got.Control ||
		old.Seq != got.Seq || !bytes.Equal(old.Envelope, got.Envelope) {
		t.Fatalf("JSON row read as %+v, binary as %+v", old, got)
	}

	bad := map[string][]byte{
		"unknown version": append([]byte{2}, plain[1:]...),
		"unknown flags":   append([]byte{outboxRowV1, 0x80}, plain[2:]...),
		"no envelope":     plain[:outboxRowHeader],
		"short":           plain[:outboxRowHeader-1],
		"empty":           {},
		"other message":   append(append(append([]byte(nil), plain[:10]...), make([]byte, MsgIDSize)...), plain[10+MsgIDSize:]...),
	}
	for name, row := range bad {
		putRawOutbox(t, s, m.ID, row)
		if e, err := s.OutboxEntry(ctx, m.ID); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: OutboxEntry = %+v, %v; want ErrCorrupt", name, e, err)
		}
	}
}

// rawOutboxPlain is id's outbox row as stored, opened.
func rawOutboxPlain(t *testing.T, s *Store, id MsgID) []byte {
	t.Helper()
	var plain []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		plain, err = s.getSealed(txn, s.rows, rowOutbox, outboxKey(id))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

// putRawOutbox seals plain as id's outbox row, bypassing the encoder.
func putRawOutbox(t *testing.T, s *Store, id MsgID, plain []byte) {
	t.Helper()
	key := outboxKey(id)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, s.rows.seal(key, plain)) }); err != nil {
		t.Fatal(err)
	}
}
