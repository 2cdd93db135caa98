package store

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestControlEntries(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()

	// A message of its own, to show that control entries never touch one.
	msg := Message{ID: randMsgID(), Conversation: DirectConversation(friend), From: testKey.ID(), To: friend, Kind: "text", Body: []byte("m")}
	if _, err := s.AddOutgoing(ctx, msg, OutboxEntry{Recipient: friend, Envelope: []byte("message envelope")}); err != nil {
		t.Fatal(err)
	}
	ctl := OutboxEntry{MsgID: randMsgID(), Recipient: friend, Envelope: []byte("receipt envelope")}
	if err := s.AddControl(ctx, ctl); err != nil {
		t.Fatal(err)
	}
	got, err := s.OutboxEntry(ctx, ctl.MsgID)
	if err != nil || !got.Control || got.Recipient != friend || string(got.Envelope) != "receipt envelope" ||
		got.Seq <= entrySeq(t, s, msg.ID) {
		t.Fatalf("control entry = %+v, %v; want it queued after the message", got, err)
	}
	if ids, _ := queueIDs(t, s, friend, 0, 10); !slices.Equal(ids, []MsgID{msg.ID, ctl.MsgID}) {
		t.Fatalf("queue = %v; want the message, then the control entry", ids)
	}
	if _, err := s.Message(ctx, ctl.MsgID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a control entry has a message row: %v", err)
	}

	// Same ID again, as a control entry or as the ID of a message: refused.
	if err := s.AddControl(ctx, ctl); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("AddControl twice: %v, want ErrDuplicate", err)
	}
	if err := s.AddControl(ctx, OutboxEntry{MsgID: msg.ID, Recipient: friend, Envelope: []byte("x")}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("AddControl with a message's ID: %v, want ErrDuplicate", err)
	}
	for name, e := range map[string]OutboxEntry{
		"zero ID":      {Recipient: friend, Envelope: []byte("x")},
		"no recipient": {MsgID: randMsgID(), Envelope: []byte("x")},
		"no envelope":  {MsgID: randMsgID(), Recipient: friend},
	} {
		if err := s.AddControl(ctx, e); !errors.Is(err, ErrInvalid) {
			t.Fatalf("AddControl %s: %v, want ErrInvalid", name, err)
		}
	}

	// Sealing it again keeps it a control entry, in its place.
	if e, err := s.ResealOutbox(ctx, ctl.MsgID, []byte("receipt sealed again"), true, nil); err != nil ||
		!e.Control || e.Seq != got.Seq {
		t.Fatalf("ResealOutbox = %+v, %v", e, err)
	}
	if e, err := s.OutboxEntry(ctx, ctl.MsgID); err != nil || !e.Control || e.Seq != got.Seq || string(e.Envelope) != "receipt sealed again" {
		t.Fatalf("after reseal = %+v, %v", e, err)
	}

	// Finishing it removes the entry and returns the zero Message.
	m, err := finishOne(t, s, Settle{MsgID: ctl.MsgID, Status: StatusDelivered, Path: PathDirect})
	if err != nil {
		t.Fatalf("finishing a control entry: %v", err)
	}
	if !m.ID.IsZero() || m.Status != "" {
		t.Fatalf("finishing a control entry returned %+v, want the zero Message", m)
	}
	if _, err := s.OutboxEntry(ctx, ctl.MsgID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("control entry after finishing it: %v", err)
	}
	if _, err := finishOne(t, s, Settle{MsgID: ctl.MsgID, Status: StatusDelivered, Path: PathDirect}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finishing it again: %v, want ErrNotFound", err)
	}
	if ids, _ := queueIDs(t, s, friend, 0, 10); !slices.Equal(ids, []MsgID{msg.ID}) {
		t.Fatalf("queue after finishing the control entry: %v; want only the message", ids)
	}
	stored, err := s.Message(ctx, msg.ID)
	if err != nil || stored.Status != StatusPending || stored.Path != "" {
		t.Fatalf("the message changed: %+v, %v", stored, err)
	}
	conv, err := s.Conversation(ctx, DirectConversation(friend))
	if err != nil || conv.LastMessage != msg.ID {
		t.Fatalf("conversation = %+v, %v", conv, err)
	}

	// A failed control entry is removed the same way.
	ctl2 := OutboxEntry{MsgID: randMsgID(), Recipient: friend, Envelope: []byte("accept envelope")}
	if err := s.AddControl(ctx, ctl2); err != nil {
		t.Fatal(err)
	}
	if _, err := finishOne(t, s, Settle{MsgID: ctl2.MsgID, Status: StatusFailed, Error: "refused"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OutboxEntry(ctx, ctl2.MsgID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed control entry stays: %v", err)
	}

	// Control entries survive a restart.
	ctl3 := OutboxEntry{MsgID: randMsgID(), Recipient: friend, Envelope: []byte("request envelope")}
	if err := s.AddControl(ctx, ctl3); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, c)
	if e, err := s.OutboxEntry(ctx, ctl3.MsgID); err != nil || !e.Control || string(e.Envelope) != "request envelope" {
		t.Fatalf("control entry after reopen = %+v, %v", e, err)
	}
}

func TestProfile(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	if _, err := s.Profile(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Profile before PutProfile: %v, want ErrNotFound", err)
	}
	p, err := s.PutProfile(ctx, Profile{Name: "Zoë", UpdatedAt: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "Zoë" || !p.UpdatedAt.Equal(c.Now()) {
		t.Fatalf("PutProfile = %+v; want the store's clock in UpdatedAt", p)
	}
	got, err := s.Profile(ctx)
	if err != nil || got.Name != "Zoë" || !got.UpdatedAt.Equal(p.UpdatedAt) {
		t.Fatalf("Profile = %+v, %v; want %+v", got, err, p)
	}
	c.Add(time.Hour)
	if _, err := s.PutProfile(ctx, Profile{Name: "Zoe"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutProfile(ctx, Profile{Name: "bad \xff"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutProfile with invalid UTF-8: %v, want ErrInvalid", err)
	}
	s = reopen(t, s, c)
	got, err = s.Profile(ctx)
	if err != nil || got.Name != "Zoe" || !got.UpdatedAt.Equal(c.Now()) {
		t.Fatalf("Profile after reopen = %+v, %v", got, err)
	}
}

func TestCheckPassphraseWhileOpen(t *testing.T) {
	t.Parallel()
	s, dir, _ := newTestStore(t)
	if err := CheckPassphrase(dir, testPass); err != nil {
		t.Fatalf("right passphrase while open: %v", err)
	}
	if err := CheckPassphrase(dir, []byte("wrong horse battery staple")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase while open: %v, want ErrBadPassphrase", err)
	}
	if err := CheckPassphrase(dir, nil); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("empty passphrase: %v, want ErrBadPassphrase", err)
	}
	// The open store is unaffected.
	if _, err := s.PutProfile(t.Context(), Profile{Name: "still open"}); err != nil {
		t.Fatalf("store after CheckPassphrase: %v", err)
	}
	if err := CheckPassphrase(t.TempDir(), testPass); !errors.Is(err, ErrNoStore) {
		t.Fatalf("CheckPassphrase of an empty directory: %v, want ErrNoStore", err)
	}
}
