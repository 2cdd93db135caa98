package node

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
)

// TestStaleRecordAfterRotation: B follows A's rotation from A's new card;
// a directory record A signed before the rotation (old key, a sequence
// number B has not seen) arrives afterwards. It is A's past, not a key
// change: B keeps the new key and keeps sending.
func TestStaleRecordAfterRotation(t *testing.T) {
	ctx := context.Background()
	g, k2 := fixtureKey(t, "alice-2048"), fixtureKey(t, "alice-3072")
	acfg := testConfig(t, "alice-2048")
	acfg.NewKey = keyQueue(g, k2)
	a := startNode(t, acfg, "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID := meOf(t, a).UserID

	// A record as A published it before rotating: the genesis key, no
	// chain, a sequence number from that time.
	as := unlockedOf(t, a)
	dev, err := directory.SignDevice(as.pub.hostPriv, aID)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := protocol.GeneratePrekey(g, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old, err := directory.NewRecord(g, directory.RecordInput{
		Name: "Alice", Devices: []directory.Device{dev}, Prekey: &pk.Signed,
		Seq: uint64(time.Now().UnixMilli()), Lifetime: time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	if err := a.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	bs := unlockedOf(t, b)
	waitFor(t, 30*time.Second, "B pins A's new key from the new card", func() bool {
		fe := bs.friends.friend(aID)
		return fe != nil && fe.key.Equal(k2.Public())
	})
	if bs.friends.applyRecord(ctx, old) {
		t.Error("a record from before the rotation was applied")
	}
	f, err := b.Friend(ctx, aID)
	if err != nil {
		t.Fatal(err)
	}
	if f.ChangedKey != nil || !mustKey(f.PublicKey).Equal(k2.Public()) {
		t.Fatalf("after the stale record: changed key %v, pinned the new key %v", f.ChangedKey != nil, mustKey(f.PublicKey).Equal(k2.Public()))
	}
	sendAndWait(t, b, a, "still friends after the stale record")
}
