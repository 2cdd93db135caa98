package node

import (
	"bufio"
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/parley-chat/parley/node/grouprelay"
	"github.com/parley-chat/parley/protocol"
)

// Relay sync on /parley/group-relay-sync/1.0.0: a group relay that was
// away asks the members it meets on a topic for what was posted there
// meanwhile (grouprelay/catchup.go). It holds no chain key; it presents
// its ticket for the topic instead, which this node answers only when the
// ticket is of the epoch it holds, for that epoch's topic, and signed by
// a chain of an admin of its state (of this epoch or, for a ticket that
// follows the previous epoch's, of that one): protocol
// RelayTicket.VerifyFor. The answer is the ciphertext of the ticket's
// chains this node stored, which the ticket entitles the relay to carry
// anyway, as a group sync response.

const groupRelaySyncProtocol = libp2pprotocol.ID(grouprelay.RelaySyncID)

// handleRelaySync answers one relay sync request; a request whose ticket
// does not check gets the stream reset and nothing.
func (g *groups) handleRelaySync(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(groupSyncTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), groupSyncTimeout)
	defer cancel()
	r, err := protocol.ReadRelaySyncRequest(bufio.NewReader(s))
	if err != nil {
		_ = s.Reset()
		return
	}
	out, err := g.relaySyncAnswer(ctx, r)
	if err != nil {
		g.log.Debug("relay sync request refused", "peer", s.Conn().RemotePeer().String(), "err", err)
		_ = s.Reset()
		return
	}
	if err := protocol.WriteGroupSyncResponse(s, out); err != nil {
		_ = s.Reset()
	}
}

// relaySyncAnswer checks r's ticket against the group whose current
// topic it names and returns the stored messages it asks for.
func (g *groups) relaySyncAnswer(ctx context.Context, r *protocol.RelaySyncRequest) ([][]byte, error) {
	name := r.Ticket.Topic()
	var id protocol.GroupID
	found := false
	g.mu.Lock()
	for gid, t := range g.topics {
		if t.name == name {
			id, found = gid, true
			break
		}
	}
	g.mu.Unlock()
	if !found {
		return nil, protocol.ErrNotForMe
	}
	gr, err := g.st.Group(ctx, id)
	if err != nil {
		return nil, err
	}
	if gr.Removed {
		return nil, ErrNotMember
	}
	st := gr.State
	chains, err := g.st.SenderChains(ctx, id, st.Epoch)
	if err != nil {
		return nil, err
	}
	senders := make(map[protocol.ChainID]protocol.ID, len(chains))
	for _, c := range chains {
		senders[c.ID()] = c.Sender()
	}
	adminChain := func(c protocol.ChainID) bool {
		if s, ok := senders[c]; ok {
			return st.IsAdmin(s)
		}
		if st.Epoch < 2 {
			return false
		}
		prev, err := g.st.SenderChains(ctx, id, st.Epoch-1)
		if err != nil {
			return false
		}
		for _, p := range prev {
			if p.ID() == c {
				return st.IsAdmin(p.Sender())
			}
		}
		return false
	}
	if err := r.Ticket.VerifyFor(st, adminChain); err != nil {
		return nil, err
	}
	var out [][]byte
	for _, w := range r.Wants {
		sender, ok := senders[w.Chain]
		if !ok {
			continue
		}
		if len(out) == protocol.MaxSyncMessages {
			break
		}
		msgs, err := g.st.GroupChainMessages(ctx, id, sender, w.Chain, w.From, protocol.MaxSyncMessages-len(out))
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Epoch == st.Epoch && len(m.Raw) > 0 {
				out = append(out, m.Raw)
			}
		}
	}
	return out, nil
}
