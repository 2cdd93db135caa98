package node

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// hasChain reports whether n holds sender's chain of a group's epoch.
func hasChain(n *Node, id protocol.GroupID, epoch uint64, sender protocol.ID) bool {
	u, err := n.running()
	if err != nil {
		return false
	}
	cs, err := u.st.SenderChains(context.Background(), id, epoch)
	if err != nil {
		return false
	}
	for _, c := range cs {
		if c.Sender() == sender {
			return true
		}
	}
	return false
}

// queuedKinds lists the kinds of the envelopes n's outbox holds for user.
func queuedKinds(tb testing.TB, n *Node, user protocol.ID) []protocol.Kind {
	tb.Helper()
	var out []protocol.Kind
	for _, e := range queuedFor(tb, n, user) {
		env, err := protocol.ParseEnvelope(e.Envelope)
		if err != nil {
			tb.Fatalf("queued entry: %v", err)
		}
		out = append(out, env.Kind)
	}
	return out
}

// TestGroupHandoutToStrangerSurvivesRestart: Bob and Carol are Alice's
// friends, not each other's. Carol is offline when Alice starts a new
// epoch; Bob's new sender key for Carol, sealed to her directory record,
// waits in Bob's outbox. Bob's node restarts; then Carol comes back (at
// new addresses) and gets Bob's key from the outbox's retries.
func TestGroupHandoutToStrangerSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	relays := startRelays(t, 1)
	boot := relays[0].Addrs()[0]
	keys := []*protocol.PrivateKey{fixtureKey(t, "alice-2048"), fixtureKey(t, "bob-2048"), fixtureKey(t, "carol-2048")}
	var cfgs []Config
	var ns []*Node
	for i, name := range []string{"Alice", "Bob", "Carol"} {
		cfg := dirConfig(t, keys[i], boot)
		n := startNode(t, cfg, name)
		waitPublished(t, n)
		cfgs, ns = append(cfgs, cfg), append(ns, n)
	}
	a, b, c := ns[0], ns[1], ns[2]
	befriend(t, a, b)
	befriend(t, a, c)
	ma, mb, mc := meOf(t, a), meOf(t, b), meOf(t, c)
	g, err := a.CreateGroup(ctx, "Hub", []protocol.ID{mb.UserID, mc.UserID})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		waitEpoch(t, n, g.ID, 1)
	}
	waitFor(t, 20*time.Second, "Carol holds Bob's key of epoch 1", func() bool { return hasChain(c, g.ID, 1, mb.UserID) })

	closeNode(t, c)
	ua := unlockedOf(t, a)
	gr, err := ua.st.Group(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ua.groups.changeMembers(ctx, g.ID, gr.State.Name, gr.State.Members); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "Bob's key for Carol queued", func() bool {
		if gb, err := b.Group(ctx, g.ID); err != nil || gb.Epoch != 2 {
			return false
		}
		hs, err := unlockedOf(t, b).st.Handouts(ctx)
		if err != nil || len(hs) != 0 {
			return false
		}
		kinds := queuedKinds(t, b, mc.UserID)
		return len(kinds) == 1 && kinds[0] == protocol.KindSenderKey
	})

	closeNode(t, b)
	b = unlockNode(t, cfgs[1])
	if kinds := queuedKinds(t, b, mc.UserID); len(kinds) != 1 || kinds[0] != protocol.KindSenderKey {
		t.Fatalf("after Bob's restart his outbox holds %v for Carol, want one sender key", kinds)
	}
	c = unlockNode(t, cfgs[2])
	waitPublished(t, c)
	waitEpoch(t, c, g.ID, 2)
	waitFor(t, 60*time.Second, "Carol holds Bob's key of epoch 2", func() bool { return hasChain(c, g.ID, 2, mb.UserID) })
	waitFor(t, 20*time.Second, "Bob's outbox for Carol settled", func() bool { return len(queuedFor(t, b, mc.UserID)) == 0 })
	if !hasChain(c, g.ID, 2, ma.UserID) {
		t.Errorf("Carol lacks Alice's key of epoch 2")
	}
	// Carol reads Bob in the new epoch.
	if _, _, err := b.SendGroup(ctx, g.ID, "bob after the restart"); err != nil {
		t.Fatal(err)
	}
	waitGroupText(t, c, g.ID, "bob after the restart")
	if gb, _ := b.Friend(ctx, mc.UserID); gb.Status == store.FriendAccepted {
		t.Errorf("Bob and Carol became friends")
	}
}

// TestGroupRekeyBatched: a member of a 150-member group takes a new
// state; its sender key goes to the 149 others in batches (a transaction
// each, not one per member), without holding the group (a message is sent
// while the hand-out is under way). The node stops half-way; restarted,
// it queues the rest, and every member gets exactly one key.
func TestGroupRekeyBatched(t *testing.T) {
	const size = 150
	ctx := context.Background()
	cfg := testConfig(t, "alice-2048")
	n := startNode(t, cfg, "Alice")
	u := unlockedOf(t, n)
	admin := fixtureKey(t, "bob-2048")
	others := storedFriends(t, u, admin, size-1)

	// The second batch waits until the node stops.
	batches := make(chan int, 8)
	seal := u.groups.ho.seal
	calls := 0
	u.groups.ho.seal = func(ctx context.Context, bodies map[protocol.Kind][]byte, items []store.HandoutItem) ([]store.OutboxEntry, []store.HandoutItem) {
		calls++
		batches <- calls
		if calls > 1 {
			<-ctx.Done()
			return nil, nil
		}
		return seal(ctx, bodies, items)
	}
	list := []protocol.GroupMember{{User: u.me, Role: protocol.RoleMember}}
	for _, m := range others[1:] {
		list = append(list, protocol.GroupMember{User: m, Role: protocol.RoleMember})
	}
	st, err := protocol.NewGroupState(admin, admin.ID(), "Big", list, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c0, _ := u.st.CommitStats()
	if err := u.groups.receiveState(ctx, st); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		select {
		case got := <-batches:
			if got != want {
				t.Fatalf("batch %d, want %d", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("batch %d not started", want)
		}
	}
	if _, _, err := n.SendGroup(ctx, st.Group, "while keys go out"); err != nil {
		t.Fatalf("SendGroup during the hand-out: %v", err)
	}
	// The first batch is committed while the second is sealed.
	queued := func() int {
		q := 0
		for _, id := range others {
			q += len(queuedFor(t, n, id))
		}
		return q
	}
	waitFor(t, 20*time.Second, "the first batch queued", func() bool { return queued() == handoutBatch })
	c1, _ := u.st.CommitStats()
	// The state with the job, the first batch, the message.
	if c1-c0 > 4 {
		t.Errorf("%d transactions for the state and one batch of %d keys", c1-c0, handoutBatch)
	}
	closeNode(t, n)

	n = unlockNode(t, cfg)
	u = unlockedOf(t, n)
	waitHandedOut(t, u)
	for _, id := range others {
		if kinds := queuedKinds(t, n, id); len(kinds) != 1 || kinds[0] != protocol.KindSenderKey {
			t.Fatalf("queued for a member after the restart: %v, want one sender key", kinds)
		}
	}
}

// storedFriends stores n accepted friends of u and caches them: the first
// is admin, the others keys only (fixture keys shared by made-up user IDs,
// whose devices are nowhere); their couriers are held.
func storedFriends(tb testing.TB, u *unlocked, admin *protocol.PrivateKey, n int) []protocol.ID {
	tb.Helper()
	keys := []*protocol.PublicKey{admin.Public(), fixtureKey(tb, "carol-2048").Public(), fixtureKey(tb, "bob-3072").Public()}
	ids := make([]protocol.ID, n)
	for i := range n {
		id := admin.ID()
		if i > 0 {
			rand.Read(id[:])
		}
		f, err := u.st.PutFriend(context.Background(), store.Friend{UserID: id, PublicKey: keys[i%len(keys)].Bytes(), Status: store.FriendAccepted})
		if err != nil {
			tb.Fatal(err)
		}
		u.friends.cacheFriend(f)
		u.outbox.Hold(id)
		ids[i] = id
	}
	return ids
}

// TestRosterBookCaches: a roster member's record is looked up once and
// used for every hand-out while fresh (its prekey checked once), looked
// up again after a failed dial (forget) or once rosterTTL has passed, and
// a lookup that fails is not cached.
func TestRosterBookCaches(t *testing.T) {
	ctx := context.Background()
	key := fixtureKey(t, "carol-2048")
	pk, err := protocol.GeneratePrekey(key, time.Now().Add(-time.Hour), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := directory.NewRecord(key, directory.RecordInput{Name: "Carol", Seq: 1, Lifetime: time.Hour, Prekey: &pk.Signed}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clock := newRunningClock()
	lookups, down := 0, false
	rb := newRosterBook(func(_ context.Context, id protocol.ID) (*directory.Record, error) {
		lookups++
		if down {
			return nil, fail(ErrUnavailable, "directory down")
		}
		if id != key.ID() {
			return nil, ErrNotFound
		}
		return rec, nil
	}, clock.Now)
	for range 3 {
		e, err := rb.get(ctx, key.ID())
		if err != nil || e.rcpt.Prekey == nil || !e.rcpt.Key.Equal(key.Public()) {
			t.Fatalf("get = %+v, %v", e, err)
		}
	}
	if lookups != 1 {
		t.Fatalf("%d lookups for three hand-outs, want 1", lookups)
	}
	rb.forget(key.ID())
	if _, err := rb.get(ctx, key.ID()); err != nil || lookups != 2 {
		t.Fatalf("after forget: %v, %d lookups", err, lookups)
	}
	clock.Advance(rosterTTL)
	down = true
	if _, err := rb.get(ctx, key.ID()); !isErr(err, ErrUnavailable) || lookups != 3 {
		t.Fatalf("stale entry with the directory down: %v, %d lookups", err, lookups)
	}
	if _, err := rb.get(ctx, key.ID()); err == nil || lookups != 4 {
		t.Fatalf("a failed lookup was cached: %v, %d lookups", err, lookups)
	}
	if _, err := rb.get(ctx, fixtureKey(t, "bob-2048").ID()); err == nil {
		t.Fatal("a user without a record was found")
	}
}

// TestGroupEarlyKeysOfLargeGroup: in a rekey of a large group, most
// members' new keys can arrive before the admin's state. 300 of them
// (more than the 256 kept before) wait for the state and are all stored
// when it comes.
func TestGroupEarlyKeysOfLargeGroup(t *testing.T) {
	const size = 302
	ctx := context.Background()
	n := startNode(t, testConfig(t, "alice-2048"), "Alice")
	u := unlockedOf(t, n)
	admin := fixtureKey(t, "bob-2048")
	others := storedFriends(t, u, admin, size-1)
	list := []protocol.GroupMember{{User: u.me, Role: protocol.RoleMember}}
	for _, m := range others[1:] {
		list = append(list, protocol.GroupMember{User: m, Role: protocol.RoleMember})
	}
	st, err := protocol.NewGroupState(admin, admin.ID(), "Big", list, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range others[1:] {
		c, err := protocol.NewSenderChain(st, m)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Distribution(st)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.groups.receiveDirect(ctx, m, protocol.KindSenderKey, d.Marshal()); err != nil {
			t.Fatalf("early key: %v", err)
		}
	}
	if err := u.groups.receiveState(ctx, st); err != nil {
		t.Fatal(err)
	}
	// Every member's key but the admin's (not sent here), and our own.
	cs, err := u.st.SenderChains(ctx, st.Group, st.Epoch)
	if err != nil || len(cs) != size-1 {
		t.Fatalf("%d chains stored, %v; want %d", len(cs), err, size-1)
	}
	waitHandedOut(t, u)
}

// TestGroupEarlyKeySurvivesRestart: a member's key that comes before the
// state of its epoch (its sender's outbox has settled it) is kept across
// a restart of the node, and stored when the state arrives.
func TestGroupEarlyKeySurvivesRestart(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "alice-2048")
	n := startNode(t, cfg, "Alice")
	u := unlockedOf(t, n)
	admin := fixtureKey(t, "bob-2048")
	others := storedFriends(t, u, admin, 3)
	list := []protocol.GroupMember{{User: u.me, Role: protocol.RoleMember}}
	for _, m := range others[1:] {
		list = append(list, protocol.GroupMember{User: m, Role: protocol.RoleMember})
	}
	st, err := protocol.NewGroupState(admin, admin.ID(), "Small", list, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := protocol.NewSenderChain(st, others[1])
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Distribution(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.groups.receiveDirect(ctx, others[1], protocol.KindSenderKey, d.Marshal()); err != nil {
		t.Fatal(err)
	}
	closeNode(t, n)

	n = unlockNode(t, cfg)
	u = unlockedOf(t, n)
	if err := u.groups.receiveState(ctx, st); err != nil {
		t.Fatal(err)
	}
	// The groups part takes up the kept keys when it starts, which may
	// be after the state came.
	waitFor(t, 10*time.Second, "the early key stored after the restart", func() bool {
		return hasChain(n, st.Group, st.Epoch, others[1])
	})
	waitFor(t, 10*time.Second, "no early key left after its state", func() bool {
		ks, err := u.st.EarlyKeys(ctx)
		return err == nil && len(ks) == 0
	})
}
