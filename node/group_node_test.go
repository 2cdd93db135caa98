package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// groupTexts is a group's history on n, oldest first.
func groupTexts(tb testing.TB, n *Node, id protocol.GroupID) []string {
	tb.Helper()
	ms, _, err := n.GroupMessages(context.Background(), id, "", 200)
	if err != nil {
		tb.Fatalf("GroupMessages: %v", err)
	}
	var out []string
	for _, m := range slices.Backward(ms) {
		out = append(out, string(m.Body))
	}
	return out
}

// waitGroupText waits until n holds text in the group.
func waitGroupText(tb testing.TB, n *Node, id protocol.GroupID, text string) {
	tb.Helper()
	waitFor(tb, 20*time.Second, "group message "+text, func() bool {
		return slices.Contains(groupTexts(tb, n, id), text)
	})
}

// waitEpoch waits until n holds the group at epoch (and every member's
// sender key of it, so that what follows can be read).
func waitEpoch(tb testing.TB, n *Node, id protocol.GroupID, epoch uint64) {
	tb.Helper()
	u := unlockedOf(tb, n)
	waitFor(tb, 20*time.Second, "group epoch and sender keys", func() bool {
		gr, err := u.st.Group(context.Background(), id)
		if err != nil || gr.State.Epoch != epoch {
			return false
		}
		if gr.Removed {
			return true
		}
		chains, err := u.st.SenderChains(context.Background(), id, epoch)
		return err == nil && len(chains) == len(gr.State.Members)
	})
}

// TestGroupThreeNodes runs a group of three real nodes, friends with each
// other: states and sender keys go through their 1:1 sessions, messages
// over the group's gossipsub topic. The admin then removes one, who
// learns of it, cannot post, and reads nothing sent after; the other two
// keep talking. Only the admin may change members.
func TestGroupThreeNodes(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	c := startNode(t, testConfig(t, "carol-2048"), "Carol")
	befriend(t, a, b)
	befriend(t, a, c)
	befriend(t, b, c)
	ma, mb, mc := meOf(t, a), meOf(t, b), meOf(t, c)
	cw := watch(t, c)
	bw := watch(t, b)

	if _, err := a.CreateGroup(ctx, " ", []protocol.ID{mb.UserID}); !isErr(err, ErrInvalid) {
		t.Fatalf("a group without a name: %v, want ErrInvalid", err)
	}
	if _, err := a.CreateGroup(ctx, "x", []protocol.ID{protocol.ID{1}}); !isErr(err, ErrNotFriend) {
		t.Fatalf("a group with a stranger: %v, want ErrNotFriend", err)
	}
	g, err := a.CreateGroup(ctx, "Climbing", []protocol.ID{mb.UserID, mc.UserID})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if g.Epoch != 1 || len(g.Members) != 3 {
		t.Fatalf("new group = %+v", g)
	}
	for _, m := range g.Members {
		want := "member"
		if m.User == ma.UserID {
			want = "admin"
		}
		if m.Role != want || m.Name == "" {
			t.Errorf("member %s: role %q name %q, want role %s and a name", m.User, m.Role, m.Name, want)
		}
	}
	for _, n := range []*Node{a, b, c} {
		waitEpoch(t, n, g.ID, 1)
	}
	bw.waitEvent(t, 10*time.Second, "b's group_updated", func(e Event) bool {
		return e.Type == EventGroupUpdated && e.Group.ID == g.ID
	})
	gb, err := b.Group(ctx, g.ID)
	if err != nil || gb.Name != "Climbing" || len(gb.Members) != 3 {
		t.Fatalf("b's group = %+v, %v", gb, err)
	}

	for _, s := range []struct {
		n    *Node
		text string
	}{{a, "from alice"}, {b, "from bob"}, {c, "from carol"}} {
		if _, _, err := s.n.SendGroup(ctx, g.ID, s.text); err != nil {
			t.Fatalf("SendGroup %q: %v", s.text, err)
		}
	}
	for _, n := range []*Node{a, b, c} {
		for _, text := range []string{"from alice", "from bob", "from carol"} {
			waitGroupText(t, n, g.ID, text)
		}
	}
	bw.waitEvent(t, 10*time.Second, "b's group_message", func(e Event) bool {
		return e.Type == EventGroupMessage && e.Group.ID == g.ID && string(e.GroupMessage.Body) == "from carol"
	})
	if gb, _ := b.Group(ctx, g.ID); gb.Unread != 2 || gb.Last == nil {
		t.Errorf("b's unread = %d (last %v), want 2", gb.Unread, gb.Last)
	}
	if err := b.MarkGroupRead(ctx, g.ID, protocol.MsgID{}); err != nil {
		t.Fatal(err)
	}
	if gb, _ := b.Group(ctx, g.ID); gb.Unread != 0 {
		t.Errorf("b's unread after MarkGroupRead = %d", gb.Unread)
	}

	// Only the admin changes members.
	if err := b.RemoveGroupMember(ctx, g.ID, mc.UserID); !isErr(err, ErrNotAdmin) {
		t.Fatalf("b removes c: %v, want ErrNotAdmin", err)
	}
	if _, err := b.AddGroupMember(ctx, g.ID, ma.UserID); !isErr(err, ErrNotAdmin) {
		t.Fatalf("b adds: %v, want ErrNotAdmin", err)
	}

	if err := a.RemoveGroupMember(ctx, g.ID, mc.UserID); err != nil {
		t.Fatalf("a removes c: %v", err)
	}
	cw.waitEvent(t, 20*time.Second, "c's group_removed", func(e Event) bool {
		return e.Type == EventGroupRemoved && e.Group.ID == g.ID && e.Group.Removed
	})
	waitEpoch(t, a, g.ID, 2)
	waitEpoch(t, b, g.ID, 2)
	if _, _, err := c.SendGroup(ctx, g.ID, "still here?"); !isErr(err, ErrNotMember) {
		t.Fatalf("removed c sends: %v, want ErrNotMember", err)
	}
	if _, _, err := a.SendGroup(ctx, g.ID, "after the removal"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.SendGroup(ctx, g.ID, "bob after"); err != nil {
		t.Fatal(err)
	}
	waitGroupText(t, b, g.ID, "after the removal")
	waitGroupText(t, a, g.ID, "bob after")
	// c still holds what came before and nothing sent after: it holds no
	// sender key of epoch 2, so nothing of it could be opened there.
	if chains, err := unlockedOf(t, c).st.SenderChains(ctx, g.ID, 2); err != nil || len(chains) != 0 {
		t.Fatalf("removed c holds %d sender keys of epoch 2 (%v)", len(chains), err)
	}
	got := groupTexts(t, c, g.ID)
	if slices.Contains(got, "after the removal") || slices.Contains(got, "bob after") || !slices.Contains(got, "from alice") {
		t.Fatalf("removed c's history = %q", got)
	}
	gc, err := c.Group(ctx, g.ID)
	if err != nil || !gc.Removed {
		t.Fatalf("c's group = %+v, %v; want removed", gc, err)
	}
	if ga, _ := a.Group(ctx, g.ID); len(ga.Members) != 2 || ga.Epoch != 2 {
		t.Fatalf("a's group after the removal = %+v", ga)
	}

	// b leaves: its node stops at once, and the admin, asked, removes b
	// with the next epoch.
	if err := b.RemoveGroupMember(ctx, g.ID, mb.UserID); err != nil {
		t.Fatalf("b leaves: %v", err)
	}
	if _, _, err := b.SendGroup(ctx, g.ID, "gone"); !isErr(err, ErrNotMember) {
		t.Fatalf("b sends after leaving: %v, want ErrNotMember", err)
	}
	waitFor(t, 20*time.Second, "the admin removes b on b's request", func() bool {
		ga, err := a.Group(ctx, g.ID)
		return err == nil && ga.Epoch == 3 && len(ga.Members) == 1 && ga.Members[0].User == ma.UserID
	})
	// A leave of an epoch that is over is not taken: a replayed request
	// cannot remove a member added again.
	u := unlockedOf(t, a)
	old := protocol.MarshalGroupLeave(protocol.GroupLeave{Group: g.ID, Epoch: 2})
	if err := u.groups.receiveDirect(ctx, mb.UserID, protocol.KindGroupLeave, old); !isErr(err, ErrInvalid) {
		t.Fatalf("a leave of an old epoch: %v, want ErrInvalid", err)
	}
	if err := u.groups.receiveDirect(ctx, ma.UserID, protocol.KindGroupLeave, protocol.MarshalGroupLeave(protocol.GroupLeave{Group: g.ID, Epoch: 3})); !isErr(err, ErrInvalid) {
		t.Fatalf("the last admin's own leave: %v, want ErrInvalid", err)
	}
}

// TestGroupControlFromStranger: group states and sender keys come only
// from accepted friends. A stranger's, with her card, is refused
// (AckNotAFriend) and changes nothing; a friend's state of a group that
// does not list the user is acknowledged (the envelope was fine) and
// stored nowhere.
func TestGroupControlFromStranger(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, testConfig(t, "alice-2048"), "Alice")
	b := startNode(t, testConfig(t, "bob-2048"), "Bob")
	befriend(t, a, b)
	mb := meOf(t, b)
	g, err := a.CreateGroup(ctx, "Pals", []protocol.ID{mb.UserID})
	if err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, b, g.ID, 1)

	carolKey, aliceKey := fixtureKey(t, "carol-2048"), fixtureKey(t, "alice-2048")
	bCard, err := protocol.ParseCardURI(mb.Invite)
	if err != nil {
		t.Fatal(err)
	}
	toB := bCard.Recipient(time.Now())
	atk := newAttacker(t, b)
	carolCard, err := protocol.NewCard(carolKey, "Carol", [][]byte{[]byte(atk.h.ID())}, nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Carol's own group, listing Bob, and her sender key for it.
	st, err := protocol.NewGroupState(carolKey, carolKey.ID(), "Trap", []protocol.GroupMember{{User: mb.UserID, Role: protocol.RoleMember}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := protocol.NewSenderChain(st, carolKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	d, err := chain.Distribution(st)
	if err != nil {
		t.Fatal(err)
	}
	hs := atk.open(t)
	hs.expect(atk.forge(t, carolKey, toB, protocol.KindGroupState, string(st.Marshal()), time.Now()), carolCard.Marshal(), protocol.AckNotAFriend)
	hs.expect(atk.forge(t, carolKey, toB, protocol.KindSenderKey, string(d.Marshal()), time.Now()), carolCard.Marshal(), protocol.AckNotAFriend)

	// Alice's own device is not the attacker's, but her signature is what
	// counts: a state of a group without Bob is acknowledged and dropped.
	other, err := protocol.NewGroupState(aliceKey, aliceKey.ID(), "Not for Bob", []protocol.GroupMember{{User: carolKey.ID(), Role: protocol.RoleMember}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs.expect(atk.forge(t, aliceKey, toB, protocol.KindGroupState, string(other.Marshal()), time.Now()), nil, protocol.AckOK)
	hs.finish()

	gs, err := b.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("Bob's groups = %+v, %v; want only %s", gs, err, g.ID)
	}
	// A text from Carol is refused as ever.
	hs = atk.open(t)
	hs.expect(atk.forge(t, carolKey, toB, protocol.KindText, "hi from a stranger", time.Now()), carolCard.Marshal(), protocol.AckNotAFriend)
	hs.finish()
}

// TestGroupMembersNotFriends: Bob and Carol are both Alice's friends but
// not each other's. In Alice's group they still get each other's sender
// keys (sealed to the directory's key, authorised by the roster) and read
// each other; a chat message from Carol to Bob is still refused.
func TestGroupMembersNotFriends(t *testing.T) {
	ctx := context.Background()
	relays := startRelays(t, 1)
	boot := relays[0].Addrs()[0]
	keys := []*protocol.PrivateKey{fixtureKey(t, "alice-2048"), fixtureKey(t, "bob-2048"), fixtureKey(t, "carol-2048")}
	var ns []*Node
	for i, name := range []string{"Alice", "Bob", "Carol"} {
		n := startNode(t, dirConfig(t, keys[i], boot), name)
		waitPublished(t, n)
		ns = append(ns, n)
	}
	a, b, c := ns[0], ns[1], ns[2]
	befriend(t, a, b)
	befriend(t, a, c)
	mb, mc := meOf(t, b), meOf(t, c)

	g, err := a.CreateGroup(ctx, "Hub", []protocol.ID{mb.UserID, mc.UserID})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		waitEpoch(t, n, g.ID, 1) // every member holds all three sender keys
	}
	if _, _, err := c.SendGroup(ctx, g.ID, "carol to all"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.SendGroup(ctx, g.ID, "bob to all"); err != nil {
		t.Fatal(err)
	}
	waitGroupText(t, b, g.ID, "carol to all")
	waitGroupText(t, c, g.ID, "bob to all")
	waitGroupText(t, a, g.ID, "carol to all")
	if gb, _ := b.Group(ctx, g.ID); gb.Members[slices.IndexFunc(gb.Members, func(m GroupMemberInfo) bool { return m.User == mc.UserID })].Name != "" {
		t.Errorf("Bob knows Carol by a name without being her friend: %+v", gb.Members)
	}

	// Carol is on Bob's roster, not his friend: no 1:1 chat.
	if _, err := c.Send(ctx, mb.UserID, "hi Bob"); !isErr(err, ErrNotFriend) {
		t.Fatalf("Carol's Send to Bob: %v, want ErrNotFriend", err)
	}
	bCard, err := protocol.ParseCardURI(mb.Invite)
	if err != nil {
		t.Fatal(err)
	}
	atk := newAttacker(t, b)
	carolCard, err := protocol.NewCard(keys[2], "Carol", [][]byte{[]byte(atk.h.ID())}, nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs := atk.open(t)
	hs.expect(atk.forge(t, keys[2], bCard.Recipient(time.Now()), protocol.KindText, "hi Bob", time.Now()), carolCard.Marshal(), protocol.AckNotAFriend)
	hs.finish()
}
