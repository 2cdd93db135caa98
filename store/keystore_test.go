package store

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

func TestPrekeys(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	t0 := c.Now()
	var pks []*protocol.Prekey
	for range 3 {
		pk, err := protocol.GeneratePrekey(testKey, c.Now(), 7*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutPrekey(ctx, pk); err != nil {
			t.Fatal(err)
		}
		pks = append(pks, pk)
		c.Add(time.Second)
	}
	if err := s.PutPrekey(ctx, pks[0]); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("same prekey twice: %v", err)
	}
	list, err := s.Prekeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("%d prekeys, want 3", len(list))
	}
	for i, r := range list {
		if !bytes.Equal(r.Prekey.Marshal(), pks[i].Marshal()) || !r.Current() || !r.CreatedAt.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("prekey %d: %+v", i, r)
		}
	}

	retireAt := c.Now()
	for i, d := range []time.Duration{time.Hour, 2 * time.Hour} {
		r, err := s.RetirePrekey(ctx, pks[i].ID(), retireAt.Add(d))
		if err != nil {
			t.Fatal(err)
		}
		if r.Current() || !r.RetiredAt.Equal(retireAt) || !r.DeleteAt.Equal(retireAt.Add(d)) {
			t.Fatalf("retired prekey: %+v", r)
		}
	}
	r, err := s.Prekey(ctx, pks[1].ID())
	if err != nil || r.Current() {
		t.Fatalf("Prekey(retired): %+v, %v", r, err)
	}

	purge := func(at time.Time, want ...uint64) {
		t.Helper()
		c.Set(at)
		got, err := s.PurgePrekeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("purged at %v: %v, want %v", at.Sub(retireAt), got, want)
		}
	}
	purge(retireAt.Add(time.Hour - time.Millisecond))
	purge(retireAt.Add(time.Hour), pks[0].ID())
	if _, err := s.Prekey(ctx, pks[0].ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged prekey: %v", err)
	}
	purge(retireAt.Add(3*time.Hour), pks[1].ID())
	purge(retireAt.Add(300 * 24 * time.Hour)) // the current one stays
	r, err = s.Prekey(ctx, pks[2].ID())
	if err != nil || !r.Current() || !bytes.Equal(r.Prekey.Marshal(), pks[2].Marshal()) {
		t.Fatalf("current prekey: %+v, %v", r, err)
	}
	if err := s.DeletePrekey(ctx, pks[2].ID()); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePrekey(ctx, pks[2].ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeletePrekey: %v", err)
	}
	if list, _ := s.Prekeys(ctx); len(list) != 0 {
		t.Fatalf("%d prekeys left", len(list))
	}
}

func TestHostKey(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	if _, err := s.HostKey(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("HostKey before Put: %v", err)
	}
	for _, k := range [][]byte{[]byte("first"), []byte("second")} {
		if err := s.PutHostKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	s = reopen(t, s, c)
	if k, err := s.HostKey(ctx); err != nil || string(k) != "second" {
		t.Fatalf("HostKey = %q, %v", k, err)
	}
	if err := s.PutHostKey(ctx, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty host key: %v", err)
	}
}

func TestFriends(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	a, b := randUser(), randUser()
	t0 := c.Now()
	fa, err := s.PutFriend(ctx, Friend{UserID: a, Name: "Alice", Status: FriendPendingOut, PublicKey: otherKey.Public().Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if !fa.CreatedAt.Equal(t0) || !fa.UpdatedAt.Equal(t0) {
		t.Fatalf("timestamps: %+v", fa)
	}
	c.Add(time.Minute)
	fa.Status, fa.Verified, fa.Card, fa.CreatedAt = FriendAccepted, true, "card", time.Time{}
	if fa, err = s.PutFriend(ctx, fa); err != nil {
		t.Fatal(err)
	}
	if !fa.CreatedAt.Equal(t0) || !fa.UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("update timestamps: %+v", fa)
	}
	if _, err := s.PutFriend(ctx, Friend{UserID: b, Name: "Bob", Status: FriendBlocked}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Friend(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Alice" || got.Status != FriendAccepted || !got.Verified || got.Card != "card" ||
		!bytes.Equal(got.PublicKey, otherKey.Public().Bytes()) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("Friend = %+v", got)
	}
	all, err := s.Friends(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("Friends = %d, %v", len(all), err)
	}
	if _, err := s.PutFriend(ctx, Friend{UserID: b, Status: "best"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad status: %v", err)
	}
	if _, err := s.PutFriend(ctx, Friend{Status: FriendAccepted}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no user ID: %v", err)
	}
	if err := s.DeleteFriend(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Friend(ctx, b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted friend: %v", err)
	}
	if err := s.DeleteFriend(ctx, b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
