package node

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// keyQueue hands out the given keys in order, one per NewKey call.
func keyQueue(keys ...*protocol.PrivateKey) func(int) (*protocol.PrivateKey, error) {
	var mu sync.Mutex
	return func(int) (*protocol.PrivateKey, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(keys) == 0 {
			return nil, errors.New("test: no more keys")
		}
		k := keys[0]
		keys = keys[1:]
		return k, nil
	}
}

// directoryFriends starts a relay and A (genesis key g, rotating to next)
// and B on it, waits until both records are published, and makes them
// friends. acfg is A's config (for a restart).
func directoryFriends(t *testing.T, g, next *protocol.PrivateKey) (a, b *Node, acfg Config) {
	t.Helper()
	relay := startRelays(t, 1)[0]
	acfg = dirConfig(t, g, relay.Addrs()[0])
	acfg.NewKey = keyQueue(g, next)
	a = startNode(t, acfg, "Alice")
	b = startNode(t, dirConfig(t, fixtureKey(t, "bob-2048"), relay.Addrs()[0]), "Bob")
	waitPublished(t, a)
	waitPublished(t, b)
	befriend(t, a, b)
	return a, b, acfg
}

// sendAndWait sends text from a to b and waits until b has it.
func sendAndWait(t *testing.T, from, to *Node, text string) {
	t.Helper()
	ctx := context.Background()
	toID, fromID := meOf(t, to).UserID, meOf(t, from).UserID
	if _, err := from.Send(ctx, toID, text); err != nil {
		t.Fatalf("Send %q: %v", text, err)
	}
	waitFor(t, 30*time.Second, "delivery of "+text, func() bool {
		for _, m := range convHistory(t, to, fromID) {
			if string(m.Body) == text {
				return true
			}
		}
		return false
	})
}

// TestKeyRotation: A and B are friends; A rotates; messages flow both ways
// before and after, B gets the notice, and the safety number does not
// change. Then a key change without a chain holds B's sends until B
// verifies again, and a rolled-back record is ignored.
func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	g, k2 := fixtureKey(t, "alice-2048"), fixtureKey(t, "alice-3072")
	a, b, acfg := directoryFriends(t, g, k2)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	w := watch(t, b)
	safety := func(n *Node, id protocol.ID) string {
		f, err := n.Friend(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return f.SafetyNumber
	}
	sa, sb := safety(a, bID), safety(b, aID)
	if sa == "" || sa != sb {
		t.Fatalf("safety numbers before: %q / %q", sa, sb)
	}
	sendAndWait(t, a, b, "before, a to b")
	sendAndWait(t, b, a, "before, b to a")

	if err := a.RotateKey(ctx); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	if got := unlockedOf(t, a).keys.identity().Public(); !got.Equal(k2.Public()) {
		t.Fatal("A's identity is not the new key")
	}
	if meOf(t, a).UserID != aID {
		t.Fatal("rotation changed A's user ID")
	}
	// B still seals to the old key until it learns the new one: A opens
	// that during the grace period.
	sendAndWait(t, b, a, "right after, b to a")
	sendAndWait(t, a, b, "after, a to b")
	w.waitEvent(t, 30*time.Second, "key rotation notice", isType(EventFriendKeyRotated))
	waitFor(t, 30*time.Second, "B pins the new key", func() bool {
		fe := unlockedOf(t, b).friends.friend(aID)
		return fe != nil && fe.key.Equal(k2.Public())
	})
	sendAndWait(t, b, a, "after, b to a")
	if got := safety(b, aID); got != sb {
		t.Errorf("B's safety number changed with the rotation: %q, was %q", got, sb)
	}
	if got := safety(a, bID); got != sa {
		t.Errorf("A's safety number changed with the rotation: %q, was %q", got, sa)
	}

	// A restart keeps the rotated identity, the chain and the old key.
	closeNode(t, a)
	a = unlockNode(t, acfg)
	as := unlockedOf(t, a)
	if !as.keys.identity().Public().Equal(k2.Public()) || len(as.keys.chain) != 1 || !as.keys.genesis.Equal(g.Public()) || as.keys.oldKey(g.ID()) == nil {
		t.Fatalf("after restart: chain %d, genesis %v", len(as.keys.chain), as.keys.genesis.ID())
	}
	sendAndWait(t, b, a, "after the restart, b to a")
	sendAndWait(t, a, b, "after the restart, a to b")

	t.Run("KeyChangedWithoutChain", func(t *testing.T) {
		// A record for A whose chain forks from the genesis key to a key
		// B never saw: no rotation leads there from B's pinned key.
		k3 := fixtureKey(t, "carol-3072")
		fork, err := protocol.NewRotation(aID, g, k3, 1, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		as := unlockedOf(t, a)
		dev, err := directory.SignDevice(as.pub.hostPriv, aID)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := protocol.GeneratePrekey(k3, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := directory.NewRecord(k3, directory.RecordInput{
			Name: "Alice", Genesis: g.Public(), Chain: []*protocol.Rotation{fork},
			Devices: []directory.Device{dev}, Prekey: &pk.Signed, Seq: uint64(time.Now().UnixMilli()) + 1000, Lifetime: time.Hour,
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		bs := unlockedOf(t, b)
		if !bs.friends.applyRecord(ctx, rec) {
			t.Fatal("record not applied")
		}
		f, err := b.Friend(ctx, aID)
		if err != nil || f.ChangedKey == nil {
			t.Fatalf("friend after a forked key: %+v, %v", f, err)
		}
		w.waitEvent(t, 10*time.Second, "key changed warning", isType(EventFriendKeyChanged))
		if _, err := b.Send(ctx, aID, "held"); !errors.Is(err, ErrKeyChanged) {
			t.Fatalf("Send to a key_changed friend: %v, want ErrKeyChanged", err)
		}
		// A lower sequence number is ignored, whatever it says.
		older, err := directory.NewRecord(k2, directory.RecordInput{
			Name: "Alice", Genesis: g.Public(), Chain: as.keys.chain, Devices: []directory.Device{dev},
			Seq: 5, Lifetime: time.Hour,
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if bs.friends.applyRecord(ctx, older) {
			t.Error("a rolled-back record was applied")
		}
		if err := b.VerifyFriend(ctx, aID, f.SafetyNumber); err != nil { // the new number (TestVerifyNeedsNewSafetyNumber)
			t.Fatal(err)
		}
		f, _ = b.Friend(ctx, aID)
		if f.ChangedKey != nil || !f.Verified || !mustKey(f.PublicKey).Equal(k3.Public()) {
			t.Errorf("after verify: changed %v verified %v", f.ChangedKey != nil, f.Verified)
		}
		if f.SafetyNumber != sb {
			t.Errorf("safety number after a key change = %q, want the genesis one %q", f.SafetyNumber, sb)
		}
		if fs := friendStatus(b, aID); fs != store.FriendAccepted {
			t.Errorf("status %s", fs)
		}
	})
}
