package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol/pb"
)

// groupFixture is a group of three: alice (admin), bob and carol
// (members), with the fixture keys; keys[user] finds a signer's key.
type groupFixture struct {
	alice, bob, carol, mallory *PrivateKey
	state                      *GroupState
	keys                       map[ID]*PublicKey
}

func newGroupFixture(t testing.TB) *groupFixture {
	t.Helper()
	f := &groupFixture{
		alice: testKey(t, "alice-2048"), bob: testKey(t, "bob-2048"),
		carol: testKey(t, "carol-2048"), mallory: testKey(t, "alice-3072"),
	}
	f.keys = map[ID]*PublicKey{}
	for _, k := range []*PrivateKey{f.alice, f.bob, f.carol, f.mallory} {
		f.keys[k.ID()] = k.Public()
	}
	s, err := NewGroupState(f.alice, f.alice.ID(), "hikers", []GroupMember{
		{User: f.bob.ID(), Role: RoleMember}, {User: f.carol.ID(), Role: RoleMember},
	}, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	f.state = s
	return f
}

// next makes the state after s, signed by signer, with members.
func (f *groupFixture) next(t testing.TB, s *GroupState, signer *PrivateKey, members ...GroupMember) *GroupState {
	t.Helper()
	// Sign directly, without Next's admin check, so that tests can make
	// what a hostile member would send.
	h := s.Hash()
	n, err := signGroupState(signer, signer.ID(), &GroupState{Group: s.Group, Name: s.Name, Epoch: s.Epoch + 1, Members: members, Previous: h[:]}, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func member(k *PrivateKey, r Role) GroupMember { return GroupMember{User: k.ID(), Role: r} }

func TestGroupStateLifecycle(t *testing.T) {
	f := newGroupFixture(t)
	s := f.state
	if s.Epoch != 1 || len(s.Members) != 3 || !s.IsAdmin(f.alice.ID()) || s.IsAdmin(f.bob.ID()) || !s.IsMember(f.carol.ID()) || s.IsMember(f.mallory.ID()) {
		t.Fatalf("new state: epoch %d, members %v", s.Epoch, s.Members)
	}
	parsed, err := ParseGroupState(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.Marshal(), s.Marshal()) || parsed.Hash() != s.Hash() {
		t.Fatal("a parsed state does not re-encode to itself")
	}
	if err := VerifyGroupGenesis(parsed, f.alice.Public()); err != nil {
		t.Fatalf("genesis: %v", err)
	}
	// Alice removes carol and makes bob an admin; bob then renames it.
	s2, err := s.Next(f.alice, f.alice.ID(), "hikers", []GroupMember{member(f.alice, RoleAdmin), member(f.bob, RoleAdmin)}, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Accept(s2, f.alice.Public()); err != nil {
		t.Fatalf("accepting epoch 2: %v", err)
	}
	if s2.IsMember(f.carol.ID()) {
		t.Fatal("carol is still a member after her removal")
	}
	s3, err := s2.Next(f.bob, f.bob.ID(), "hill walkers", s2.Members, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Accept(s3, f.bob.Public()); err != nil {
		t.Fatalf("accepting epoch 3 from the new admin: %v", err)
	}
	if _, err := s2.Next(f.carol, f.carol.ID(), "x", s2.Members, goldenNow); !errors.Is(err, ErrGroupNotAdmin) {
		t.Fatalf("Next by a non-member = %v, want ErrGroupNotAdmin", err)
	}
	if Topic(s) == Topic(s2) || !strings.HasPrefix(Topic(s), TopicPrefix) ||
		strings.Contains(Topic(s), s.Group.String()) {
		t.Fatal("topics must differ per epoch and hide the group ID")
	}
}

func TestGroupStateRefused(t *testing.T) {
	f := newGroupFixture(t)
	s := f.state
	all := s.Members
	good := f.next(t, s, f.alice, all...)
	fork := f.next(t, s, f.alice, member(f.alice, RoleAdmin), member(f.bob, RoleMember))
	afterFork := f.next(t, fork, f.alice, all...)
	skip := f.next(t, good, f.alice, all...)
	other := newGroupFixture(t)
	otherNext := f.next(t, other.state, f.alice, all...)
	tampered, err := ParseGroupState(good.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	tampered.Name = "renamed in transit"
	tampered.raw = nil

	for _, tc := range []struct {
		name string
		cur  *GroupState
		next *GroupState
		key  *PublicKey
		want error
	}{
		{"non-admin state change", s, f.next(t, s, f.bob, member(f.bob, RoleAdmin)), f.bob.Public(), ErrGroupNotAdmin},
		{"outsider state change", s, f.next(t, s, f.mallory, member(f.mallory, RoleAdmin)), f.mallory.Public(), ErrGroupNotAdmin},
		{"skipped epoch", s, skip, f.alice.Public(), ErrGroupEpoch},
		{"same epoch again", good, good, f.alice.Public(), ErrGroupEpoch},
		{"old epoch", good, s, f.alice.Public(), ErrGroupEpoch},
		{"bad previous hash", good, afterFork, f.alice.Public(), ErrGroupPrevious},
		{"wrong group", s, otherNext, f.alice.Public(), ErrGroupWrongGroup},
		{"tampered", s, tampered, f.alice.Public(), ErrAuth},
		{"signer key not the one named", s, good, f.bob.Public(), ErrUnknownSender},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cur.Accept(tc.next, tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("Accept = %v, want %v", err, tc.want)
			}
		})
	}

	// A new group must come from one of its admins.
	bad := newGroupFixture(t).state
	bad.Signer = f.bob.ID()
	bad.raw = nil
	if err := VerifyGroupGenesis(bad, f.alice.Public()); !errors.Is(err, ErrGroupNotAdmin) {
		t.Fatalf("genesis named as bob's = %v, want ErrGroupNotAdmin", err)
	}
	if err := VerifyGroupGenesis(good, f.alice.Public()); !errors.Is(err, ErrGroupEpoch) {
		t.Fatalf("genesis at epoch 2 = %v, want ErrGroupEpoch", err)
	}
	// Someone added at epoch 2 checks the state on its own: signed by one
	// of its admins. A member who demotes the admin and signs is refused.
	if err := VerifyGroupState(good, f.alice.Public()); err != nil {
		t.Fatalf("epoch 2 on its own: %v", err)
	}
	coup := f.next(t, s, f.bob, member(f.alice, RoleMember), member(f.bob, RoleMember), member(f.carol, RoleAdmin))
	if err := VerifyGroupState(coup, f.bob.Public()); !errors.Is(err, ErrGroupNotAdmin) {
		t.Fatalf("a state signed by one who is not its admin = %v, want ErrGroupNotAdmin", err)
	}
}

func TestParseGroupStateMalformed(t *testing.T) {
	f := newGroupFixture(t)
	var p pb.GroupState
	if err := UnmarshalCanonical(f.state.Marshal(), &p); err != nil {
		t.Fatal(err)
	}
	mutate := func(fn func(p *pb.GroupState)) []byte {
		c := proto.Clone(&p).(*pb.GroupState)
		fn(c)
		return MarshalCanonical(c)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"unsorted members", mutate(func(p *pb.GroupState) { p.Members[0], p.Members[1] = p.Members[1], p.Members[0] }), ErrMalformed},
		{"duplicate member", mutate(func(p *pb.GroupState) { p.Members[1] = p.Members[0] }), ErrMalformed},
		{"no admin", mutate(func(p *pb.GroupState) {
			for _, m := range p.Members {
				m.Role = uint32(RoleMember)
			}
		}), ErrMalformed},
		{"unknown role", mutate(func(p *pb.GroupState) { p.Members[0].Role = 9 }), ErrMalformed},
		{"epoch 1 with a previous hash", mutate(func(p *pb.GroupState) { p.Previous = make([]byte, 32) }), ErrMalformed},
		{"epoch 0", mutate(func(p *pb.GroupState) { p.Epoch = 0 }), ErrMalformed},
		{"short group ID", mutate(func(p *pb.GroupState) { p.GroupId = p.GroupId[:31] }), ErrMalformed},
		{"long name", mutate(func(p *pb.GroupState) { p.Name = strings.Repeat("n", MaxGroupName+1) }), ErrMalformed},
		{"not canonical", append(f.state.Marshal(), 0x08, 0x01), ErrMalformed},
		{"oversized", make([]byte, MaxGroupStateSize+1), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseGroupState(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("ParseGroupState = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := NewGroupState(f.alice, f.alice.ID(), "\xff", nil, goldenNow); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a name that is not UTF-8 = %v, want ErrMalformed", err)
	}
	if _, err := NewGroupState(f.alice, f.alice.ID(), "big", manyMembers(MaxGroupMembers), goldenNow); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a group of %d = %v, want ErrTooLarge", MaxGroupMembers+1, err)
	}
}

func manyMembers(n int) []GroupMember {
	out := make([]GroupMember, n)
	for i := range out {
		out[i].User[0], out[i].User[1], out[i].User[31] = byte(i>>8), byte(i), 1
		out[i].Role = RoleMember
	}
	return out
}

// groupMembersChains gives each of the fixture's members a chain and
// every member the others' chains: chains[owner][holder].
func groupMembersChains(t testing.TB, f *groupFixture) map[ID]map[ID]*SenderChain {
	t.Helper()
	chains := map[ID]map[ID]*SenderChain{}
	for _, owner := range f.state.Members {
		own, err := NewSenderChain(f.state, owner.User)
		if err != nil {
			t.Fatal(err)
		}
		d, err := own.Distribution(f.state)
		if err != nil {
			t.Fatal(err)
		}
		raw := d.Marshal()
		chains[owner.User] = map[ID]*SenderChain{owner.User: own}
		for _, holder := range f.state.Members {
			if holder.User == owner.User {
				continue
			}
			pd, err := ParseSenderKeyDistribution(raw)
			if err != nil {
				t.Fatal(err)
			}
			c, err := AcceptSenderKey(f.state, pd, owner.User)
			if err != nil {
				t.Fatal(err)
			}
			chains[owner.User][holder.User] = c
		}
	}
	return chains
}

func TestSenderKeyRefused(t *testing.T) {
	f := newGroupFixture(t)
	own, err := NewSenderChain(f.state, f.alice.ID())
	if err != nil {
		t.Fatal(err)
	}
	d, err := own.Distribution(f.state)
	if err != nil {
		t.Fatal(err)
	}
	other := newGroupFixture(t)
	next := f.next(t, f.state, f.alice, f.state.Members...)
	fork := f.next(t, f.state, f.alice, member(f.alice, RoleAdmin), member(f.bob, RoleMember))
	withMallory := f.next(t, f.state, f.alice, append([]GroupMember{member(f.mallory, RoleMember)}, f.state.Members...)...)
	dm, err := func() (*SenderKeyDistribution, error) {
		c, err := NewSenderChain(withMallory, f.mallory.ID())
		if err != nil {
			return nil, err
		}
		return c.Distribution(withMallory)
	}()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		state *GroupState
		d     *SenderKeyDistribution
		from  ID
		want  error
	}{
		{"alice's key inside mallory's session", f.state, d, f.mallory.ID(), ErrGroupWrongSender},
		{"alice's key inside bob's session", f.state, d, f.bob.ID(), ErrGroupWrongSender},
		{"wrong group", other.state, d, f.alice.ID(), ErrGroupWrongGroup},
		{"wrong epoch", next, d, f.alice.ID(), ErrGroupEpoch},
		{"another state of the epoch", fork, func() *SenderKeyDistribution {
			c, _ := NewSenderChain(withMallory, f.alice.ID())
			d, _ := c.Distribution(withMallory)
			return d
		}(), f.alice.ID(), ErrGroupPrevious},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := AcceptSenderKey(tc.state, tc.d, tc.from)
			if !errors.Is(err, tc.want) {
				t.Fatalf("AcceptSenderKey = %v, want %v", err, tc.want)
			}
		})
	}
	// A member of one state is not one of the next: a key for a state in
	// which the sender is not a member is refused even when well formed.
	dn := *dm
	dn.StateHash = f.state.Hash()
	dn.Epoch = f.state.Epoch
	if _, err := AcceptSenderKey(f.state, &dn, f.mallory.ID()); !errors.Is(err, ErrGroupNotMember) {
		t.Fatalf("a non-member's key = %v, want ErrGroupNotMember", err)
	}
	if _, err := NewSenderChain(f.state, f.mallory.ID()); !errors.Is(err, ErrGroupNotMember) {
		t.Fatalf("a non-member's chain = %v, want ErrGroupNotMember", err)
	}
	for _, b := range [][]byte{nil, append(d.Marshal(), 0), d.Marshal()[:20]} {
		if _, err := ParseSenderKeyDistribution(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseSenderKeyDistribution(%x) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestGroupMessages(t *testing.T) {
	f := newGroupFixture(t)
	chains := groupMembersChains(t, f)
	a, b := f.alice.ID(), f.bob.ID()
	// Alice sends five; bob opens them out of order.
	var sent []*GroupMessage
	own := chains[a][a]
	for i := range 5 {
		m, next, err := own.Seal(KindText, []byte(strings.Repeat("x", i*100)), goldenNow)
		if err != nil {
			t.Fatal(err)
		}
		if m.Iteration != uint32(i) || next.Iteration() != uint32(i+1) || own.Iteration() != uint32(i) {
			t.Fatalf("iteration %d: message %d, next chain %d, old chain %d", i, m.Iteration, next.Iteration(), own.Iteration())
		}
		own = next
		sent = append(sent, m)
	}
	bc := chains[a][b]
	for _, i := range []int{3, 0, 4, 1, 2} {
		m, err := ParseGroupMessage(sent[i].Marshal())
		if err != nil {
			t.Fatal(err)
		}
		p, next, err := bc.Open(m)
		if err != nil {
			t.Fatalf("opening %d: %v", i, err)
		}
		if string(p.Body) != strings.Repeat("x", i*100) || p.Sender != a || p.Kind != KindText {
			t.Fatalf("message %d opened as %+v", i, p.GroupHeader)
		}
		// The same message again is a replay, from the state before and after.
		if _, _, err := next.Open(m); !errors.Is(err, ErrGroupReplay) {
			t.Fatalf("replay of %d = %v, want ErrGroupReplay", i, err)
		}
		bc = next
	}
	if bc.Skipped() != 0 {
		t.Fatalf("%d skipped keys left after every message arrived", bc.Skipped())
	}
	// The state survives a marshal round trip, skipped keys included.
	m5, _, err := own.Seal(KindText, []byte("late"), goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	m6, _, err := own.Seal(KindText, []byte("later"), goldenNow.Add(time.Second))
	if err != nil || m6.Iteration != m5.Iteration {
		t.Fatalf("sealing from the same state twice: %v (iterations %d, %d)", err, m5.Iteration, m6.Iteration)
	}
	for _, c := range []*SenderChain{own, bc} {
		p, err := ParseSenderChain(c.Marshal())
		if err != nil || !bytes.Equal(p.Marshal(), c.Marshal()) || p.Own() != c.Own() {
			t.Fatalf("chain round trip: %v", err)
		}
	}
}

func TestGroupMessagesRefused(t *testing.T) {
	f := newGroupFixture(t)
	chains := groupMembersChains(t, f)
	a, b, c := f.alice.ID(), f.bob.ID(), f.carol.ID()
	m, _, err := chains[a][a].Seal(KindText, []byte("hello"), goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	reparse := func(fn func(m *GroupMessage)) *GroupMessage {
		p, err := ParseGroupMessage(m.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		fn(p)
		return p
	}
	// Bob holds alice's chain key, not her signing key: what he posts on
	// her chain carries his own chain's signature.
	bobOnAlice := func() *GroupMessage {
		h := m.GroupHeader
		var mk key32
		_, mk = kdfChain(chains[a][b].ck)
		forged, err := sealGroup(h, mk, chains[b][b].signing, []byte("bob, posing as alice"))
		if err != nil {
			t.Fatal(err)
		}
		return forged
	}()
	bobNamesAliceChain := reparse(func(m *GroupMessage) { m.Sender = b })
	far := func() *GroupMessage {
		own := *chains[a][a]
		own.iteration = MaxGroupSkip + 1
		fm, _, err := own.Seal(KindText, []byte("far"), goldenNow)
		if err != nil {
			t.Fatal(err)
		}
		return fm
	}()
	other := groupMembersChains(t, newGroupFixture(t))
	for _, tc := range []struct {
		name  string
		m     *GroupMessage
		chain *SenderChain
		want  error
	}{
		{"tampered ciphertext", reparse(func(m *GroupMessage) { m.Ciphertext = bytes.Clone(m.Ciphertext); m.Ciphertext[3] ^= 1 }), chains[a][b], ErrAuth},
		{"tampered header", reparse(func(m *GroupMessage) { m.Timestamp++ }), chains[a][b], ErrAuth},
		{"tampered signature", reparse(func(m *GroupMessage) { m.Signature = bytes.Clone(m.Signature); m.Signature[0] ^= 1 }), chains[a][b], ErrAuth},
		{"wrong epoch", reparse(func(m *GroupMessage) { m.Epoch = 2 }), chains[a][b], ErrGroupEpoch},
		{"wrong group", m, other[a][b], ErrGroupWrongGroup},
		{"a member posting on another member's chain", bobOnAlice, chains[a][c], ErrAuth},
		{"a member naming another member's chain", bobNamesAliceChain, chains[a][c], ErrGroupWrongSender},
		{"a message for another chain of the sender", m, chains[b][c], ErrGroupWrongSender},
		{"too far ahead", far, chains[a][b], ErrGroupTooFarAhead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.chain.Marshal()
			if _, _, err := tc.chain.Open(tc.m); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
			// A validator's Check and the reader's OpenVerified refuse it too.
			v, err := tc.chain.Public().Check(tc.m)
			if err == nil {
				_, _, err = tc.chain.OpenVerified(v)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check, OpenVerified = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(tc.chain.Marshal(), before) {
				t.Fatal("a refused message changed the chain")
			}
		})
	}
	// Posting on someone else's chain is refused at the source, too.
	if _, _, err := chains[a][b].Seal(KindText, []byte("x"), goldenNow); !errors.Is(err, ErrGroupWrongSender) {
		t.Fatalf("sealing on a received chain = %v, want ErrGroupWrongSender", err)
	}
	// The real message still opens after all that.
	if _, _, err := chains[a][b].Open(m); err != nil {
		t.Fatalf("the untouched message: %v", err)
	}
}

// TestGroupSkippedKeys checks the limit on keys of skipped iterations:
// a jump of exactly MaxGroupSkip is accepted, the keys it leaves are kept
// up to MaxGroupSkip, and the oldest go first.
func TestGroupSkippedKeys(t *testing.T) {
	f := newGroupFixture(t)
	chains := groupMembersChains(t, f)
	a, b := f.alice.ID(), f.bob.ID()
	own := chains[a][a]
	seal := func(n uint32) *GroupMessage {
		c := *own
		for c.iteration < n {
			c.ck, _ = kdfChain(c.ck)
			c.iteration++
		}
		m, _, err := c.Seal(KindText, []byte("m"), goldenNow)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	bc := chains[a][b]
	_, bc, err := bc.Open(seal(MaxGroupSkip))
	if err != nil {
		t.Fatalf("a jump of exactly MaxGroupSkip: %v", err)
	}
	if bc.Skipped() != MaxGroupSkip {
		t.Fatalf("%d skipped keys, want %d", bc.Skipped(), MaxGroupSkip)
	}
	// Ten more skipped: the ten oldest go.
	if _, bc, err = bc.Open(seal(MaxGroupSkip + 11)); err != nil {
		t.Fatal(err)
	}
	if bc.Skipped() != MaxGroupSkip {
		t.Fatalf("%d skipped keys, want %d", bc.Skipped(), MaxGroupSkip)
	}
	if _, _, err := bc.Open(seal(5)); !errors.Is(err, ErrGroupReplay) {
		t.Fatalf("a dropped key = %v, want ErrGroupReplay", err)
	}
	if _, _, err := bc.Open(seal(10)); err != nil {
		t.Fatalf("the oldest kept key: %v", err)
	}
	if _, err := ParseSenderChain(bc.Marshal()); err != nil {
		t.Fatalf("a full chain does not parse: %v", err)
	}
}

func TestGroupLeave(t *testing.T) {
	l := GroupLeave{Group: GroupID{1, 2, 3}, Epoch: 7}
	b := MarshalGroupLeave(l)
	if len(b) != GroupIDSize+8 {
		t.Fatalf("encoded leave of %d bytes", len(b))
	}
	got, err := ParseGroupLeave(b)
	if err != nil || got != l {
		t.Fatalf("ParseGroupLeave = %+v, %v; want %+v", got, err, l)
	}
	for _, bad := range [][]byte{nil, b[:len(b)-1], append(b, 0)} {
		if _, err := ParseGroupLeave(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseGroupLeave(%d bytes) = %v, want ErrMalformed", len(bad), err)
		}
	}
	if KindGroupLeave.String() != "group-leave" {
		t.Errorf("KindGroupLeave.String() = %q", KindGroupLeave.String())
	}
}
