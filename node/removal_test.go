package node

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestRemovalNotice: A removes B. What A had queued for B fails and never
// reaches B; B learns of the removal from A's signed notice: A becomes
// removed_by_peer (history kept), B's node says friend_removed, and
// sending to A is refused with ErrRemovedByPeer. A adding B again starts
// over with a request that B can accept.
func TestRemovalNotice(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	if _, err := a.Send(ctx, mb.UserID, "while friends"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first message arrives", func() bool { return len(convHistory(t, b, ma.UserID)) == 1 })
	evB := watch(t, b)

	ua := unlockedOf(t, a)
	ua.outbox.Hold(mb.UserID)
	queued, err := a.Send(ctx, mb.UserID, "queued at removal")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	if got, _ := ua.st.Message(ctx, queued.ID); got.Status != store.StatusFailed || got.Error != removalReason {
		t.Fatalf("message queued at removal: %s %q, want failed %q", got.Status, got.Error, removalReason)
	}
	es := queuedFor(t, a, mb.UserID)
	if len(es) != 1 || !es[0].Control {
		t.Fatalf("A's queue for B after removal: %+v, want only the notice", es)
	}
	if env, err := protocol.ParseEnvelope(es[0].Envelope); err != nil || env.Kind != protocol.KindFriendRemoved {
		t.Fatalf("queued notice: %v, %v", env, err)
	}
	ua.outbox.Rush(mb.UserID)

	e := evB.waitEvent(t, 10*time.Second, "B's friend_removed", isType(EventFriendRemoved))
	if e.Friend.UserID != ma.UserID || e.Friend.Status != store.FriendRemovedByPeer || e.Friend.Name != "Alice" {
		t.Fatalf("friend_removed event: %+v", e.Friend.Friend)
	}
	if got := friendStatus(b, ma.UserID); got != store.FriendRemovedByPeer {
		t.Fatalf("B sees A as %q, want removed_by_peer", got)
	}
	waitFor(t, 10*time.Second, "A's notice settles", func() bool { return len(queuedFor(t, a, mb.UserID)) == 0 })
	if ms := convHistory(t, b, ma.UserID); len(ms) != 1 || string(ms[0].Body) != "while friends" {
		t.Fatalf("B's history with A: %q, want only the message from before", bodies(ms))
	}
	if _, err := b.Send(ctx, ma.UserID, "are we?"); !isErr(err, ErrRemovedByPeer) {
		t.Fatalf("B sends to A after the notice: %v, want ErrRemovedByPeer", err)
	}
	if ms := convHistory(t, b, ma.UserID); len(ms) != 1 {
		t.Fatalf("a refused send left a message: %q", bodies(ms))
	}
	// The failed message cannot be sent again to someone no longer a
	// friend.
	if _, err := a.RetryMessage(ctx, queued.ID); !isErr(err, ErrNotFriend) {
		t.Fatalf("RetryMessage to a removed friend: %v, want ErrNotFriend", err)
	}

	// A asks again: B sees a new request and accepts it.
	if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, ma.UserID, store.FriendPendingIn)
	if _, err := b.AcceptFriend(ctx, ma.UserID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, mb.UserID, store.FriendAccepted)
	if _, err := b.Send(ctx, ma.UserID, "friends again"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B's message reaches A", func() bool { return len(convHistory(t, a, mb.UserID)) == 3 })
}

// TestRemovalNoticeExplainsRefusals: what B sent while A's notice was on
// its way, and A refused as from a stranger, is marked with the reason
// once the notice arrives.
func TestRemovalNoticeExplainsRefusals(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	ua := unlockedOf(t, a)
	ua.outbox.Hold(mb.UserID) // the notice waits
	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	m, err := b.Send(ctx, ma.UserID, "hello?")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "A refuses B's message", func() bool {
		return messageOf(t, b, m.ID).Status == store.StatusFailed
	})
	if got := messageOf(t, b, m.ID).Error; got != refusedAsStranger {
		t.Fatalf("refused message's error %q", got)
	}
	evB := watch(t, b)
	ua.outbox.Rush(mb.UserID)
	waitStatus(t, b, ma.UserID, store.FriendRemovedByPeer)
	waitFor(t, 10*time.Second, "the refusal explained", func() bool { return messageOf(t, b, m.ID).Error == theirRemovalReason })
	if got := messageOf(t, b, m.ID); got.Status != store.StatusFailed {
		t.Fatalf("refused message after the notice: %s, want failed", got.Status)
	}
	evB.waitEvent(t, 5*time.Second, "the message's status event", func(e Event) bool {
		return e.Type == EventMessageStatus && e.Message.ID == m.ID && e.Message.Error == theirRemovalReason
	})
}

// TestRemovalNoticeByTheRemoved: B, removed by A, adds A again: a
// request A can accept.
func TestRemovalNoticeAddBack(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, ma.UserID, store.FriendRemovedByPeer)
	f, err := b.AddFriend(ctx, ma.Invite)
	if err != nil || f.Status != store.FriendPendingOut {
		t.Fatalf("B adds A again = %+v, %v; want pending_out", f.Friend, err)
	}
	waitStatus(t, a, mb.UserID, store.FriendPendingIn)
	if _, err := a.AcceptFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, ma.UserID, store.FriendAccepted)
}

// TestRemovalNoticeAdversarial: a notice changes B's view of A only when
// it is A's, signed by A's key, fresh and new. Forged, replayed, stale,
// malformed notices and notices from strangers are refused and change
// nothing. (The attacker holds A's key where the test says so: A's
// other device.)
func TestRemovalNoticeAdversarial(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	befriend(t, a, b)
	aliceKey, carolKey := fixtureKey(t, "alice-2048"), fixtureKey(t, "carol-2048")
	bCard, err := protocol.ParseCardURI(mb.Invite)
	if err != nil {
		t.Fatal(err)
	}
	toB := bCard.Recipient(time.Now())
	evB := watch(t, b)
	atk := newAttacker(t, b)
	unchanged := func(t *testing.T) {
		t.Helper()
		if got := friendStatus(b, ma.UserID); got != store.FriendAccepted {
			t.Fatalf("B sees A as %q, want accepted", got)
		}
		if _, ok := evB.find(isType(EventFriendRemoved)); ok {
			t.Fatal("B published friend_removed")
		}
	}
	seal := func(s protocol.Sender, body string, at time.Time) *protocol.Envelope {
		t.Helper()
		r := toB
		if at.Before(time.Now().Add(-time.Hour)) {
			r = protocol.Recipient{UserID: bCard.UserID, Key: bCard.Key} // B's prekey was not valid then
		}
		env, err := protocol.Seal(s, r, protocol.KindFriendRemoved, []byte(body), at)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	dev := []byte(atk.h.ID())
	asAlice := protocol.Sender{UserID: ma.UserID, Key: aliceKey, Device: dev}

	// Signed by carol's key, claiming to be A.
	forged := seal(protocol.Sender{UserID: ma.UserID, Key: carolKey, Device: dev}, "", time.Now())
	hs := atk.open(t)
	hs.deliver(forged.Marshal(), nil)
	if ack := hs.ack(); ack.Code == protocol.AckOK {
		t.Fatalf("forged notice: ack %s", ack.Code)
	}
	unchanged(t)
	// A stranger's own notice.
	hs.expect(atk.forge(t, carolKey, toB, protocol.KindFriendRemoved, "", time.Now()), nil, protocol.AckNotAFriend)
	unchanged(t)
	// A's key, but tampered with on the way.
	good := seal(asAlice, "", time.Now())
	tampered := mutate(t, good, func(e *protocol.Envelope) { e.Ciphertext[0] ^= 1 })
	hs.deliver(tampered, nil)
	hs.expectAck(good.MsgID, protocol.AckAuth)
	unchanged(t)
	// A's key, too old.
	hs.expect(seal(asAlice, "", time.Now().Add(-2*protocol.DefaultMaxAge)), nil, protocol.AckStale)
	unchanged(t)
	// A's key, with a body: malformed.
	hs.expect(seal(asAlice, "bye", time.Now()), nil, protocol.AckMalformed)
	unchanged(t)

	// The genuine notice takes effect once.
	hs.expect(good, nil, protocol.AckOK)
	evB.waitEvent(t, 5*time.Second, "friend_removed", isType(EventFriendRemoved))
	if got := friendStatus(b, ma.UserID); got != store.FriendRemovedByPeer {
		t.Fatalf("B sees A as %q after the notice", got)
	}
	// A copy now: A is no longer a friend who could remove B.
	hs.expect(good, nil, protocol.AckNotAFriend)
	hs.finish()

	// Friends again: replaying the old notice changes nothing.
	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "A's notice settles", func() bool { return len(queuedFor(t, a, mb.UserID)) == 0 })
	befriendAgain := func() {
		if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, b, ma.UserID, store.FriendPendingIn)
		if _, err := b.AcceptFriend(ctx, ma.UserID); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, a, mb.UserID, store.FriendAccepted)
	}
	befriendAgain()
	evB = watch(t, b)
	hs = atk.open(t)
	hs.expect(good, nil, protocol.AckReplay)
	hs.finish()
	unchanged(t)
}

// TestRemovalNoticeAfterRestart: a notice still queued when A's node
// stops goes out after the restart, to B's devices as the directory
// lists them.
func TestRemovalNoticeAfterRestart(t *testing.T) {
	relay := startRelays(t, 1)[0]
	acfg := dirConfig(t, fixtureKey(t, "alice-2048"), relay.Addrs()[0])
	a := startNode(t, acfg, "Alice")
	b := startNode(t, dirConfig(t, fixtureKey(t, "bob-2048"), relay.Addrs()[0]), "Bob")
	waitPublished(t, b)
	befriend(t, a, b)
	ma, mb := meOf(t, a), meOf(t, b)
	unlockedOf(t, a).outbox.Hold(mb.UserID)
	if err := a.RemoveFriend(context.Background(), mb.UserID); err != nil {
		t.Fatal(err)
	}
	if n := len(queuedFor(t, a, mb.UserID)); n != 1 {
		t.Fatalf("%d entries queued for B, want the notice", n)
	}
	closeNode(t, a)
	a = unlockNode(t, acfg)
	waitStatus(t, b, ma.UserID, store.FriendRemovedByPeer)
	waitFor(t, 10*time.Second, "A's notice settles", func() bool { return len(queuedFor(t, a, mb.UserID)) == 0 })
}

// TestRemovalNoticeStrandedAtRestart: a notice queued at restart for a
// removed friend the directory does not know is dropped, not retried
// for ever.
func TestRemovalNoticeStrandedAtRestart(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "alice-2048")
	a := startNode(t, cfg, "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	mb := meOf(t, b)
	unlockedOf(t, a).outbox.Hold(mb.UserID)
	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	closeNode(t, a)
	closeNode(t, b) // nobody to ask, nobody to reach
	a = unlockNode(t, cfg)
	waitFor(t, time.Duration(farewellTries+2)*cfg.RetryMax+10*time.Second, "the stranded notice is dropped", func() bool {
		return len(queuedFor(t, a, mb.UserID)) == 0
	})
}
