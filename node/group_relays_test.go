package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/node/grouprelay"
	"github.com/parley-chat/parley/protocol"
)

// groupRelay is a relay (StartRelay) with its group relay service, on a
// data directory that survives a restart.
type groupRelay struct {
	*Relay
	srv   *grouprelay.Server
	dir   string
	clock *testClock
	lim   grouprelay.Limits
	stop  func()
}

// startGroupRelay starts a relay and its group relay on dir, listening on
// listen (loopback, any port if empty), with the given clock and limits;
// it stops when the test ends.
func startGroupRelay(tb testing.TB, dir, listen string, clock *testClock, lim grouprelay.Limits) *groupRelay {
	tb.Helper()
	if listen == "" {
		listen = "/ip4/127.0.0.1/tcp/0"
	}
	r, err := StartRelay(context.Background(), RelayConfig{DataDir: dir, Listen: []string{listen}, Logger: testLogger(tb)})
	if err != nil {
		tb.Fatalf("StartRelay: %v", err)
	}
	srv, err := grouprelay.NewServer(r.Host(), grouprelay.Config{
		Dir: filepath.Join(dir, "grouprelay"), PubSub: r.PubSub(), Limits: lim, Now: clock.Now, Logger: testLogger(tb),
	})
	if err != nil {
		r.Close()
		tb.Fatalf("grouprelay.NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	gr := &groupRelay{Relay: r, srv: srv, dir: dir, clock: clock, lim: lim}
	stopped := false
	gr.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("group relay Serve: %v", err)
		}
		if err := errors.Join(srv.Close(), r.Close()); err != nil {
			tb.Errorf("closing the relay: %v", err)
		}
	}
	tb.Cleanup(gr.stop)
	return gr
}

// restart stops the relay and starts it again on the same directory and
// address.
func (gr *groupRelay) restart(tb testing.TB) *groupRelay {
	tb.Helper()
	listen := (&mailRelay{Relay: gr.Relay}).listenAddr(tb)
	gr.stop()
	return startGroupRelay(tb, gr.dir, listen, gr.clock, gr.lim)
}

func (gr *groupRelay) info() peer.AddrInfo {
	return peer.AddrInfo{ID: gr.ID(), Addrs: gr.Host().Addrs()}
}

// useRelay makes r the relay of every member (as their mailbox relay
// would be) and connects them to it; call it before any group exists.
func (net *groupNet) useRelay(r *groupRelay) {
	for _, m := range net.members {
		m.g.relays = newGroupRelays([]peer.AddrInfo{r.info()})
		if err := m.h.Connect(context.Background(), r.info()); err != nil {
			net.t.Fatal(err)
		}
	}
}

// cutOff disconnects member i from everyone, relay included, so that
// nobody dials it again until it is connected anew.
func (net *groupNet) cutOff(i int, r *groupRelay) {
	net.t.Helper()
	late := net.members[i]
	for j, m := range net.members {
		if j == i {
			continue
		}
		late.h.Peerstore().ClearAddrs(m.h.ID())
		m.h.Peerstore().ClearAddrs(late.h.ID())
		_ = late.h.Network().ClosePeer(m.h.ID())
	}
	r.Host().Peerstore().ClearAddrs(late.h.ID())
	_ = late.h.Network().ClosePeer(r.ID())
	waitFor(net.t, 10*time.Second, fmt.Sprintf("member %d is cut off", i), func() bool {
		return len(late.h.Network().Peers()) == 0
	})
}

// TestGroupRelayCarriesAndCatchesUp: a relay chosen by the group's admin
// gets a ticket with every member's chain key, is on the topic and stores
// what members post; a member who was away while the others posted 20
// messages, and who comes back when those others are gone, catches up
// from the relay alone. The relay keeps the traffic over a restart and
// drops it after the retention (an injected clock).
func TestGroupRelayCarriesAndCatchesUp(t *testing.T) {
	clock := newRunningClock()
	relay := startGroupRelay(t, t.TempDir(), "", clock, grouprelay.Limits{})
	net := newGroupNet(t, 3, false)
	net.useRelay(relay)
	ctx := context.Background()
	st, err := net.members[0].g.createGroup(ctx, "relayed", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	relay.waitTicket(t, st, 3)
	name := protocol.Topic(st)

	// (a) On the topic, storing.
	want := map[protocol.MsgID]string{}
	for i := range 3 {
		body := fmt.Sprintf("before %d", i)
		sent, err := net.members[i].g.sendGroup(ctx, st.Group, body)
		if err != nil {
			t.Fatal(err)
		}
		want[sent.ID] = body
	}
	for i := range 3 {
		net.waitHistory(i, st.Group, want)
	}
	waitFor(t, 20*time.Second, "the relay stores the 3 messages", func() bool { return relay.srv.HeldOn(name) == 3 })

	// (b) Member 2 away; members 0 and 1 post 20 and go.
	net.cutOff(2, relay)
	for i := range 20 {
		body := fmt.Sprintf("missed %d", i)
		sent, err := net.members[i%2].g.sendGroup(ctx, st.Group, body)
		if err != nil {
			t.Fatal(err)
		}
		want[sent.ID] = body
	}
	net.waitHistory(0, st.Group, want)
	net.waitHistory(1, st.Group, want)
	waitFor(t, 20*time.Second, "the relay stores the 20 more", func() bool { return relay.srv.HeldOn(name) == 23 })
	net.members[0].stop()
	net.members[1].stop()

	// (e) The relay restarts with what it held, and is on the topic again.
	relay = relay.restart(t)
	if n := relay.srv.HeldOn(name); n != 23 {
		t.Fatalf("after a restart the relay holds %d messages, want 23", n)
	}
	relay.waitTicket(t, st, 3)

	late := net.members[2]
	if err := late.h.Connect(ctx, relay.info()); err != nil {
		t.Fatal(err)
	}
	net.waitHistory(2, st.Group, want)
	if late.h.Network().Connectedness(net.members[0].h.ID()) == network.Connected ||
		late.h.Network().Connectedness(net.members[1].h.ID()) == network.Connected {
		t.Fatal("the member caught up while connected to another member")
	}

	// Expiry: 15 days later the relay holds nothing.
	clock.Advance(15 * 24 * time.Hour)
	relay.srv.Sweep()
	if n, b := relay.srv.Held(); n != 0 || b != 0 {
		t.Fatalf("after the retention the relay holds %d messages (%d bytes)", n, b)
	}
}

// hostile is a gossipsub peer outside the group, connected to the relay.
func hostilePeer(t *testing.T, r *groupRelay) *groupMember {
	t.Helper()
	hk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHost(hostSpec{key: hk, listen: []string{"/ip4/127.0.0.1/tcp/0"}, low: 50, high: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); h.Close() })
	ps, err := newGroupPubSub(ctx, h, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, r.info()); err != nil {
		t.Fatal(err)
	}
	return &groupMember{h: h, g: &groups{ps: ps}}
}

// publishAt publishes raw on topic from p once the relay is a peer of
// the topic there.
func publishAt(t *testing.T, p *groupMember, r *groupRelay, topic string, raw ...[]byte) {
	t.Helper()
	tp, err := p.g.ps.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the relay is on the topic at the hostile peer", func() bool {
		return slices.Contains(tp.ListPeers(), r.ID())
	})
	for _, b := range raw {
		if err := tp.Publish(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGroupRelayRefusesRemovedKey: after a removal, the relay carries the
// new epoch's topic under a ticket that follows the old one, and rejects
// there a message signed with the removed member's old chain key (of the
// old epoch, or claiming the new one), storing nothing; it leaves the old
// topic after the grace.
func TestGroupRelayRefusesRemovedKey(t *testing.T) {
	relay := startGroupRelay(t, t.TempDir(), "", newRunningClock(), grouprelay.Limits{Grace: time.Second})
	net := newGroupNet(t, 3, false)
	net.useRelay(relay)
	ctx := context.Background()
	admin, gone := net.members[0], net.members[2]
	st, err := admin.g.createGroup(ctx, "removal", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	relay.waitTicket(t, st, 3)
	old := relay.waitIssued(t, admin, st)
	stay := slices.DeleteFunc(slices.Clone(st.Members), func(m protocol.GroupMember) bool { return m.User == gone.key.ID() })
	st2, err := admin.g.changeMembers(ctx, st.Group, st.Name, stay)
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st2)
	relay.waitTicket(t, st2, 2)
	next := relay.srv.Ticket(protocol.Topic(st2))
	if h := old.Hash(); !slices.Equal(next.Previous, h[:]) {
		t.Fatal("the new epoch's ticket does not follow the old one")
	}
	waitFor(t, 20*time.Second, "the relay leaves the old topic after the grace", func() bool {
		return !slices.Contains(relay.srv.Topics(), protocol.Topic(st))
	})

	ownOld, err := gone.st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	m1, _, err := ownOld.Seal(protocol.KindText, []byte("still here?"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The same chain, claiming the new epoch: its signature holds over
	// the header it signs, but the chain is not in the new ticket.
	forged, err := protocol.ParseGroupMessage(m1.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	_, rejectedBefore, _ := relay.srv.Validated()
	heldBefore, _ := relay.srv.Held()
	forged.Epoch = st2.Epoch
	publishAt(t, hostilePeer(t, relay), relay, protocol.Topic(st2), m1.Marshal(), forged.Marshal())
	waitFor(t, 20*time.Second, "the relay rejects both", func() bool {
		_, rejected, _ := relay.srv.Validated()
		return rejected-rejectedBefore >= 2
	})
	if n, _ := relay.srv.Held(); n != heldBefore || relay.srv.HeldOn(protocol.Topic(st2)) != 0 {
		t.Fatalf("the relay stored a removed member's message: %d held, %d before", n, heldBefore)
	}

	// The members still talk, through the relay too.
	sent, err := admin.g.sendGroup(ctx, st2.Group, "after the removal")
	if err != nil {
		t.Fatal(err)
	}
	net.waitHistory(1, st2.Group, map[protocol.MsgID]string{sent.ID: "after the removal"})
	waitFor(t, 20*time.Second, "the relay stores the new epoch's message", func() bool {
		return relay.srv.HeldOn(protocol.Topic(st2)) == 1
	})
}

// TestGroupRelayTicketRefused: forged tickets are refused with their
// typed errors and change nothing at the relay.
func TestGroupRelayTicketRefused(t *testing.T) {
	relay := startGroupRelay(t, t.TempDir(), "", newRunningClock(), grouprelay.Limits{})
	net := newGroupNet(t, 2, false)
	net.useRelay(relay)
	ctx := context.Background()
	admin, member := net.members[0], net.members[1]
	st, err := admin.g.createGroup(ctx, "forgeries", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	relay.waitTicket(t, st, 2)
	real := relay.waitIssued(t, admin, st)
	// A kick with nothing new makes no new ticket: the relay keeps the
	// same one.
	admin.g.relayTicket(st.Group)
	if again, err := admin.g.makeTicket(ctx, st.Group, true); err != nil || again.Hash() != real.Hash() {
		t.Fatalf("the admin's ticket of the same keys changed: %v", err)
	}

	forger := newForger(t)
	update := forger.sign(&protocol.RelayTicket{ // an update by a key that is not the ticket's admin
		// Issued after real, so that it is refused for its signer, not
		// as stale.
		Version: real.Version, Proof: real.Proof, Epoch: real.Epoch, Issued: real.Issued + time.Hour.Milliseconds(),
		Keys: forger.withKey(real.Keys), Members: uint32(len(real.Keys) + 1),
	})
	tampered := *real
	tampered.Issued++
	other := protocol.TopicProof{1}
	lineage := forger.sign(&protocol.RelayTicket{ // names a ticket the relay never saw
		Version: real.Version, Proof: other, Epoch: 2, Previous: make([]byte, 32), Issued: real.Issued, Members: 1,
		Keys: []protocol.RelayKey{{Chain: protocol.ChainID{2}, Admin: true}},
	})
	noProof := forger.sign(&protocol.RelayTicket{
		Version: real.Version, Epoch: 1, Issued: real.Issued, Members: 1, Keys: []protocol.RelayKey{{Chain: forger.chain, Admin: true}},
	})
	topics := len(relay.srv.Topics())
	for name, tc := range map[string]struct {
		t    *protocol.RelayTicket
		want error
	}{
		"wrong signer":  {update, protocol.ErrGroupNotAdmin},
		"tampered":      {copyTicket(&tampered), protocol.ErrAuth},
		"wrong lineage": {lineage, protocol.ErrTicketLineage},
		"no proof":      {noProof, protocol.ErrMalformed},
	} {
		err := grouprelay.Offer(ctx, member.h, relay.ID(), tc.t)
		var re *grouprelay.RefusedError
		if !errors.Is(err, tc.want) || !errors.As(err, &re) {
			t.Errorf("%s: %v, want a refusal matching %v", name, err, tc.want)
		}
	}
	// What the relay carries is compared by its keys and topic.
	topic := protocol.Topic(st)
	if got := relay.srv.Ticket(topic); !slices.Equal(got.Keys, real.Keys) || got.Proof != real.Proof || len(relay.srv.Topics()) != topics {
		t.Fatal("a refused ticket changed what the relay carries")
	}
	// The held ticket again: taken (held already).
	if err := grouprelay.Offer(ctx, member.h, relay.ID(), relay.srv.Ticket(topic)); err != nil {
		t.Fatalf("the held ticket again: %v", err)
	}
	// Two tickets of the same keys from the admin's chain, a minute
	// apart: the relay takes the later, and the earlier is then stale.
	own, err := admin.st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	a, err := protocol.NewRelayTicket(own, own, st, real.Keys, nil, time.UnixMilli(real.Issued).Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	b, err := protocol.NewRelayTicket(own, own, st, real.Keys, nil, time.UnixMilli(real.Issued).Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := grouprelay.Offer(ctx, admin.h, relay.ID(), b); err != nil {
		t.Fatalf("the admin's newer ticket: %v", err)
	}
	if err := grouprelay.Offer(ctx, admin.h, relay.ID(), a); !errors.Is(err, protocol.ErrTicketStale) {
		t.Fatalf("the admin's older ticket: %v, want ErrTicketStale", err)
	}
}

// forger signs tickets with a key of no group.
type forger struct {
	priv  ed25519.PrivateKey
	chain protocol.ChainID
}

func newForger(t *testing.T) *forger {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &forger{priv: priv, chain: protocol.ChainID(pub)}
}

// sign signs t as the forger.
func (f *forger) sign(t *protocol.RelayTicket) *protocol.RelayTicket {
	t.Signer = f.chain
	t.Signature = ed25519.Sign(f.priv, append([]byte(protocol.LabelRelayTicket), t.Canonical()...))
	return t
}

// withKey returns keys and the forger's as an admin's, in order.
func (f *forger) withKey(keys []protocol.RelayKey) []protocol.RelayKey {
	out := append(slices.Clone(keys), protocol.RelayKey{Chain: f.chain, Admin: true})
	slices.SortFunc(out, func(a, b protocol.RelayKey) int { return bytes.Compare(a.Chain[:], b.Chain[:]) })
	return out
}

// copyTicket returns t re-encoded from its fields (Marshal of a parsed
// ticket returns the bytes it was parsed from).
func copyTicket(t *protocol.RelayTicket) *protocol.RelayTicket {
	c := &protocol.RelayTicket{
		Version: t.Version, Proof: t.Proof, Epoch: t.Epoch, Members: t.Members, Previous: t.Previous, Keys: t.Keys,
		Issued: t.Issued, Signer: t.Signer, Signature: t.Signature,
	}
	return c
}

// TestGroupRelayLineageFallback: a relay that was down for the group's
// first epoch refuses the next epoch's ticket for its lineage (it never
// held the ticket it follows); the admin's node then hands it a ticket
// signed with an admin key of the new epoch, which it takes.
func TestGroupRelayLineageFallback(t *testing.T) {
	relay := startGroupRelay(t, t.TempDir(), "", newRunningClock(), grouprelay.Limits{})
	dir2 := t.TempDir()
	late := startGroupRelay(t, dir2, "", newRunningClock(), grouprelay.Limits{})
	lateInfo, listen2 := late.info(), (&mailRelay{Relay: late.Relay}).listenAddr(t)
	late.stop()
	net := newGroupNet(t, 2, false)
	net.useRelay(relay)
	admin := net.members[0]
	admin.g.relays = newGroupRelays([]peer.AddrInfo{relay.info(), lateInfo})
	ctx := context.Background()
	st, err := admin.g.createGroup(ctx, "late relay", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	relay.waitTicket(t, st, 2)
	st2, err := admin.g.changeMembers(ctx, st.Group, "renamed", st.Members)
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st2)
	relay.waitTicket(t, st2, 2)
	if len(relay.srv.Ticket(protocol.Topic(st2)).Previous) == 0 {
		t.Fatal("the relay that held epoch 1 got a ticket without lineage")
	}
	late = startGroupRelay(t, dir2, listen2, newRunningClock(), grouprelay.Limits{})
	late.waitTicket(t, st2, 2)
	if late.srv.Ticket(protocol.Topic(st)) != nil || len(late.srv.Ticket(protocol.Topic(st2)).Previous) != 0 {
		t.Fatal("the late relay holds epoch 1's ticket, or a ticket of epoch 2 with lineage")
	}
}

// TestGroupRelayRealNodes: two real nodes that bootstrap from a relay
// (their mailbox relay too): the admin's node hands the relay the group's
// ticket, which lists both members' keys once they have met, and the
// relay stores what they post.
func TestGroupRelayRealNodes(t *testing.T) {
	relay := startGroupRelay(t, t.TempDir(), "", newRunningClock(), grouprelay.Limits{})
	boot := relay.Addrs()[0]
	a := startNode(t, dirConfig(t, fixtureKey(t, "alice-2048"), boot), "Alice")
	b := startNode(t, dirConfig(t, fixtureKey(t, "bob-2048"), boot), "Bob")
	g, gr := relayedGroup(t, relay, a, b)
	ctx := context.Background()
	if _, _, err := b.SendGroup(ctx, g.ID, "through the relay too"); err != nil {
		t.Fatal(err)
	}
	waitGroupText(t, a, g.ID, "through the relay too")
	waitFor(t, 20*time.Second, "the relay stores the message", func() bool { return relay.srv.HeldOn(protocol.Topic(gr.State)) == 1 })
}

// TestGroupRelayDownMidConversation: three members talk through a relay
// (and each other, in a line); a fourth is away. The relay goes down
// mid-conversation: the members keep talking through each other, and
// each gets every message exactly once. The relay comes back on the same
// directory and address, catches up from the members what was posted
// while it was down (relay sync, authenticated by its ticket), and then
// serves it alone: with every poster offline, the member who was away
// the whole time gets the whole conversation from the relay.
func TestGroupRelayDownMidConversation(t *testing.T) {
	clock := newRunningClock()
	relay := startGroupRelay(t, t.TempDir(), "", clock, grouprelay.Limits{})
	net := newGroupNet(t, 4, false)
	net.useRelay(relay)
	ctx := context.Background()
	st, err := net.members[0].g.createGroup(ctx, "relay down", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	relay.waitTicket(t, st, 4)
	name := protocol.Topic(st)
	net.cutOff(3, relay)

	want := map[protocol.MsgID]string{}
	post := func(round string) {
		t.Helper()
		for i := range 3 {
			body := fmt.Sprintf("%s %d", round, i)
			sent, err := net.members[i].g.sendGroup(ctx, st.Group, body)
			if err != nil {
				t.Fatal(err)
			}
			want[sent.ID] = body
		}
		for i := range 3 {
			net.waitHistory(i, st.Group, want)
		}
	}
	post("before")
	waitFor(t, 20*time.Second, "the relay stores the first 3", func() bool { return relay.srv.HeldOn(name) == 3 })

	// The relay goes down; the members keep talking through each other.
	listen := (&mailRelay{Relay: relay.Relay}).listenAddr(t)
	relay.stop()
	post("while down")
	post("still down")

	// It comes back with what it held. Once gossipsub no longer offers
	// the messages posted while it was down (members gossip message IDs
	// for GossipSubHistoryGossip heartbeats), the members meet it again,
	// and it catches up from them: all it missed, each once.
	downEnd := time.Now()
	relay = startGroupRelay(t, relay.dir, listen, clock, relay.lim)
	if n := relay.srv.HeldOn(name); n != 3 {
		t.Fatalf("after a restart the relay holds %d messages, want 3", n)
	}
	gossip := time.Duration(pubsub.GossipSubHistoryGossip+1) * pubsub.GossipSubHeartbeatInterval
	waitFor(t, 2*gossip, "gossipsub no longer offers the messages posted while the relay was down", func() bool {
		return time.Since(downEnd) > gossip
	})
	for i := range 3 {
		if err := net.members[i].h.Connect(ctx, relay.info()); err != nil {
			t.Fatal(err)
		}
	}
	relay.waitTicket(t, st, 4)
	waitFor(t, 20*time.Second, "the relay catches up", func() bool { return relay.srv.HeldOn(name) == len(want) })
	// (All 6 normally; a heartbeat delayed under load may let gossipsub
	// bring one, which the relay then holds once all the same.)
	if n := relay.srv.Fetched(); n == 0 || n > 6 {
		t.Fatalf("the relay fetched %d messages from members, want the 6 posted while it was down", n)
	}
	post("after")
	waitFor(t, 20*time.Second, "the relay holds the whole conversation", func() bool { return relay.srv.HeldOn(name) == len(want) })

	// Every poster goes; the member away all along gets it all from the
	// relay alone.
	for i := range 3 {
		net.members[i].stop()
	}
	late := net.members[3]
	if err := late.h.Connect(ctx, relay.info()); err != nil {
		t.Fatal(err)
	}
	net.waitHistory(3, st.Group, want)
	if n := relay.srv.HeldOn(name); n != len(want) {
		t.Fatalf("the relay holds %d messages, want %d (each once)", n, len(want))
	}
}
