package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/node/grouprelay"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestGroupRelayReachedThroughAdmin: a member with no bootstrap peer and
// no relay of its own posts through the group's relay (the admin's) and,
// after a restart with the admin gone, catches up from that relay alone:
// its node reaches the relay through what it knows of the admin, a
// friend (the circuit addresses of the admin's card, and the admin's
// mailbox relays that its outbox deposits at).
func TestGroupRelayReachedThroughAdmin(t *testing.T) {
	relay := startGroupRelay(t, t.TempDir(), "", newRunningClock(), grouprelay.Limits{})
	cfgA := dirConfig(t, fixtureKey(t, "alice-2048"), relay.Addrs()[0])
	cfgB := dirConfig(t, fixtureKey(t, "bob-2048"))
	a := startNode(t, cfgA, "Alice")
	b := startNode(t, cfgB, "Bob")
	g, gr := relayedGroup(t, relay, a, b)
	ctx := context.Background()
	topic := protocol.Topic(gr.State)
	if _, _, err := b.SendGroup(ctx, g.ID, "bob, before"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the relay stores Bob's message", func() bool { return relay.srv.HeldOn(topic) == 1 })

	closeNode(t, b)
	const away = 3
	for i := range away {
		if _, _, err := a.SendGroup(ctx, g.ID, fmt.Sprintf("while bob was away %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the relay stores Alice's messages", func() bool { return relay.srv.HeldOn(topic) == 1+away })
	closeNode(t, a)

	b = unlockNode(t, cfgB)
	for i := range away {
		waitGroupText(t, b, g.ID, fmt.Sprintf("while bob was away %d", i))
	}
}

// relayedGroup befriends a and b, has a create a group of the two, and
// waits until both are on its first epoch and relay carries it with both
// members' keys; it returns the group and a's stored copy.
func relayedGroup(t *testing.T, relay *groupRelay, a, b *Node) (GroupInfo, *store.Group) {
	t.Helper()
	befriend(t, a, b)
	ctx := context.Background()
	g, err := a.CreateGroup(ctx, "relayed", []protocol.ID{meOf(t, b).UserID})
	if err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, a, g.ID, 1)
	waitEpoch(t, b, g.ID, 1)
	gr, err := unlockedOf(t, a).st.Group(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	relay.waitTicket(t, gr.State, 2)
	return g, gr
}
