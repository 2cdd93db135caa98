package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// groupPeer is the other member of a test group: otherKey, the group's
// admin, with their own sender chain; the store's owner (testKey) is a
// member.
type groupPeer struct {
	state *protocol.GroupState
	own   *protocol.SenderChain // otherKey's chain
	dist  *protocol.SenderKeyDistribution
}

func newGroupPeer(t testing.TB) *groupPeer {
	t.Helper()
	st, err := protocol.NewGroupState(otherKey, otherKey.ID(), "test group",
		[]protocol.GroupMember{{User: testKey.ID(), Role: protocol.RoleMember}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	own, err := protocol.NewSenderChain(st, otherKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	d, err := own.Distribution(st)
	if err != nil {
		t.Fatal(err)
	}
	return &groupPeer{state: st, own: own, dist: d}
}

// seal makes otherKey's next group message with the given sender time.
func (p *groupPeer) seal(t testing.TB, body string, at time.Time) *protocol.GroupMessage {
	t.Helper()
	m, next, err := p.own.Seal(protocol.KindText, []byte(body), at)
	if err != nil {
		t.Fatal(err)
	}
	p.own = next
	return m
}

// joinGroup stores the peer's group and their sender key as the store's
// owner receives them, and makes the owner's own chain.
func joinGroup(t testing.TB, s *Store, p *groupPeer) {
	t.Helper()
	ctx := context.Background()
	mine, err := protocol.NewSenderChain(p.state, testKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutGroupState(ctx, p.state, mine); err != nil {
		t.Fatal(err)
	}
	c, err := protocol.AcceptSenderKey(p.state, p.dist, otherKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSenderChain(ctx, c); err != nil {
		t.Fatal(err)
	}
}

// receive opens m with the stored chain and stores it with the next
// chain state, as a node does.
func receive(t *testing.T, s *Store, m *protocol.GroupMessage) (GroupMessage, error) {
	t.Helper()
	ctx := context.Background()
	c, err := s.SenderChain(ctx, m.Group, m.Epoch, m.Sender, m.Chain)
	if err != nil {
		t.Fatal(err)
	}
	p, next, err := c.Open(m)
	if err != nil {
		return GroupMessage{}, err
	}
	return s.StoreGroupMessage(ctx, GroupMessage{
		Group: m.Group, ID: m.MsgID, Epoch: m.Epoch, From: m.Sender, Chain: m.Chain, Iteration: m.Iteration,
		Kind: "text", Body: p.Body, Raw: m.Marshal(), SentAt: m.Time(),
	}, next)
}

func TestGroupStateStored(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	p := newGroupPeer(t)
	if _, err := s.Group(ctx, p.state.Group); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Group before it is stored = %v, want ErrNotFound", err)
	}
	joinGroup(t, s, p)
	if err := s.PutGroupState(ctx, p.state, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("the same epoch again = %v, want ErrInvalid", err)
	}
	c2, err := protocol.AcceptSenderKey(p.state, p.dist, otherKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSenderChain(ctx, c2); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("a sender key stored twice = %v, want ErrDuplicate", err)
	}
	own, err := s.OwnChain(ctx, p.state.Group, 1)
	if err != nil || !own.Own() || own.Sender() != testKey.ID() {
		t.Fatalf("OwnChain = %v", err)
	}
	chains, err := s.SenderChains(ctx, p.state.Group, 1)
	if err != nil || len(chains) != 2 {
		t.Fatalf("SenderChains = %d chains, %v", len(chains), err)
	}

	// The admin removes the store's owner: the group is marked removed
	// and survives a restart.
	next, err := p.state.Next(otherKey, otherKey.ID(), "test group", []protocol.GroupMember{{User: otherKey.ID(), Role: protocol.RoleAdmin}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutGroupState(ctx, next, own); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a state stored with a chain of another epoch = %v, want ErrInvalid", err)
	}
	if err := s.PutGroupState(ctx, next, nil); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, c)
	g, err := s.Group(ctx, p.state.Group)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Removed || g.State.Epoch != 2 || g.ID() != p.state.Group || g.State.Hash() != next.Hash() {
		t.Fatalf("after removal: removed %v, epoch %d", g.Removed, g.State.Epoch)
	}
	all, err := s.Groups(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("Groups = %d, %v", len(all), err)
	}
}

func TestGroupMessagesStoredOnce(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	p := newGroupPeer(t)
	joinGroup(t, s, p)
	t0 := time.Now().Truncate(time.Millisecond)
	m0 := p.seal(t, "zero", t0)
	if _, err := receive(t, s, m0); err != nil {
		t.Fatal(err)
	}
	chainAfter := func() []byte {
		c, err := s.SenderChain(ctx, m0.Group, m0.Epoch, m0.Sender, m0.Chain)
		if err != nil {
			t.Fatal(err)
		}
		return c.Marshal()
	}
	before := chainAfter()

	// The same message again cannot even be opened (its key is used); a
	// caller holding an older chain state (a restart, a second copy)
	// opens it but the store refuses it by (group, sender, chain,
	// iteration), and writes nothing, the chain neither.
	if _, err := receive(t, s, m0); !errors.Is(err, protocol.ErrGroupReplay) {
		t.Fatalf("a replay = %v, want protocol.ErrGroupReplay", err)
	}
	fresh, err := protocol.AcceptSenderKey(p.state, p.dist, otherKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	pl, stale, err := fresh.Open(m0)
	if err != nil {
		t.Fatal(err)
	}
	dup := GroupMessage{Group: m0.Group, ID: m0.MsgID, Epoch: 1, From: m0.Sender, Chain: m0.Chain, Iteration: 0, Kind: "text", Body: pl.Body, SentAt: m0.Time()}
	if _, err := s.StoreGroupMessage(ctx, dup, stale); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("a message stored twice = %v, want ErrDuplicate", err)
	}
	// A different iteration reusing the stored (time, ID) is refused too,
	// so no message overwrites another's row.
	m1 := p.seal(t, "one", t0)
	forged := dup
	forged.Iteration = m1.Iteration
	_, next1, err := func() (*protocol.GroupPlain, *protocol.SenderChain, error) {
		c, err := s.SenderChain(ctx, m1.Group, 1, m1.Sender, m1.Chain)
		if err != nil {
			return nil, nil, err
		}
		return c.Open(m1)
	}()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreGroupMessage(ctx, forged, next1); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("a message over another's row = %v, want ErrDuplicate", err)
	}
	if !bytes.Equal(chainAfter(), before) {
		t.Fatal("a refused message moved the stored chain")
	}
	msgs, _, err := s.GroupMessages(ctx, m0.Group, "", 10)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "zero" {
		t.Fatalf("history after the refusals: %d messages, %v", len(msgs), err)
	}
	// A group that is not stored takes nothing.
	other := newGroupPeer(t)
	om := other.seal(t, "elsewhere", t0)
	oc, _ := protocol.AcceptSenderKey(other.state, other.dist, otherKey.ID())
	_, onext, err := oc.Open(om)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreGroupMessage(ctx, GroupMessage{Group: om.Group, ID: om.MsgID, Epoch: 1, From: om.Sender, Chain: om.Chain, SentAt: t0}, onext); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a message of an unknown group = %v, want ErrNotFound", err)
	}
	if _, err := s.SenderChain(ctx, om.Group, 1, om.Sender, om.Chain); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused message's chain was stored: %v", err)
	}
}

func TestGroupHistoryOrder(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	p := newGroupPeer(t)
	joinGroup(t, s, p)
	t0 := time.Now().Truncate(time.Millisecond)
	// Sender times out of arrival order, and three that share a time.
	offsets := []time.Duration{5, 1, 3, 3, 3, 0, 4, 2}
	var sealed []*protocol.GroupMessage
	for i, o := range offsets {
		sealed = append(sealed, p.seal(t, fmt.Sprint(i), t0.Add(o*time.Second)))
	}
	// They arrive in reverse order (bob's chain skips, then fills in).
	for i := len(sealed) - 1; i >= 0; i-- {
		if _, err := receive(t, s, sealed[i]); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	var got []GroupMessage
	cursor := Cursor("")
	for {
		page, next, err := s.GroupMessages(ctx, p.state.Group, cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(offsets) {
		t.Fatalf("%d messages in history, want %d", len(got), len(offsets))
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if a.SentAt.Before(b.SentAt) || (a.SentAt.Equal(b.SentAt) && bytes.Compare(a.ID[:], b.ID[:]) < 0) {
			t.Fatalf("history not newest first by sender time, then ID, at %d", i)
		}
	}
	if got[0].Iteration != 0 || got[len(got)-1].Iteration != 5 {
		t.Fatalf("newest is iteration %d, oldest %d", got[0].Iteration, got[len(got)-1].Iteration)
	}
	// Catching up on a chain: everything from iteration 3 on, in order,
	// with the wire form that a member who missed them can open.
	from3, err := s.GroupChainMessages(ctx, p.state.Group, otherKey.ID(), p.own.ID(), 3, 100)
	if err != nil || len(from3) != len(offsets)-3 {
		t.Fatalf("GroupChainMessages = %d, %v", len(from3), err)
	}
	fresh, _ := protocol.AcceptSenderKey(p.state, p.dist, otherKey.ID())
	for i, m := range from3 {
		if m.Iteration != uint32(3+i) {
			t.Fatalf("catch-up %d has iteration %d", i, m.Iteration)
		}
		wm, err := protocol.ParseGroupMessage(m.Raw)
		if err != nil {
			t.Fatal(err)
		}
		pl, next, err := fresh.Open(wm)
		if err != nil || string(pl.Body) != string(m.Body) {
			t.Fatalf("catch-up %d does not open to its body: %v", i, err)
		}
		fresh = next
	}
	g, err := s.Group(ctx, p.state.Group)
	if err != nil || g.Unread != len(offsets) || g.LastAt != t0.Add(5*time.Second) {
		t.Fatalf("group: unread %d, last at %v, %v", g.Unread, g.LastAt, err)
	}
	if err := s.MarkGroupRead(ctx, p.state.Group); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.Group(ctx, p.state.Group); g.Unread != 0 {
		t.Fatalf("unread %d after MarkGroupRead", g.Unread)
	}
}

// TestGroupOwnMessages stores sent messages with the own chain's next
// state, which survives a restart: no iteration is ever sealed twice.
func TestGroupOwnMessages(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	p := newGroupPeer(t)
	joinGroup(t, s, p)
	send := func(body string) *protocol.GroupMessage {
		own, err := s.OwnChain(ctx, p.state.Group, 1)
		if err != nil {
			t.Fatal(err)
		}
		m, next, err := own.Seal(protocol.KindText, []byte(body), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.StoreGroupMessage(ctx, GroupMessage{
			Group: m.Group, ID: m.MsgID, Epoch: m.Epoch, From: m.Sender, Chain: m.Chain, Iteration: m.Iteration,
			Kind: "text", Body: []byte(body), Raw: m.Marshal(), Direction: Out, SentAt: m.Time(),
		}, next); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := send("first")
	s = reopen(t, s, c)
	b := send("second")
	if a.Iteration != 0 || b.Iteration != 1 {
		t.Fatalf("iterations %d, %d after a restart", a.Iteration, b.Iteration)
	}
	g, err := s.Group(ctx, p.state.Group)
	if err != nil || g.Unread != 0 || g.LastMsg != b.MsgID {
		t.Fatalf("own messages: unread %d, last %v, %v", g.Unread, g.LastMsg, err)
	}
}

// TestGroupRowsTampered: group rows are sealed under their keys; a flipped
// byte, or one member's chain moved under another's key, is ErrTampered.
func TestGroupRowsTampered(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	p := newGroupPeer(t)
	joinGroup(t, s, p)
	m := p.seal(t, "hello", time.Now())
	if _, err := receive(t, s, m); err != nil {
		t.Fatal(err)
	}
	g := p.state.Group
	theirs := groupChainKey(g, 1, otherKey.ID(), p.own.ID())
	own, err := s.OwnChain(ctx, g, 1)
	if err != nil {
		t.Fatal(err)
	}
	mine := groupChainKey(g, 1, testKey.ID(), own.ID())
	rawSet(t, s, mine, rawGet(t, s, theirs))
	_, err = s.OwnChain(ctx, g, 1)
	wantTampered(t, "a chain moved under another key", err, rowGroupChain)

	rawSet(t, s, groupKey(g), flipped(rawGet(t, s, groupKey(g))))
	_, err = s.Group(ctx, g)
	wantTampered(t, "a flipped group row", err, rowGroup)

	sk := sortKey(m.Time(), m.MsgID)
	rawSet(t, s, groupMsgKey(g, sk), flipped(rawGet(t, s, groupMsgKey(g, sk))))
	_, _, err = s.GroupMessages(ctx, g, "", 10)
	wantTampered(t, "a flipped group message", err, rowGroupMsg)
}
