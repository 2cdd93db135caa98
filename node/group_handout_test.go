package node

import (
	"context"
	"testing"
	"time"

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
