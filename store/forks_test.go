package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestKeyForkEvidence(t *testing.T) {
	ctx := context.Background()
	s, _, c := newTestStore(t)
	alice, bob := randUser(), randUser()
	first, second := []byte("record one at seq 7"), []byte("record two at seq 7")
	f := KeyFork{UserID: alice, Kind: ForkRecord, Seq: 7, Source: "directory", First: first, Second: second}
	added, err := s.PutKeyFork(ctx, f)
	if err != nil || !added {
		t.Fatalf("PutKeyFork = %v, %v; want added", added, err)
	}
	// The same pair, in either order, is kept once.
	for _, again := range []KeyFork{f, {UserID: alice, Kind: ForkRecord, Seq: 7, First: second, Second: first}} {
		if added, err := s.PutKeyFork(ctx, again); err != nil || added {
			t.Fatalf("PutKeyFork again = %v, %v; want not added", added, err)
		}
	}
	rot := KeyFork{UserID: alice, Kind: ForkRotation, Seq: 1, First: []byte("g→k2"), Second: []byte("g→k3")}
	if added, err := s.PutKeyFork(ctx, rot); err != nil || !added {
		t.Fatalf("PutKeyFork rotation = %v, %v", added, err)
	}
	for _, bad := range []KeyFork{
		{Kind: ForkRecord, First: first, Second: second},
		{UserID: alice, Kind: "card", First: first, Second: second},
		{UserID: alice, Kind: ForkRecord, First: first, Second: first},
		{UserID: alice, Kind: ForkRecord, First: first},
	} {
		if _, err := s.PutKeyFork(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutKeyFork(%+v) = %v, want ErrInvalid", bad, err)
		}
	}

	s = reopen(t, s, c)
	got, err := s.KeyForks(ctx, alice)
	if err != nil || len(got) != 2 {
		t.Fatalf("KeyForks = %d, %v; want 2", len(got), err)
	}
	var rec KeyFork
	for _, k := range got {
		if k.Kind == ForkRecord {
			rec = k
		}
	}
	if rec.UserID != alice || rec.Seq != 7 || rec.Source != "directory" || !bytes.Equal(rec.First, first) ||
		!bytes.Equal(rec.Second, second) || rec.At.IsZero() {
		t.Errorf("record fork after reopen = %+v", rec)
	}
	if none, err := s.KeyForks(ctx, bob); err != nil || len(none) != 0 {
		t.Errorf("KeyForks(bob) = %v, %v", none, err)
	}

	// Sealed like every row: a flipped byte is tampering, not evidence.
	key := keyForkKey(alice, forkDigest(ForkRecord, first, second))
	rawSet(t, s, key, flipped(rawGet(t, s, key)))
	_, err = s.KeyForks(ctx, alice)
	wantTampered(t, "flipped key fork", err, rowKeyFork)
}

func TestFriendForkedRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _, c := newTestStore(t)
	id := randUser()
	if _, err := s.PutFriend(ctx, Friend{UserID: id, Name: "Alice", Status: FriendAccepted, Forked: true}); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, c)
	f, err := s.Friend(ctx, id)
	if err != nil || !f.Forked {
		t.Fatalf("Friend after reopen: forked %v, %v", f.Forked, err)
	}
	f.Forked = false
	if _, err := s.PutFriend(ctx, f); err != nil {
		t.Fatal(err)
	}
	if f, _ := s.Friend(ctx, id); f.Forked {
		t.Error("Forked not cleared")
	}
}
