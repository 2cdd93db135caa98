package node

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestContactRequestDuplicates: a stranger on a real host sends B the
// same contact request again and again. The first waits for B's answer;
// repeats are answered as replays once their signature is checked,
// neither decrypted nor stored nor shown again, however many; the cap on
// pending requests counts the stranger once. A stranger B declined may
// ask again, up to the per-sender limit; past it their request is
// deferred (unavailable: retry later).
func TestContactRequestDuplicates(t *testing.T) {
	ctx := context.Background()
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	bs := unlockedOf(t, b)
	bCard, err := protocol.ParseCardURI(meOf(t, b).Invite)
	if err != nil {
		t.Fatal(err)
	}
	toB := bCard.Recipient(time.Now())
	carol := fixtureKey(t, "carol-2048")
	atk := newAttacker(t, b)
	card, err := protocol.NewCard(carol, "Carol", [][]byte{[]byte(atk.h.ID())}, nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	events := watch(t, b)
	hs := atk.open(t)
	request := func() *protocol.Envelope {
		return atk.forge(t, carol, toB, protocol.KindContactRequest, string(card.Marshal()), time.Now())
	}

	hs.expect(request(), card.Marshal(), protocol.AckOK)
	first, err := b.Friend(ctx, carol.ID())
	if err != nil || first.Status != store.FriendPendingIn {
		t.Fatalf("after the first request: %+v, %v", first.Friend, err)
	}
	events.waitEvent(t, 10*time.Second, "friend_request", isType(EventFriendRequest))

	// Repeats, each a new envelope (a new msg_id), more than the limit:
	// answered as replays, so the stranger's node stops sending them,
	// and nothing is written or counted.
	opened := bs.msgs.stats.opened.Load()
	for range 2 * requestBurst {
		hs.expect(request(), card.Marshal(), protocol.AckReplay)
	}
	again, err := b.Friend(ctx, carol.ID())
	if err != nil || !again.UpdatedAt.Equal(first.UpdatedAt) {
		t.Fatalf("a repeated request stored the stranger again (updated %v, was %v), %v", again.UpdatedAt, first.UpdatedAt, err)
	}
	if n := len(events.matching(isType(EventFriendRequest))); n != 1 {
		t.Errorf("%d friend_request events, want 1", n)
	}
	if n := bs.friends.pendingIn(); n != 1 {
		t.Errorf("%d pending requests, want 1", n)
	}
	if n := bs.msgs.stats.opened.Load() - opened; n != 2*requestBurst {
		t.Errorf("%d repeats went through the Opener, want %d (signature checked, not decrypted)", n, 2*requestBurst)
	}

	// B declines; Carol asks again, up to the per-sender limit (the first
	// request counted as one).
	for i := 1; i < requestBurst; i++ {
		if err := b.RemoveFriend(ctx, carol.ID()); err != nil {
			t.Fatal(err)
		}
		hs.expect(request(), card.Marshal(), protocol.AckOK)
		if got := friendStatus(b, carol.ID()); got != store.FriendPendingIn {
			t.Fatalf("request %d after a decline: status %s", i+1, got)
		}
	}
	if err := b.RemoveFriend(ctx, carol.ID()); err != nil {
		t.Fatal(err)
	}
	hs.expect(request(), card.Marshal(), protocol.AckUnavailable)
	hs.finish()
	if _, err := b.Friend(ctx, carol.ID()); !isErr(err, ErrNotFound) {
		t.Errorf("a request past the limit was stored: %v", err)
	}
}

func TestRequestLimitWindow(t *testing.T) {
	var l requestLimit
	id := protocol.ID{1}
	now := time.Unix(1_800_000_000, 0)
	for i := range requestBurst {
		if !l.admit(id, now) {
			t.Fatalf("request %d refused", i+1)
		}
	}
	if l.admit(id, now.Add(time.Minute)) {
		t.Fatal("request past the burst admitted")
	}
	if l.admit(protocol.ID{2}, now) != true {
		t.Fatal("another sender is limited by the first")
	}
	if !l.admit(id, now.Add(requestWindow)) {
		t.Fatal("a new window did not admit")
	}
	// Memory stays bounded: ended windows go when the map is full.
	for i := range requestSenders + 10 {
		l.admit(protocol.ID{byte(i), byte(i >> 8), 3}, now.Add(3*requestWindow))
	}
	if n := len(l.seen); n > requestSenders {
		t.Fatalf("%d senders remembered", n)
	}
}
