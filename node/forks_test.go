package node

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	record "github.com/libp2p/go-libp2p-record"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// aliceRecord signs a record for the user of key (who never rotated) at
// seq, listing the devices of who (none when who is nil).
func aliceRecord(t *testing.T, key *protocol.PrivateKey, who *unlocked, name string, seq uint64) *directory.Record {
	t.Helper()
	in := directory.RecordInput{Name: name, Seq: seq, Lifetime: time.Hour}
	if who != nil {
		dev, err := directory.SignDevice(who.pub.hostPriv, who.me)
		if err != nil {
			t.Fatal(err)
		}
		in.Devices = []directory.Device{dev}
	}
	rec, err := directory.NewRecord(key, in, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// checkHeldThenReleased checks that sends from n to id are held with
// ErrKeyFork, verifies id again, and checks that a message then arrives.
func checkHeldThenReleased(t *testing.T, n, to *Node, id protocol.ID) {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Send(ctx, id, "held"); !errors.Is(err, ErrKeyFork) {
		t.Fatalf("Send to a forked friend: %v, want ErrKeyFork", err)
	}
	if err := n.VerifyFriend(ctx, id); err != nil {
		t.Fatalf("VerifyFriend: %v", err)
	}
	f, err := n.Friend(ctx, id)
	if err != nil || f.Forked || !f.Verified {
		t.Fatalf("after verifying again: forked %v verified %v, %v", f.Forked, f.Verified, err)
	}
	sendAndWait(t, n, to, "after comparing safety numbers again")
}

// TestKeyForkRecord: B's friend A has a key that signs two different
// records with one sequence number. B keeps both as evidence, keeps the
// first, warns (key_fork), holds sends until B verifies A again, and does
// not hold them again for the same evidence.
func TestKeyForkRecord(t *testing.T) {
	ctx := context.Background()
	g := fixtureKey(t, "alice-2048")
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID := meOf(t, a).UserID
	as, bs := unlockedOf(t, a), unlockedOf(t, b)
	if err := b.VerifyFriend(ctx, aID); err != nil {
		t.Fatal(err)
	}
	w := watch(t, b)
	seq := uint64(time.Now().UnixMilli()) + 1_000_000
	honest := aliceRecord(t, g, as, "Alice", seq)
	if !bs.friends.applyRecord(ctx, honest) {
		t.Fatal("honest record not applied")
	}
	// The same statement signed again is the same history.
	if bs.friends.applyRecord(ctx, aliceRecord(t, g, as, "Alice", seq)) {
		t.Fatal("the honest record signed again was taken for news")
	}
	fork := aliceRecord(t, g, nil, "Alice (elsewhere)", seq)
	if !bs.friends.applyRecord(ctx, fork) {
		t.Fatal("forking record not taken as evidence")
	}
	ev := w.waitEvent(t, 10*time.Second, "key_fork event", isType(EventKeyFork))
	if ev.Friend.UserID != aID || !ev.Friend.Forked {
		t.Fatalf("key_fork event friend: %+v", ev.Friend.Friend)
	}
	f, err := b.Friend(ctx, aID)
	if err != nil || !f.Forked || f.Verified || !bytes.Equal(f.Record, honest.Marshal()) || f.Name != "Alice" {
		t.Fatalf("friend after the fork: forked %v verified %v first record kept %v, %v",
			f.Forked, f.Verified, bytes.Equal(f.Record, honest.Marshal()), err)
	}
	forks, err := b.KeyForks(ctx, aID)
	if err != nil || len(forks) != 1 {
		t.Fatalf("evidence: %d, %v; want 1", len(forks), err)
	}
	if k := forks[0]; k.Kind != store.ForkRecord || k.Seq != seq || !bytes.Equal(k.First, honest.Marshal()) || !bytes.Equal(k.Second, fork.Marshal()) {
		t.Fatalf("evidence = %s seq %d, sides kept %v %v", k.Kind, k.Seq, bytes.Equal(k.First, honest.Marshal()), bytes.Equal(k.Second, fork.Marshal()))
	}
	if bs.friends.applyRecord(ctx, fork) {
		t.Error("the same fork, seen again, changed something")
	}
	checkHeldThenReleased(t, b, a, aID)
	// Evidence seen before does not hold sends again once verified.
	if bs.friends.applyRecord(ctx, fork) {
		t.Error("old evidence held sends again")
	}
	if f, _ := b.Friend(ctx, aID); f.Forked {
		t.Error("old evidence marked the friend forked again")
	}
	if forks, _ := b.KeyForks(ctx, aID); len(forks) != 1 {
		t.Errorf("evidence kept %d times", len(forks))
	}
}

// TestKeyForkCard: A rotated from g to k2, and B pinned k2 from A's card.
// A second device holding A's keys tells another history (g to k3, then
// k3 to k2) on the card of a contact request signed by k2: two rotations
// at sequence number 1. B keeps both as evidence and holds sends.
func TestKeyForkCard(t *testing.T) {
	ctx := context.Background()
	g, k2, k3 := fixtureKey(t, "alice-2048"), fixtureKey(t, "alice-3072"), fixtureKey(t, "carol-2048")
	a, b, aID, mb, bs := rotatedFriends(t, g, k2)
	honestRot := bs.friends.friend(aID).card.Chain[0]

	ecfg := testConfig(t, "alice-2048")
	ecfg.NewKey = keyQueue(g, k3, k2)
	evil := startNode(t, ecfg, "Alice")
	for range 2 {
		if err := evil.RotateKey(ctx); err != nil {
			t.Fatalf("evil RotateKey: %v", err)
		}
	}
	if meOf(t, evil).UserID != aID {
		t.Fatal("the second device is not A")
	}
	w := watch(t, b)
	if _, err := evil.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatalf("the second device asks B: %v", err)
	}
	ev := w.waitEvent(t, 30*time.Second, "key_fork event", isType(EventKeyFork))
	if ev.Friend.UserID != aID || !ev.Friend.Forked {
		t.Fatalf("key_fork event friend: %+v", ev.Friend.Friend)
	}
	forks, err := b.KeyForks(ctx, aID)
	if err != nil || len(forks) != 1 {
		t.Fatalf("evidence: %d, %v; want 1", len(forks), err)
	}
	k := forks[0]
	if k.Kind != store.ForkRotation || k.Seq != 1 || k.Source != "card" || !bytes.Equal(k.First, honestRot.Marshal()) {
		t.Fatalf("evidence = %s seq %d from %s, first side honest %v", k.Kind, k.Seq, k.Source, bytes.Equal(k.First, honestRot.Marshal()))
	}
	other, err := protocol.ParseRotation(k.Second)
	if err != nil || !other.NewKey.Equal(k3.Public()) {
		t.Fatalf("second side: %v", err)
	}
	// The card that forks is not applied: B keeps A's honest card.
	if fe := bs.friends.friend(aID); fe.card == nil || !fe.card.Chain[0].NewKey.Equal(k2.Public()) {
		t.Fatal("the forking card replaced the honest one")
	}
	checkHeldThenReleased(t, b, a, aID)
}

// TestKeyForkDirectoryLookup: two DHT servers hold two different valid
// records of A with the top sequence number. A lookup sees both
// (directory.LookupAll), and B's recheck of A keeps both as evidence.
func TestKeyForkDirectoryLookup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	relays := startRelays(t, 2)
	g := fixtureKey(t, "alice-2048")
	a := startNode(t, dirConfig(t, g, relays[0].Addrs()[0]), "Alice")
	b := startNode(t, dirConfig(t, fixtureKey(t, "bob-2048"), relays[1].Addrs()[0]), "Bob")
	waitPublished(t, a)
	waitPublished(t, b)
	befriend(t, a, b)
	aID := meOf(t, a).UserID
	as, bs := unlockedOf(t, a), unlockedOf(t, b)
	pm, err := dhtpb.NewProtocolMessenger(bs.dir.Kad().MessageSender())
	if err != nil {
		t.Fatal(err)
	}
	// put stores one record on one relay only.
	put := func(r *Relay, rec *directory.Record) {
		t.Helper()
		if err := pm.PutValue(ctx, r.ID(), record.MakePutRecord(directory.Key(aID), rec.Marshal())); err != nil {
			t.Fatalf("put on relay %s: %v", r.ID(), err)
		}
	}
	pair := func(seq uint64) (*directory.Record, *directory.Record) {
		honest := aliceRecord(t, g, as, "Alice", seq)
		fork := aliceRecord(t, g, nil, "Alice (elsewhere)", seq)
		put(relays[0], honest)
		put(relays[1], fork)
		return honest, fork
	}
	sameSides := func(x, y, honest, fork *directory.Record) bool {
		got := [][]byte{x.Marshal(), y.Marshal()}
		return slices.ContainsFunc(got, func(b []byte) bool { return bytes.Equal(b, honest.Marshal()) }) &&
			slices.ContainsFunc(got, func(b []byte) bool { return bytes.Equal(b, fork.Marshal()) })
	}

	// The directory shows both sides: the best record and the other.
	seq := uint64(time.Now().UnixMilli()) + 1_000_000
	honest, fork := pair(seq)
	best, forks, err := bs.dir.LookupAll(ctx, aID)
	if err != nil {
		t.Fatalf("LookupAll: %v", err)
	}
	if best.Seq() != seq || len(forks) != 1 || !sameSides(best, forks[0], honest, fork) {
		t.Fatalf("LookupAll: best seq %d, %d forks; want seq %d and the other side", best.Seq(), len(forks), seq)
	}

	// B's recheck of A finds a new pair and keeps it as evidence.
	w := watch(t, b)
	honest, fork = pair(seq + 1)
	bs.friends.refreshFriend(ctx, aID)
	w.waitEvent(t, 10*time.Second, "key_fork event", isType(EventKeyFork))
	ev, err := b.KeyForks(ctx, aID)
	if err != nil || len(ev) != 1 || ev[0].Kind != store.ForkRecord || ev[0].Seq != seq+1 {
		t.Fatalf("evidence: %+v, %v", ev, err)
	}
	first, err1 := directory.ParseRecord(ev[0].First)
	second, err2 := directory.ParseRecord(ev[0].Second)
	if err1 != nil || err2 != nil || !sameSides(first, second, honest, fork) {
		t.Fatalf("evidence sides are not the two records (%v, %v)", err1, err2)
	}
	if _, err := b.Send(ctx, aID, "held"); !errors.Is(err, ErrKeyFork) {
		t.Fatalf("Send after a directory fork: %v, want ErrKeyFork", err)
	}
}

// TestKeyForkCardBesidePinned: A rotated from g to k2, and B pinned k2. A
// second device holding A's genesis key tells another history, g to k3,
// on the card of a contact request signed by k3: its chain does not pass
// through k2, so it proves no rotation B could follow, but it is a second
// rotation at sequence number 1 signed by A's genesis key. B keeps it as
// evidence and holds sends; k3 is never pinned.
func TestKeyForkCardBesidePinned(t *testing.T) {
	ctx := context.Background()
	g, k2, k3 := fixtureKey(t, "alice-2048"), fixtureKey(t, "alice-3072"), fixtureKey(t, "carol-2048")
	a, b, aID, mb, bs := rotatedFriends(t, g, k2)

	ecfg := testConfig(t, "alice-2048")
	ecfg.NewKey = keyQueue(g, k3)
	evil := startNode(t, ecfg, "Alice")
	if err := evil.RotateKey(ctx); err != nil {
		t.Fatalf("evil RotateKey: %v", err)
	}
	w := watch(t, b)
	if _, err := evil.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatalf("the second device asks B: %v", err)
	}
	w.waitEvent(t, 30*time.Second, "key_fork event", isType(EventKeyFork))
	forks, err := b.KeyForks(ctx, aID)
	if err != nil || len(forks) != 1 || forks[0].Kind != store.ForkRotation || forks[0].Seq != 1 {
		t.Fatalf("evidence: %+v, %v; want one rotation fork at seq 1", forks, err)
	}
	if fe := bs.friends.friend(aID); !fe.key.Equal(k2.Public()) {
		t.Fatal("the forking card's key was pinned")
	}
	checkHeldThenReleased(t, b, a, aID)
}

// rotatedFriends starts A (genesis key g) and B as friends, has A rotate
// to k2, and waits until B pinned k2 from A's new card.
func rotatedFriends(t *testing.T, g, k2 *protocol.PrivateKey) (a, b *Node, aID protocol.ID, mb Me, bs *unlocked) {
	t.Helper()
	acfg := testConfig(t, "alice-2048")
	acfg.NewKey = keyQueue(g, k2)
	a = startNode(t, acfg, "Alice")
	b = startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	aID, mb = meOf(t, a).UserID, meOf(t, b)
	bs = unlockedOf(t, b)
	if err := a.RotateKey(context.Background()); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	waitFor(t, 30*time.Second, "B pins A's new key from her card", func() bool {
		fe := bs.friends.friend(aID)
		return fe != nil && fe.key.Equal(k2.Public()) && fe.card != nil && len(fe.card.Chain) == 1
	})
	return a, b, aID, mb, bs
}
