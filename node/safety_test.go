package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
)

// TestVerifyNeedsNewSafetyNumber: after a chained rotation the safety
// number stays and the friend shows as rotated; after a key change without
// a chain the number is a new one, and only that number accepts the key:
// no number, the old number, or a number shown before a further change
// are refused, and sends stay held.
func TestVerifyNeedsNewSafetyNumber(t *testing.T) {
	ctx := context.Background()
	g, k2, bKey := fixtureKey(t, "alice-2048"), fixtureKey(t, "alice-3072"), fixtureKey(t, "bob-2048")
	a, b, _ := directoryFriends(t, g, k2)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	friend := func() Friend {
		t.Helper()
		f, err := b.Friend(ctx, aID)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	genesisNumber := protocol.SafetyNumber(bID, bKey.Public(), aID, g.Public())
	if f := friend(); f.SafetyNumber != genesisNumber || f.KeyRotated {
		t.Fatalf("before: number %q rotated %v, want %q and false", f.SafetyNumber, f.KeyRotated, genesisNumber)
	}

	// A chained rotation: same number, shown as rotated.
	if err := a.RotateKey(ctx); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	sendAndWait(t, a, b, "after the rotation")
	waitFor(t, 30*time.Second, "B pins the rotated key", func() bool {
		fe := unlockedOf(t, b).friends.friend(aID)
		return fe != nil && fe.key.Equal(k2.Public())
	})
	if f := friend(); f.SafetyNumber != genesisNumber || !f.KeyRotated {
		t.Fatalf("after a chained rotation: number %q rotated %v, want %q and true", f.SafetyNumber, f.KeyRotated, genesisNumber)
	}
	if err := b.VerifyFriend(ctx, aID, genesisNumber); err != nil {
		t.Fatalf("VerifyFriend with the current number: %v", err)
	}

	// A key change without a chain from the pinned key: a record whose
	// chain forks from the genesis key to a key B never saw.
	forked := func(key *protocol.PrivateKey, seq uint64) *directory.Record {
		t.Helper()
		link, err := protocol.NewRotation(aID, g, key, 1, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		dev, err := directory.SignDevice(unlockedOf(t, a).pub.hostPriv, aID)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := directory.NewRecord(key, directory.RecordInput{
			Name: "Alice", Genesis: g.Public(), Chain: []*protocol.Rotation{link},
			Devices: []directory.Device{dev}, Seq: seq, Lifetime: time.Hour,
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	bs := unlockedOf(t, b)
	seq := uint64(time.Now().UnixMilli()) + 1000
	k3 := fixtureKey(t, "carol-3072")
	if !bs.friends.applyRecord(ctx, forked(k3, seq)) {
		t.Fatal("forked record not applied")
	}
	f := friend()
	newNumber := protocol.ChangedKeySafetyNumber(bID, bKey.Public(), aID, k3.Public())
	if f.ChangedKey == nil || f.SafetyNumber != newNumber || f.SafetyNumber == genesisNumber {
		t.Fatalf("after a key change: changed %v, number %q, want the new number %q", f.ChangedKey != nil, f.SafetyNumber, newNumber)
	}
	for name, number := range map[string][]string{
		"no number":                  nil,
		"the old number":             {genesisNumber},
		"a made-up number":           {"123"},
		"k3 under the genesis label": {protocol.SafetyNumber(bID, bKey.Public(), aID, k3.Public())},
	} {
		if err := b.VerifyFriend(ctx, aID, number...); !errors.Is(err, ErrSafetyNumber) {
			t.Errorf("VerifyFriend with %s: %v, want ErrSafetyNumber", name, err)
		}
	}
	if f := friend(); f.ChangedKey == nil || !mustKey(f.PublicKey).Equal(k2.Public()) {
		t.Fatal("a refused verification accepted the new key")
	}
	if _, err := b.Send(ctx, aID, "held"); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("Send after a refused verification: %v, want ErrKeyChanged", err)
	}

	// The key changes again after the number was shown: the number shown
	// no longer accepts anything.
	k4 := fixtureKey(t, "carol-2048")
	if !bs.friends.applyRecord(ctx, forked(k4, seq+1)) {
		t.Fatal("second forked record not applied")
	}
	if err := b.VerifyFriend(ctx, aID, newNumber); !errors.Is(err, ErrSafetyNumber) {
		t.Fatalf("VerifyFriend with the number of the key before: %v, want ErrSafetyNumber", err)
	}
	f = friend()
	if want := protocol.ChangedKeySafetyNumber(bID, bKey.Public(), aID, k4.Public()); f.SafetyNumber != want {
		t.Fatalf("number after the second change %q, want %q", f.SafetyNumber, want)
	}

	// The number shown now accepts the key it was computed over.
	if err := b.VerifyFriend(ctx, aID, f.SafetyNumber); err != nil {
		t.Fatalf("VerifyFriend with the new number: %v", err)
	}
	f = friend()
	if f.ChangedKey != nil || !f.Verified || !mustKey(f.PublicKey).Equal(k4.Public()) {
		t.Fatalf("after verifying: changed %v verified %v", f.ChangedKey != nil, f.Verified)
	}
}
