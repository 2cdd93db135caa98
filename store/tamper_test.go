package store

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// The tests here play an attacker who can write the badger database (but
// does not have the row-sealing key): they edit rows through the
// underlying *badger.DB.

func rawGet(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatalf("raw get %q: %v", key[:1], err)
	}
	return v
}

func rawSet(t *testing.T, s *Store, key, v []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, v) }); err != nil {
		t.Fatal(err)
	}
}

func rawDelete(t *testing.T, s *Store, key []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		t.Fatal(err)
	}
}

func flipped(v []byte) []byte {
	v = bytes.Clone(v)
	v[len(v)/2] ^= 0x01
	return v
}

// wantTampered checks that err is ErrTampered for the given row kind.
func wantTampered(t *testing.T, what string, err error, kind string) {
	t.Helper()
	var re *RowError
	if !errors.Is(err, ErrTampered) || !errors.As(err, &re) || re.Kind != kind {
		t.Fatalf("%s: %v, want ErrTampered on a %s row", what, err, kind)
	}
}

func TestTamperedFriend(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	a, b := randUser(), randUser()
	for _, f := range []Friend{{UserID: a, Name: "Alice", Status: FriendAccepted}, {UserID: b, Name: "Bob", Status: FriendPendingIn}} {
		if _, err := s.PutFriend(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	va, vb := rawGet(t, s, friendKey(a)), rawGet(t, s, friendKey(b))

	// (a) A flipped byte.
	rawSet(t, s, friendKey(a), flipped(va))
	f, err := s.Friend(ctx, a)
	wantTampered(t, "flipped friend", err, rowFriend)
	if f.Name != "" {
		t.Fatal("tampered friend served")
	}
	fs, err := s.Friends(ctx)
	wantTampered(t, "Friends with a flipped row", err, rowFriend)
	if fs != nil {
		t.Fatal("Friends served rows next to a tampered one")
	}
	rawSet(t, s, friendKey(a), va)
	if _, err := s.Friend(ctx, a); err != nil {
		t.Fatalf("restored friend: %v", err)
	}

	// (b) Alice's sealed value under Bob's key.
	rawSet(t, s, friendKey(b), va)
	f, err = s.Friend(ctx, b)
	wantTampered(t, "friend value moved to another key", err, rowFriend)
	if f.Name == "Alice" {
		t.Fatal("moved friend served")
	}
	rawSet(t, s, friendKey(b), vb)

	// A truncated value and an empty one.
	rawSet(t, s, friendKey(b), vb[:5])
	_, err = s.Friend(ctx, b)
	wantTampered(t, "truncated friend", err, rowFriend)
	rawSet(t, s, friendKey(b), nil)
	_, err = s.Friend(ctx, b)
	wantTampered(t, "empty friend", err, rowFriend)
}

func TestTamperedMessageMoved(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	x, y := randUser(), randUser()
	m, err := s.StoreReceived(ctx, incoming(x, "for x only"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreReceived(ctx, incoming(y, "y's own")); err != nil {
		t.Fatal(err)
	}
	sk := sortKey(m.SortTime(), m.ID)
	from := messageKey(DirectConversation(x), sk)
	to := messageKey(DirectConversation(y), sk)
	v := rawGet(t, s, from)

	// (c) The row moved to conversation y.
	rawSet(t, s, to, v)
	rawDelete(t, s, from)
	msgs, next, err := s.Messages(ctx, DirectConversation(y), "", 10)
	wantTampered(t, "moved message in a page", err, rowMessage)
	if msgs != nil || next != "" {
		t.Fatal("page served next to a moved message")
	}
	// The index, re-pointed at the new place, fails too.
	ik := messageIndexKey(m.ID)
	cy := DirectConversation(y)
	rawSet(t, s, ik, s.rows.seal(ik, append(cy[:], sk...)))
	if got, err := s.Message(ctx, m.ID); !errors.Is(err, ErrTampered) || got.Body != nil {
		t.Fatalf("Message through a re-pointed index: %v", err)
	}
	// An index value forged without the key.
	rawSet(t, s, ik, flipped(rawGet(t, s, ik)))
	_, err = s.Message(ctx, m.ID)
	wantTampered(t, "flipped index", err, rowMessageIndex)

	// A flipped body byte in place.
	rawDelete(t, s, to)
	rawSet(t, s, from, flipped(v))
	_, _, err = s.Messages(ctx, DirectConversation(x), "", 10)
	wantTampered(t, "flipped message", err, rowMessage)
}

func TestTamperedOtherRows(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	out := Message{ID: randMsgID(), Conversation: DirectConversation(friend), From: testKey.ID(), To: friend, Body: []byte("x")}
	if _, err := s.AddOutgoing(ctx, out, OutboxEntry{Recipient: friend, Envelope: []byte("sealed envelope")}); err != nil {
		t.Fatal(err)
	}
	pk, err := protocol.GeneratePrekey(testKey, c.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutPrekey(ctx, pk); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHostKey(ctx, []byte("host key")); err != nil {
		t.Fatal(err)
	}

	queued, err := s.OutboxEntry(ctx, out.ID)
	if err != nil {
		t.Fatal(err)
	}
	readQueue := func() error {
		_, err := s.OutboxQueue(ctx, friend, 0, 10)
		return err
	}

	check := func(name string, key []byte, kind string, read func() error) {
		t.Helper()
		v := rawGet(t, s, key)
		rawSet(t, s, key, flipped(v))
		wantTampered(t, name, read(), kind)
		rawSet(t, s, key, v)
		if err := read(); err != nil {
			t.Fatalf("%s after restore: %v", name, err)
		}
	}
	check("outbox", outboxKey(out.ID), rowOutbox, readQueue)
	check("outbox entry", outboxKey(out.ID), rowOutbox, func() error {
		_, err := s.OutboxEntry(ctx, out.ID)
		return err
	})
	check("outbox queue index", outboxQueueKey(friend, queued.Seq, out.ID), rowOutboxQueue, readQueue)
	check("conversation", conversationKey(out.Conversation), rowConversation, func() error {
		_, err := s.Conversations(ctx)
		return err
	})
	check("prekey", prekeyKey(pk.ID()), rowPrekey, func() error {
		_, err := s.Prekeys(ctx)
		return err
	})
	check("host key", hostKeyKey(), rowHostKey, func() error {
		_, err := s.HostKey(ctx)
		return err
	})

	// A forged queue entry (no valid seal).
	forged := outboxQueueKey(friend, queued.Seq+1, randMsgID())
	rawSet(t, s, forged, make([]byte, sealOverhead))
	wantTampered(t, "forged queue entry", readQueue(), rowOutboxQueue)
	rawDelete(t, s, forged)
	// Queue rows that open (written with the key: a bug, not an
	// attacker) but point to no entry, or to an entry with another Seq,
	// are corrupt, not served.
	for name, id := range map[string]MsgID{"queue row without an entry": randMsgID(), "queue row with the wrong Seq": out.ID} {
		k := outboxQueueKey(friend, queued.Seq+1, id)
		rawSet(t, s, k, s.rows.seal(k, nil))
		var re *RowError
		if err := readQueue(); !errors.Is(err, ErrCorrupt) || !errors.As(err, &re) || re.Kind != rowOutboxQueue {
			t.Fatalf("%s: %v, want ErrCorrupt on an %s row", name, err, rowOutboxQueue)
		}
		rawDelete(t, s, k)
	}
	if err := readQueue(); err != nil {
		t.Fatalf("queue after the forgeries are gone: %v", err)
	}

	// A host key sealed under the rows key instead of the secrets key.
	rawSet(t, s, hostKeyKey(), s.rows.seal(hostKeyKey(), []byte("host key")))
	_, err = s.HostKey(ctx)
	wantTampered(t, "host key under the wrong key", err, rowHostKey)

	// A flipped identity stops Open.
	rawSet(t, s, identityKey(), flipped(rawGet(t, s, identityKey())))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(s.Dir(), testPass, testOptions(c))
	wantTampered(t, "Open with a flipped identity", err, rowIdentity)
}
