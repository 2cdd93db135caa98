package node

import (
	"bufio"
	"context"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/node/grouprelay"
	"github.com/parley-chat/parley/protocol"
)

// relaySyncAt asks member m on the relay sync protocol from host p with
// ticket tk, for every chain of the ticket from iteration 0, and returns
// the answer (an error when m refused: the stream is reset).
func relaySyncAt(t *testing.T, p, m *groupMember, tk *protocol.RelayTicket) ([]*protocol.GroupMessage, error) {
	t.Helper()
	ctx := context.Background()
	if err := p.h.Connect(ctx, peer.AddrInfo{ID: m.h.ID(), Addrs: m.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := p.h.NewStream(ctx, m.h.ID(), groupRelaySyncProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := &protocol.RelaySyncRequest{Ticket: tk}
	for _, k := range tk.Keys {
		req.Wants = append(req.Wants, protocol.RelaySyncWant{Chain: k.Chain})
	}
	if err := protocol.WriteRelaySyncRequest(s, req); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	return protocol.ReadGroupSyncResponse(bufio.NewReader(s))
}

// TestGroupRelaySyncRefused: a member hands what it stored of a topic to
// a peer presenting the relay's ticket for it, and nothing to one
// presenting a ticket for another topic, a forged one, one signed by a
// key of no admin of the group, or one of an epoch the group has left.
func TestGroupRelaySyncRefused(t *testing.T) {
	relay := startGroupRelay(t, t.TempDir(), "", newRunningClock(), grouprelay.Limits{})
	net := newGroupNet(t, 2, false)
	net.useRelay(relay)
	ctx := context.Background()
	admin, member := net.members[0], net.members[1]
	st, err := admin.g.createGroup(ctx, "relay sync", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	relay.waitTicket(t, st, 2)
	sent, err := admin.g.sendGroup(ctx, st.Group, "for the relay")
	if err != nil {
		t.Fatal(err)
	}
	net.waitHistory(1, st.Group, map[protocol.MsgID]string{sent.ID: "for the relay"})
	real := relay.srv.Ticket(protocol.Topic(st))
	asker := hostilePeer(t, relay)

	msgs, err := relaySyncAt(t, asker, member, real)
	if err != nil || len(msgs) != 1 || msgs[0].MsgID != sent.ID {
		t.Fatalf("the relay's ticket: %d messages, %v; want the one posted", len(msgs), err)
	}

	forger := newForger(t)
	tampered := *real
	tampered.Issued++
	for name, tc := range map[string]struct {
		tk   *protocol.RelayTicket
		want error
	}{
		"another topic": {forger.sign(&protocol.RelayTicket{
			Version: real.Version, Proof: protocol.TopicProof{7}, Epoch: real.Epoch, Issued: real.Issued, Members: 1,
			Keys: []protocol.RelayKey{{Chain: forger.chain, Admin: true}},
		}), protocol.ErrNotForMe},
		"forged signature": {copyTicket(&tampered), protocol.ErrAuth},
		"signed by no admin": {forger.sign(&protocol.RelayTicket{
			Version: real.Version, Proof: real.Proof, Epoch: real.Epoch, Issued: real.Issued + 1,
			Keys: forger.withKey(real.Keys), Members: uint32(len(real.Keys) + 1),
		}), protocol.ErrGroupNotAdmin},
		"another epoch": {forger.sign(&protocol.RelayTicket{
			Version: real.Version, Proof: real.Proof, Epoch: real.Epoch + 1, Issued: real.Issued + 1,
			Keys: forger.withKey(real.Keys), Members: uint32(len(real.Keys) + 1),
		}), protocol.ErrGroupEpoch},
	} {
		if msgs, err := relaySyncAt(t, asker, member, tc.tk); err == nil || len(msgs) != 0 {
			t.Errorf("%s: answered with %d messages", name, len(msgs))
		}
		req := &protocol.RelaySyncRequest{Ticket: tc.tk, Wants: []protocol.RelaySyncWant{{Chain: tc.tk.Keys[0].Chain}}}
		if out, err := member.g.relaySyncAnswer(ctx, req); !errors.Is(err, tc.want) || len(out) != 0 {
			t.Errorf("%s: %d messages, %v; want %v", name, len(out), err, tc.want)
		}
	}

	// After the next epoch, the old epoch's real ticket gets nothing.
	st2, err := admin.g.changeMembers(ctx, st.Group, "renamed", st.Members)
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st2)
	if msgs, err := relaySyncAt(t, asker, member, real); err == nil || len(msgs) != 0 {
		t.Fatalf("the ticket of a left epoch: answered with %d messages", len(msgs))
	}
}
