package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// wantSessions checks peer's stored session state; want nil means none
// (ErrNotFound).
func wantSessions(t *testing.T, s *Store, peer protocol.ID, want []byte, what string) {
	t.Helper()
	got, err := s.Sessions(t.Context(), peer)
	if want == nil {
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: Sessions = %q, %v; want ErrNotFound", what, got, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: Sessions: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: Sessions = %q, want %q", what, got, want)
	}
}

// sessionWriter is one of the *With methods, with what it leaves behind.
type sessionWriter struct {
	name string
	// write stores a new item with message ID id for peer, with u.
	write func(ctx context.Context, s *Store, peer protocol.ID, id MsgID, u *SessionUpdate) error
	// stored reports whether write's item for id is in the store.
	stored func(t *testing.T, s *Store, id MsgID) bool
}

func messageStored(t *testing.T, s *Store, id MsgID) bool {
	t.Helper()
	_, err := s.Message(t.Context(), id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func outboxStored(t *testing.T, s *Store, id MsgID) bool {
	t.Helper()
	_, err := s.OutboxEntry(t.Context(), id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func seenStored(t *testing.T, s *Store, id MsgID) bool {
	t.Helper()
	ok, err := s.Seen(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

var sessionWriters = []sessionWriter{
	{
		name: "StoreReceivedWith",
		write: func(ctx context.Context, s *Store, peer protocol.ID, id MsgID, u *SessionUpdate) error {
			m := incoming(peer, "hello")
			m.ID = id
			_, err := s.StoreReceivedWith(ctx, m, u)
			return err
		},
		stored: func(t *testing.T, s *Store, id MsgID) bool {
			t.Helper()
			m, s1 := messageStored(t, s, id), seenStored(t, s, id)
			if m != s1 {
				t.Fatalf("message stored %v but seen %v", m, s1)
			}
			return m
		},
	},
	{
		name: "AddOutgoingWith",
		write: func(ctx context.Context, s *Store, peer protocol.ID, id MsgID, u *SessionUpdate) error {
			m := Message{ID: id, Conversation: DirectConversation(peer), From: s.UserID(), To: peer, Kind: "text", Body: []byte("hi")}
			_, err := s.AddOutgoingWith(ctx, m, OutboxEntry{Recipient: peer, Envelope: []byte("session message"), Session: true}, u)
			return err
		},
		stored: func(t *testing.T, s *Store, id MsgID) bool {
			t.Helper()
			m, o := messageStored(t, s, id), outboxStored(t, s, id)
			if m != o {
				t.Fatalf("message stored %v but outbox entry %v", m, o)
			}
			return m
		},
	},
	{
		name: "AddControlWith",
		write: func(ctx context.Context, s *Store, peer protocol.ID, id MsgID, u *SessionUpdate) error {
			return s.AddControlWith(ctx, OutboxEntry{MsgID: id, Recipient: peer, Envelope: []byte("receipt"), Session: true}, u)
		},
		stored: outboxStored,
	},
	{
		name: "MarkSeenWith",
		write: func(ctx context.Context, s *Store, _ protocol.ID, id MsgID, u *SessionUpdate) error {
			return s.MarkSeenWith(ctx, id, u)
		},
		stored: seenStored,
	},
}

func TestSessionsWith(t *testing.T) {
	t.Parallel()
	for _, w := range sessionWriters {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			s, _, c := newTestStore(t)
			peer, bystander := randUser(), randUser()
			state1, state2 := []byte("state one "+w.name), []byte("state two "+w.name)
			wantSessions(t, s, peer, nil, "before any write")
			if err := s.PutSessions(t.Context(), SessionUpdate{Peer: bystander, State: []byte("bystander")}); err != nil {
				t.Fatal(err)
			}

			// The state is written with the item.
			id1 := randMsgID()
			if err := w.write(t.Context(), s, peer, id1, &SessionUpdate{Peer: peer, State: state1}); err != nil {
				t.Fatalf("write with state: %v", err)
			}
			if !w.stored(t, s, id1) {
				t.Fatal("item not stored")
			}
			wantSessions(t, s, peer, state1, "after the first write")

			// A duplicate writes no state: neither a new one nor a delete.
			for _, u := range []*SessionUpdate{{Peer: peer, State: state2}, {Peer: peer}, {Peer: bystander, State: state2}} {
				if err := w.write(t.Context(), s, peer, id1, u); !errors.Is(err, ErrDuplicate) {
					t.Fatalf("duplicate write: %v, want ErrDuplicate", err)
				}
				wantSessions(t, s, peer, state1, "after a duplicate")
				wantSessions(t, s, bystander, []byte("bystander"), "bystander after a duplicate")
			}

			// A nil update changes no state.
			id2 := randMsgID()
			if err := w.write(t.Context(), s, peer, id2, nil); err != nil {
				t.Fatalf("write without state: %v", err)
			}
			if !w.stored(t, s, id2) {
				t.Fatal("item without state not stored")
			}
			wantSessions(t, s, peer, state1, "after a nil update")

			// A new state replaces the old one.
			id3 := randMsgID()
			if err := w.write(t.Context(), s, peer, id3, &SessionUpdate{Peer: peer, State: state2}); err != nil {
				t.Fatal(err)
			}
			wantSessions(t, s, peer, state2, "after the second write")

			// An update without a peer fails, and the item is not stored
			// either: one transaction.
			id4 := randMsgID()
			if err := w.write(t.Context(), s, peer, id4, &SessionUpdate{State: state1}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("write with a zero peer: %v, want ErrInvalid", err)
			}
			if w.stored(t, s, id4) {
				t.Fatal("item stored although its session update was refused")
			}
			wantSessions(t, s, peer, state2, "after a refused update")
			// ... and the ID is still free.
			if err := w.write(t.Context(), s, peer, id4, nil); err != nil {
				t.Fatalf("write of the refused ID: %v", err)
			}

			// A nil State deletes.
			id5 := randMsgID()
			if err := w.write(t.Context(), s, peer, id5, &SessionUpdate{Peer: peer}); err != nil {
				t.Fatalf("write with a delete: %v", err)
			}
			if !w.stored(t, s, id5) {
				t.Fatal("item with a delete not stored")
			}
			wantSessions(t, s, peer, nil, "after the delete")
			wantSessions(t, s, bystander, []byte("bystander"), "bystander after the delete")

			// A state written with an item survives a reopen.
			if err := w.write(t.Context(), s, peer, randMsgID(), &SessionUpdate{Peer: peer, State: state1}); err != nil {
				t.Fatal(err)
			}
			s = reopen(t, s, c)
			wantSessions(t, s, peer, state1, "after reopen")
			if !w.stored(t, s, id1) || !w.stored(t, s, id3) || !w.stored(t, s, id5) || !w.stored(t, s, id4) {
				t.Fatal("items lost across reopen")
			}
		})
	}
}

// TestSessionsWithCrossDuplicates: the duplicates a *With meets through
// another writer (a seen ID, a message ID) leave the state alone too.
func TestSessionsWithCrossDuplicates(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	peer := randUser()
	old := []byte("old state")
	if err := s.PutSessions(ctx, SessionUpdate{Peer: peer, State: old}); err != nil {
		t.Fatal(err)
	}
	newer := &SessionUpdate{Peer: peer, State: []byte("new state")}

	// StoreReceivedWith of an ID only marked seen.
	seen := randMsgID()
	if err := s.MarkSeen(ctx, seen); err != nil {
		t.Fatal(err)
	}
	m := incoming(peer, "replayed")
	m.ID = seen
	if _, err := s.StoreReceivedWith(ctx, m, newer); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("StoreReceivedWith of a seen ID: %v, want ErrDuplicate", err)
	}
	wantSessions(t, s, peer, old, "after a seen duplicate")

	// AddOutgoingWith and AddControlWith of a received message's ID.
	in, err := s.StoreReceived(ctx, incoming(peer, "in"))
	if err != nil {
		t.Fatal(err)
	}
	out := Message{ID: in.ID, Conversation: DirectConversation(peer), From: s.UserID(), To: peer, Body: []byte("x")}
	if _, err := s.AddOutgoingWith(ctx, out, OutboxEntry{Recipient: peer, Envelope: []byte("e")}, newer); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("AddOutgoingWith of a stored ID: %v, want ErrDuplicate", err)
	}
	if err := s.AddControlWith(ctx, OutboxEntry{MsgID: in.ID, Recipient: peer, Envelope: []byte("e")}, newer); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("AddControlWith of a stored ID: %v, want ErrDuplicate", err)
	}
	wantSessions(t, s, peer, old, "after outgoing duplicates")
}

func TestPutSessions(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	a, b := randUser(), randUser()

	if _, err := s.Sessions(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Sessions of an unknown peer: %v, want ErrNotFound", err)
	}
	if err := s.PutSessions(ctx, SessionUpdate{State: []byte("x")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutSessions with a zero peer: %v, want ErrInvalid", err)
	}
	if err := s.PutSessions(ctx, SessionUpdate{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutSessions of a zero update: %v, want ErrInvalid", err)
	}
	// Deleting what is not there is not an error.
	if err := s.PutSessions(ctx, SessionUpdate{Peer: a}); err != nil {
		t.Fatalf("delete of absent sessions: %v", err)
	}
	wantSessions(t, s, a, nil, "after deleting nothing")
	// An empty (not nil) state is a state, not a delete.
	if err := s.PutSessions(ctx, SessionUpdate{Peer: a, State: []byte{}}); err != nil {
		t.Fatal(err)
	}
	wantSessions(t, s, a, []byte{}, "empty state")

	sa, sb := randBytes(300), randBytes(5000)
	for _, u := range []SessionUpdate{{Peer: a, State: []byte("first")}, {Peer: a, State: sa}, {Peer: b, State: sb}} {
		if err := s.PutSessions(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	wantSessions(t, s, a, sa, "after overwrite")
	wantSessions(t, s, b, sb, "other peer")

	// The caller owns both the slice it wrote and the one it read.
	got, err := s.Sessions(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	clear(got)
	wantSessions(t, s, a, sa, "after clearing a returned slice")

	s = reopen(t, s, c)
	wantSessions(t, s, a, sa, "after reopen")
	wantSessions(t, s, b, sb, "other peer after reopen")

	if err := s.PutSessions(ctx, SessionUpdate{Peer: a}); err != nil {
		t.Fatal(err)
	}
	wantSessions(t, s, a, nil, "after delete")
	wantSessions(t, s, b, sb, "other peer after delete")
	s = reopen(t, s, c)
	wantSessions(t, s, a, nil, "after delete and reopen")

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sessions(ctx, b); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sessions after Close: %v, want ErrClosed", err)
	}
	if err := s.PutSessions(ctx, SessionUpdate{Peer: b, State: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutSessions after Close: %v, want ErrClosed", err)
	}
}

// TestSessionsSealed: the state row is sealed with the secrets key and
// bound to its peer, and its plaintext is in no file.
func TestSessionsSealed(t *testing.T) {
	t.Parallel()
	s, dir, _ := newTestStore(t)
	ctx := t.Context()
	a, b := randUser(), randUser()
	marker := randBytes(24)
	markerHex := hex.EncodeToString(marker)
	stateA := append([]byte("ratchet-"+markerHex), marker...)
	stateB := append([]byte("received-"+markerHex), marker...)
	if err := s.PutSessions(ctx, SessionUpdate{Peer: a, State: stateA}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreReceivedWith(ctx, incoming(b, "hi"), &SessionUpdate{Peer: b, State: stateB}); err != nil {
		t.Fatal(err)
	}

	ka, kb := sessionsKey(a), sessionsKey(b)
	va, vb := rawGet(t, s, ka), rawGet(t, s, kb)
	for _, v := range [][]byte{va, vb} {
		if bytes.Contains(v, marker) || bytes.Contains(v, []byte(markerHex)) {
			t.Fatal("raw session row holds the state in clear")
		}
	}
	if plain, err := s.secrets.open(rowSessions, ka, va); err != nil || len(plain) < 8 || !bytes.Equal(plain[8:], stateA) {
		t.Fatalf("row does not open with the secrets key: %v", err)
	}
	if _, err := s.rows.open(rowSessions, ka, va); err == nil {
		t.Fatal("session row opens with the rows key")
	}

	// Flipped, moved to another peer, sealed with the rows key.
	rawSet(t, s, ka, flipped(va))
	_, err := s.Sessions(ctx, a)
	wantTampered(t, "flipped sessions", err, rowSessions)
	rawSet(t, s, kb, va)
	got, err := s.Sessions(ctx, b)
	wantTampered(t, "sessions moved to another peer", err, rowSessions)
	if got != nil {
		t.Fatal("moved sessions served")
	}
	rawSet(t, s, ka, s.rows.seal(ka, stateA))
	_, err = s.Sessions(ctx, a)
	wantTampered(t, "sessions sealed with the rows key", err, rowSessions)
	rawSet(t, s, ka, va)
	rawSet(t, s, kb, vb)
	wantSessions(t, s, a, stateA, "restored")
	wantSessions(t, s, b, stateB, "restored")

	secrets := map[string][]byte{
		"state marker":     marker,
		"state marker hex": []byte(markerHex),
	}
	scanFiles(t, dir, secrets)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	scanFiles(t, dir, secrets)
}

// TestOutboxSessionFlag: OutboxEntry.Session is kept through the outbox
// calls and a reopen, and ResealOutbox sets it (keeping Control).
func TestOutboxSessionFlag(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	peer := randUser()
	conv := DirectConversation(peer)
	type want struct{ session, control bool }
	wants := map[MsgID]want{}

	for i, session := range []bool{true, false} {
		m := Message{ID: randMsgID(), Conversation: conv, From: s.UserID(), To: peer, Body: []byte("m")}
		e := OutboxEntry{Recipient: peer, Envelope: []byte{byte(i)}, Session: session}
		if _, err := s.AddOutgoingWith(ctx, m, e, &SessionUpdate{Peer: peer, State: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
		wants[m.ID] = want{session, false}
		ctl := OutboxEntry{MsgID: randMsgID(), Recipient: peer, Envelope: []byte{byte(i)}, Session: session}
		if err := s.AddControlWith(ctx, ctl, nil); err != nil {
			t.Fatal(err)
		}
		wants[ctl.MsgID] = want{session, true}
	}
	// The plain variants leave Session as given too.
	m := Message{ID: randMsgID(), Conversation: conv, From: s.UserID(), To: peer, Body: []byte("m")}
	if _, err := s.AddOutgoing(ctx, m, OutboxEntry{Recipient: peer, Envelope: []byte("e"), Session: true}); err != nil {
		t.Fatal(err)
	}
	wants[m.ID] = want{true, false}

	check := func(what string) {
		t.Helper()
		_, queued := queueIDs(t, s, peer, 0, 100)
		if len(queued) != len(wants) {
			t.Fatalf("%s: %d queued entries, want %d", what, len(queued), len(wants))
		}
		for _, e := range queued {
			w, ok := wants[e.MsgID]
			if !ok || e.Session != w.session || e.Control != w.control {
				t.Fatalf("%s: OutboxQueue entry %s: Session %v Control %v, want %+v", what, e.MsgID, e.Session, e.Control, w)
			}
			one, err := s.OutboxEntry(ctx, e.MsgID)
			if err != nil {
				t.Fatal(err)
			}
			if one.Session != w.session || one.Control != w.control {
				t.Fatalf("%s: OutboxEntry %s: Session %v Control %v, want %+v", what, e.MsgID, one.Session, one.Control, w)
			}
		}
	}
	check("as added")
	for id, w := range wants {
		w.session = !w.session
		if _, err := s.ResealOutbox(ctx, id, []byte("sealed again"), w.session, nil); err != nil {
			t.Fatal(err)
		}
		wants[id] = w
	}
	check("after ResealOutbox")
	s = reopen(t, s, c)
	check("after reopen")
}

// Versioned updates: a state sealed earlier but committed later never
// overwrites a newer one.
func TestSessionsVersionOrder(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	a := randUser()
	put := func(state string, v uint64) {
		t.Helper()
		if err := s.PutSessions(ctx, SessionUpdate{Peer: a, State: []byte(state), Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	put("v2", 2)
	put("v1", 1) // late: skipped
	got, ver, err := s.SessionsVersion(ctx, a)
	if err != nil || string(got) != "v2" || ver != 2 {
		t.Fatalf("after a late older write: %q v%d, %v", got, ver, err)
	}
	put("v3", 3)
	if _, err := s.StoreReceivedWith(ctx, incoming(a, "hi"), &SessionUpdate{Peer: a, State: []byte("v2 again"), Version: 2}); err != nil {
		t.Fatal(err) // the message is stored even when its state is older
	}
	got, ver, _ = s.SessionsVersion(ctx, a)
	if string(got) != "v3" || ver != 3 {
		t.Fatalf("after an older state with a message: %q v%d", got, ver)
	}
	put("unconditional", 0)
	got, ver, _ = s.SessionsVersion(ctx, a)
	if string(got) != "unconditional" || ver != 0 {
		t.Fatalf("version 0 writes unconditionally: %q v%d", got, ver)
	}
}

// A batch of received messages is stored with the final session state in
// one transaction, keeps its order in the conversation, and on a
// duplicate stores the rest (and the state).
func TestStoreReceivedBatchWith(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	a := randUser()
	first := incoming(a, "m0")
	if _, err := s.StoreReceived(ctx, first); err != nil {
		t.Fatal(err)
	}
	var batch []Message
	for i := range 40 {
		batch = append(batch, incoming(a, fmt.Sprintf("m%02d", i+1)))
	}
	batch[7] = first // a repeat inside the batch
	batch[7].ReceivedAt = time.Time{}
	results, err := s.StoreReceivedBatchWith(ctx, batch, &SessionUpdate{Peer: a, State: []byte("after the batch"), Version: 9})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if i == 7 && !errors.Is(r, ErrDuplicate) || i != 7 && r != nil {
			t.Fatalf("result %d = %v", i, r)
		}
	}
	got, ver, err := s.SessionsVersion(ctx, a)
	if err != nil || string(got) != "after the batch" || ver != 9 {
		t.Fatalf("state after the batch: %q v%d, %v", got, ver, err)
	}
	ms, _, err := s.Messages(ctx, DirectConversation(a), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 40 {
		t.Fatalf("%d messages, want 40", len(ms))
	}
	// Newest first: m40 ... m01 (m08 was the repeat), in the batch's
	// order; m0, stored alone, may share the batch's clock reading here,
	// so its place is not checked.
	var batchBodies []string
	for _, m := range ms {
		if string(m.Body) != "m0" {
			batchBodies = append(batchBodies, string(m.Body))
		}
	}
	if len(batchBodies) != 39 {
		t.Fatalf("%d batch messages stored, want 39", len(batchBodies))
	}
	for i := 1; i < len(batchBodies); i++ {
		if batchBodies[i-1] < batchBodies[i] {
			t.Fatalf("out of order: %q before %q", batchBodies[i-1], batchBodies[i])
		}
	}
}
