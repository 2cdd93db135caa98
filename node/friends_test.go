package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// twoStrangers starts alice and bob, who know nothing of each other yet.
func twoStrangers(t *testing.T) (a, b *Node, ma, mb Me) {
	t.Helper()
	a = startNode(t, testConfig(t, "alice-2048"), "Alice")
	b = startNode(t, testConfig(t, "bob-2048"), "Bob")
	return a, b, meOf(t, a), meOf(t, b)
}

func waitStatus(t *testing.T, n *Node, user protocol.ID, want store.FriendStatus) {
	t.Helper()
	waitFor(t, 10*time.Second, "friend status "+string(want), func() bool { return friendStatus(n, user) == want })
}

func TestFriendRequestAndAcceptByID(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	evA, evB := watch(t, a), watch(t, b)

	f, err := a.AddFriend(ctx, mb.Invite)
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != store.FriendPendingOut || f.UserID != mb.UserID || f.Name != "Bob" {
		t.Fatalf("AddFriend = %+v, want pending_out Bob", f.Friend)
	}
	e := evB.waitEvent(t, 10*time.Second, "B's friend_request event", isType(EventFriendRequest))
	if e.Friend.UserID != ma.UserID || e.Friend.Status != store.FriendPendingIn || e.Friend.Name != "Alice" {
		t.Fatalf("friend_request event: %+v", e.Friend.Friend)
	}
	if got := friendStatus(b, ma.UserID); got != store.FriendPendingIn {
		t.Fatalf("B sees A as %q, want pending_in", got)
	}
	// A request is not a friendship: neither may send yet.
	if _, err := b.Send(ctx, ma.UserID, "hi"); !isErr(err, ErrNotFriend) {
		t.Fatalf("Send to a pending_in user: %v, want ErrNotFriend", err)
	}
	if _, err := a.Send(ctx, mb.UserID, "hi"); !isErr(err, ErrNotFriend) {
		t.Fatalf("Send to a pending_out user: %v, want ErrNotFriend", err)
	}

	f, err = b.AcceptFriend(ctx, ma.UserID)
	if err != nil || f.Status != store.FriendAccepted {
		t.Fatalf("AcceptFriend = %+v, %v", f.Friend, err)
	}
	e = evA.waitEvent(t, 10*time.Second, "A's friend_accepted event", isType(EventFriendAccepted))
	if e.Friend.UserID != mb.UserID || e.Friend.Status != store.FriendAccepted {
		t.Fatalf("friend_accepted event: %+v", e.Friend.Friend)
	}
	waitStatus(t, a, mb.UserID, store.FriendAccepted)
	if _, ok := evB.find(isType(EventFriendAccepted)); !ok {
		t.Fatal("B published no friend_accepted event")
	}
	// Accepting again is harmless.
	if f, err := b.AcceptFriend(ctx, ma.UserID); err != nil || f.Status != store.FriendAccepted {
		t.Fatalf("second AcceptFriend = %+v, %v", f.Friend, err)
	}
	if _, err := a.AcceptFriend(ctx, protocol.ID{1}); !isErr(err, ErrNotFound) {
		t.Fatalf("AcceptFriend of an unknown ID: %v, want ErrNotFound", err)
	}
	// A cannot accept its own outgoing request on the other side's behalf.
	c := startNode(t, testConfig(t, "carol-2048"), "Carol")
	if _, err := a.AddFriend(ctx, meOf(t, c).Invite); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AcceptFriend(ctx, meOf(t, c).UserID); !isErr(err, ErrNotFound) {
		t.Fatalf("AcceptFriend of a pending_out friend: %v, want ErrNotFound", err)
	}
}

func TestFriendAcceptByAddingBack(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, ma.UserID, store.FriendPendingIn)
	f, err := b.AddFriend(ctx, ma.Invite)
	if err != nil || f.Status != store.FriendAccepted {
		t.Fatalf("adding back the invite = %+v, %v; want accepted", f.Friend, err)
	}
	waitStatus(t, a, mb.UserID, store.FriendAccepted)
	// Adding an accepted friend's invite again only updates the card.
	if f, err := b.AddFriend(ctx, ma.Invite); err != nil || f.Status != store.FriendAccepted {
		t.Fatalf("adding an accepted friend again = %+v, %v", f.Friend, err)
	}
	if _, err := a.Send(ctx, mb.UserID, "we are friends"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the message arrives", func() bool { return len(convHistory(t, b, ma.UserID)) == 1 })
}

func TestFriendCrossingRequests(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); _, errs[0] = a.AddFriend(ctx, mb.Invite) }()
	go func() { defer wg.Done(); _, errs[1] = b.AddFriend(ctx, ma.Invite) }()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("AddFriend: %v", err)
		}
	}
	waitStatus(t, a, mb.UserID, store.FriendAccepted)
	waitStatus(t, b, ma.UserID, store.FriendAccepted)
	// The extra accepts settle; nothing bounces back and forth.
	waitFor(t, 10*time.Second, "both outboxes drain", func() bool {
		return len(queuedFor(t, a, mb.UserID)) == 0 && len(queuedFor(t, b, ma.UserID)) == 0
	})
	// Both can talk.
	if _, err := a.Send(ctx, mb.UserID, "from a"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(ctx, ma.UserID, "from b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both messages arrive", func() bool {
		return len(convHistory(t, a, mb.UserID)) == 2 && len(convHistory(t, b, ma.UserID)) == 2
	})
}

func TestFriendRemovedIsRefused(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	// B's watcher starts before the first message, and the test waits for
	// that message's event: an event is published after its write, so a
	// watcher started once the history shows it may still see it.
	evB := watch(t, b)
	first, err := a.Send(ctx, mb.UserID, "while friends")
	if err != nil {
		t.Fatal(err)
	}
	isMsg := func(id protocol.MsgID) func(Event) bool {
		return func(e Event) bool { return e.Type == EventMessage && e.Message.ID == id }
	}
	evB.waitEvent(t, 10*time.Second, "the first message arrives", isMsg(first.ID))
	// B's removal notice waits, so that A does not know yet
	// (removal_test.go covers the notice).
	unlockedOf(t, b).outbox.Hold(ma.UserID)
	if err := b.RemoveFriend(ctx, ma.UserID); err != nil {
		t.Fatal(err)
	}
	if e := evB.waitEvent(t, 5*time.Second, "friend_removed", isType(EventFriendRemoved)); e.Friend.UserID != ma.UserID {
		t.Fatalf("friend_removed for %s", e.Friend.UserID)
	}
	if _, err := b.Friend(ctx, ma.UserID); !isErr(err, ErrNotFound) {
		t.Fatalf("Friend after RemoveFriend: %v, want ErrNotFound", err)
	}
	if err := b.RemoveFriend(ctx, ma.UserID); !isErr(err, ErrNotFound) {
		t.Fatalf("second RemoveFriend: %v, want ErrNotFound", err)
	}

	// A still thinks they are friends; B refuses, A marks it failed.
	m, err := a.Send(ctx, mb.UserID, "after removal")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "A's message fails", func() bool {
		got, err := unlockedOf(t, a).st.Message(ctx, m.ID)
		return err == nil && got.Status == store.StatusFailed
	})
	got, _ := unlockedOf(t, a).st.Message(ctx, m.ID)
	if !strings.Contains(got.Error, protocol.AckNotAFriend.String()) {
		t.Fatalf("failed message's error = %q, want it to name %s", got.Error, protocol.AckNotAFriend)
	}
	if len(queuedFor(t, a, mb.UserID)) != 0 {
		t.Fatal("a refused message stays queued")
	}
	// B kept the conversation but stored nothing new.
	ms := convHistory(t, b, ma.UserID)
	if len(ms) != 1 || string(ms[0].Body) != "while friends" {
		t.Fatalf("B's history with A: %q", bodies(ms))
	}
	if _, ok := evB.find(isMsg(m.ID)); ok {
		t.Fatal("B published a message event for a refused message")
	}
	if n := len(evB.matching(isType(EventMessage))); n != 1 {
		t.Fatalf("B published %d message events, want 1 (the first message)", n)
	}
}

func TestFriendBlockedRequestsRefused(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	f, err := b.BlockFriend(ctx, ma.UserID)
	if err != nil || f.Status != store.FriendBlocked {
		t.Fatalf("BlockFriend = %+v, %v", f.Friend, err)
	}
	evB := watch(t, b)

	// A forgets B and asks again: B refuses the request.
	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "A's request is settled", func() bool { return len(queuedFor(t, a, mb.UserID)) == 0 })
	if got := friendStatus(b, ma.UserID); got != store.FriendBlocked {
		t.Fatalf("B sees A as %q, want blocked", got)
	}
	if got := friendStatus(a, mb.UserID); got != store.FriendPendingOut {
		t.Fatalf("A sees B as %q, want pending_out", got)
	}
	if e, ok := evB.find(func(e Event) bool { return e.Type == EventFriendRequest || e.Type == EventFriendAccepted }); ok {
		t.Fatalf("B published %s for a blocked user", e.Type)
	}
	if _, err := b.Send(ctx, ma.UserID, "hi"); !isErr(err, ErrNotFriend) {
		t.Fatalf("Send to a blocked user: %v, want ErrNotFriend", err)
	}
	// Blocking is undone only by adding them again.
	if f, err := b.AddFriend(ctx, ma.Invite); err != nil || f.Status != store.FriendPendingOut {
		t.Fatalf("B adds A again = %+v, %v; want pending_out", f.Friend, err)
	}
	waitStatus(t, a, mb.UserID, store.FriendAccepted)
	waitStatus(t, b, ma.UserID, store.FriendAccepted)
}

func TestFriendAndSendRefusals(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	if _, err := a.AddFriend(ctx, ma.Invite); !isErr(err, ErrInvalid) {
		t.Fatalf("AddFriend of the own invite: %v, want ErrInvalid", err)
	}
	for _, bad := range []string{"", "parley:card/", "https://example.com", mb.Invite[:len(mb.Invite)-8]} {
		if _, err := a.AddFriend(ctx, bad); !isErr(err, ErrInvalid) {
			t.Fatalf("AddFriend(%.30q): %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := a.AcceptFriend(ctx, mb.UserID); !isErr(err, ErrNotFound) {
		t.Fatalf("AcceptFriend of a stranger: %v, want ErrNotFound", err)
	}
	for name, f := range map[string]func() error{
		"Friend":       func() error { _, err := a.Friend(ctx, mb.UserID); return err },
		"RemoveFriend": func() error { return a.RemoveFriend(ctx, mb.UserID) },
		"BlockFriend":  func() error { _, err := a.BlockFriend(ctx, mb.UserID); return err },
		"VerifyFriend": func() error { return a.VerifyFriend(ctx, mb.UserID) },
	} {
		if err := f(); !isErr(err, ErrNotFound) {
			t.Fatalf("%s of a stranger: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := a.Send(ctx, mb.UserID, "hello?"); !isErr(err, ErrNotFriend) {
		t.Fatalf("Send to a stranger: %v, want ErrNotFriend", err)
	}

	befriend(t, a, b)
	waitFor(t, 10*time.Second, "the friendship's control envelopes settle", func() bool {
		return len(queuedFor(t, a, mb.UserID)) == 0
	})
	for _, c := range []struct {
		name, text string
		want       error
	}{
		{"empty", "", ErrEmptyMessage},
		{"spaces", "   ", ErrEmptyMessage},
		{"white space", " \t\r\n\u00a0\u2003 ", ErrEmptyMessage},
		{"white space is invalid too", "\n", ErrInvalid},
		{"over 32 KiB", strings.Repeat("x", protocol.MaxBodySize+1), ErrTooLarge},
		{"invalid UTF-8", "caf\xe9", ErrInvalid},
		{"cut rune", "€"[:2], ErrInvalid},
	} {
		if _, err := a.Send(ctx, mb.UserID, c.text); !isErr(err, c.want) {
			t.Fatalf("Send %s: %v, want %v", c.name, err, c.want)
		}
	}
	if q := queuedFor(t, a, mb.UserID); len(q) != 0 {
		t.Fatalf("%d entries queued after refused sends", len(q))
	}
	if ms := convHistory(t, a, mb.UserID); len(ms) != 0 {
		t.Fatalf("A stored %d refused messages", len(ms))
	}
	// Exactly 32 KiB is fine.
	if _, err := a.Send(ctx, mb.UserID, strings.Repeat("y", protocol.MaxBodySize)); err != nil {
		t.Fatalf("Send of exactly MaxBodySize: %v", err)
	}
	waitFor(t, 10*time.Second, "the largest message arrives", func() bool {
		ms := convHistory(t, b, ma.UserID)
		return len(ms) == 1 && len(ms[0].Body) == protocol.MaxBodySize
	})
}

func TestFriendVerifyAndSafetyNumber(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	fa, err := a.Friend(ctx, mb.UserID)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := b.Friend(ctx, ma.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if fa.SafetyNumber == "" || fa.SafetyNumber != fb.SafetyNumber {
		t.Fatalf("safety numbers differ: A shows %q, B shows %q", fa.SafetyNumber, fb.SafetyNumber)
	}
	aKey, bKey := fixtureKey(t, "alice-2048").Public(), fixtureKey(t, "bob-2048").Public()
	if want := protocol.SafetyNumber(ma.UserID, aKey, mb.UserID, bKey); fa.SafetyNumber != want {
		t.Fatalf("safety number %q, want %q", fa.SafetyNumber, want)
	}
	if fa.Verified {
		t.Fatal("a new friend is verified")
	}
	if err := a.VerifyFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	if err := a.VerifyFriend(ctx, mb.UserID); err != nil {
		t.Fatalf("second VerifyFriend: %v", err)
	}
	fa, err = a.Friend(ctx, mb.UserID)
	if err != nil || !fa.Verified || fa.Status != store.FriendAccepted {
		t.Fatalf("after VerifyFriend: %+v, %v", fa.Friend, err)
	}
	if fb, _ := b.Friend(ctx, ma.UserID); fb.Verified {
		t.Fatal("verifying on one side verified the other")
	}
	fs, err := a.Friends(ctx)
	if err != nil || len(fs) != 1 || !fs[0].Verified || !fs[0].Online {
		t.Fatalf("Friends = %+v, %v; want one verified, online friend", fs, err)
	}
	if ma.Fingerprint != ma.UserID.Fingerprint() || len(ma.Fingerprint) != 79 {
		t.Fatalf("fingerprint %q", ma.Fingerprint)
	}
}

// TestFriendRequestsCapped: while MaxPendingRequests strangers wait for an
// answer, another stranger's request is deferred (not stored, retried by
// its sender) and goes through once the user answers one.
func TestFriendRequestsCapped(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "bob-2048")
	cfg.MaxPendingRequests = 1
	b := startNode(t, cfg, "Bob")
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	c := startNode(t, testConfig(t, "carol-2048"), "Carol")
	mb, ma, mc := meOf(t, b), meOf(t, a), meOf(t, c)

	if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, ma.UserID, store.FriendPendingIn)
	if _, err := c.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatal(err)
	}
	// Carol's request is refused as unavailable: it stays in her outbox,
	// her courier backs off, and Bob has no record.
	waitFor(t, 10*time.Second, "carol's request deferred", func() bool {
		return len(queuedFor(t, c, mb.UserID)) == 1 && unlockedOf(t, c).outbox.Held(mb.UserID)
	})
	if got := friendStatus(b, mc.UserID); got != "" {
		t.Fatalf("bob stored carol's deferred request as %q", got)
	}
	if _, err := b.AcceptFriend(ctx, ma.UserID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, mc.UserID, store.FriendPendingIn)
}

// TestFriendTextRightAfterAccept: a message sent right after accepting
// follows the accept on the same stream; the requester opens it while the
// accept may not be stored yet, and must still take it.
func TestFriendTextRightAfterAccept(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	for i := range 5 {
		if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, b, ma.UserID, store.FriendPendingIn)
		if _, err := b.AcceptFriend(ctx, ma.UserID); err != nil {
			t.Fatal(err)
		}
		text := fmt.Sprintf("hi right away %d", i)
		if _, err := b.Send(ctx, ma.UserID, text); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the message after the accept", func() bool {
			ms := convHistory(t, a, mb.UserID)
			return len(ms) == i+1 && string(ms[i].Body) == text
		})
		waitFor(t, 10*time.Second, "delivered on b", func() bool {
			ms := convHistory(t, b, ma.UserID)
			return len(ms) == i+1 && ms[i].Status == store.StatusDelivered
		})
		// Start over as strangers.
		if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
			t.Fatal(err)
		}
		if err := b.RemoveFriend(ctx, ma.UserID); err != nil {
			t.Fatal(err)
		}
	}
}
