package protocol

import (
	"errors"
	"testing"
)

// A message that could not be opened is sealed again in a new session
// with the same msg_id: the receiver sees one message ID, whichever copy
// it opens.
func TestSessionResendKeepsMsgID(t *testing.T) {
	a, b := sessPair(t, "alice-2048", "bob-2048")
	b.mustAccept(t, a.start(t, b, KindText, []byte("hello"), sessT0), a, sessT0)
	lost, err := a.ps.Seal(KindText, []byte("lost"), sessT0, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := lost.MsgID

	// Bob lost his state: a new start carries the same message and ID.
	b.ps = NewPeerSessions(b.key.ID(), a.key.ID())
	if !a.ps.Reset(lost.Session, sessT0) {
		t.Fatal("Reset did not find the session")
	}
	env, err := a.ps.StartWithID(testSender(a.key), testRecipient(b.key, b.prekey), KindText, id, []byte("lost"), sessT0)
	if err != nil {
		t.Fatal(err)
	}
	if env.MsgID != id {
		t.Fatalf("start envelope msg_id %s, want %s", env.MsgID, id)
	}
	first := b.mustAccept(t, env.Marshal(), a, sessT0)
	if first.MsgID != id || string(first.Body) != "lost" {
		t.Fatalf("first message %s %q", first.MsgID, first.Body)
	}

	// And in a running session.
	next, err := a.ps.SealWithID(KindText, MsgID{7}, []byte("again"), sessT0, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := b.mustOpen(t, next.Marshal(), a, "again", sessT0)
	if m.MsgID != (MsgID{7}) {
		t.Fatalf("msg_id %s", m.MsgID)
	}

	// Zero means random, for every form.
	r1, _ := a.ps.SealWithID(KindText, MsgID{}, []byte("x"), sessT0, nil)
	r2, _ := a.ps.Seal(KindText, []byte("y"), sessT0, nil)
	if r1.MsgID.IsZero() || r2.MsgID.IsZero() || r1.MsgID == r2.MsgID {
		t.Fatalf("random msg_ids %s %s", r1.MsgID, r2.MsgID)
	}
	if _, err := SealWithID(testSender(a.key), testRecipient(b.key, nil), KindText, MsgID{}, []byte("x"), sessT0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SealWithID with a zero ID: %v", err)
	}
	e, err := SealWithID(testSender(a.key), testRecipient(b.key, nil), KindText, MsgID{9}, []byte("x"), sessT0)
	if err != nil || e.MsgID != (MsgID{9}) {
		t.Fatalf("SealWithID: %v", err)
	}
}
