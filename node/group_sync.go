package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/parley-chat/parley/node/grouprelay"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Group sync on /parley/group-sync/1.0.0: a member asks another member's
// node for the messages of a group's epoch it has not received, chain by
// chain, from the first iteration it misses (protocol.GroupSyncRequest,
// signed with its own chain key of the epoch); the responder answers
// with the ciphertext it stored, and the asker opens and stores each as
// if it came over the topic, once. One request, one response per stream.
// A node asks every peer that joins one of its group topics (catchUp).

const groupSyncProtocol = libp2pprotocol.ID(grouprelay.SyncID)

// groupSyncTimeout bounds one sync exchange, on both sides.
const groupSyncTimeout = 20 * time.Second

// handleSync answers one sync request from a member of the epoch it names;
// anyone else gets the stream reset and nothing.
func (g *groups) handleSync(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(groupSyncTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), groupSyncTimeout)
	defer cancel()
	r, err := protocol.ReadGroupSyncRequest(bufio.NewReader(s))
	if err != nil {
		_ = s.Reset()
		return
	}
	p, ok := g.chainOf(ctx, r.Group, r.Epoch, r.Requester, r.RequesterChain)
	if !ok {
		_ = s.Reset()
		return
	}
	if err := p.VerifySync(r, []byte(g.host.ID()), g.now()); err != nil {
		g.log.Debug("group sync request refused", "peer", s.Conn().RemotePeer().String(), "err", err)
		_ = s.Reset()
		return
	}
	var out [][]byte
	for _, w := range r.Wants {
		if len(out) == protocol.MaxSyncMessages {
			break
		}
		msgs, err := g.st.GroupChainMessages(ctx, r.Group, w.Sender, w.Chain, w.From, protocol.MaxSyncMessages-len(out))
		if err != nil {
			g.log.Warn("group sync: reading messages", "err", err)
			_ = s.Reset()
			return
		}
		for _, m := range msgs {
			if m.Epoch == r.Epoch && len(m.Raw) > 0 {
				out = append(out, m.Raw)
			}
		}
	}
	if err := protocol.WriteGroupSyncResponse(s, out); err != nil {
		_ = s.Reset()
	}
}

// catchUp asks every peer that joins a group's topic for what this node
// missed (group sync), until the topic is left: a member back from being
// offline, or a peer newly connected, fills the gaps gossipsub leaves.
func (g *groups) catchUp(ctx context.Context, t *groupTopic) {
	for {
		ev, err := t.peers.NextPeerEvent(ctx)
		if err != nil {
			return // cancelled, or the node stopping
		}
		if ev.Type != pubsub.PeerJoin {
			continue
		}
		n, err := g.syncGroup(ctx, t.group, ev.Peer)
		switch {
		case err != nil:
			g.log.Debug("group sync failed", "group", t.group.String(), "peer", ev.Peer.String(), "err", err)
		case n > 0:
			g.log.Debug("group sync caught up", "group", t.group.String(), "messages", n)
		}
	}
}

// syncGroup asks the node of peer p for the messages of a group's current
// epoch this node misses, and stores what opens; it returns how many it
// stored.
func (g *groups) syncGroup(ctx context.Context, id protocol.GroupID, p peer.ID) (int, error) {
	gr, err := g.st.Group(ctx, id)
	if err != nil {
		return 0, err
	}
	if gr.Removed {
		return 0, fmt.Errorf("%w: %s", ErrNotMember, id)
	}
	chains, err := g.st.SenderChains(ctx, id, gr.State.Epoch)
	if err != nil {
		return 0, err
	}
	var own *protocol.SenderChain
	var wants []protocol.GroupSyncWant
	for _, c := range chains {
		switch {
		case c.Own():
			own = c
		case c.Sender() != g.me:
			wants = append(wants, protocol.GroupSyncWant{Sender: c.Sender(), Chain: c.ID(), From: c.FirstMissing()})
		}
	}
	if own == nil || len(wants) == 0 {
		return 0, nil
	}
	req, err := own.SyncRequest([]byte(p), wants, g.now())
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, groupSyncTimeout)
	defer cancel()
	s, err := g.host.NewStream(ctx, p, groupSyncProtocol)
	if err != nil {
		return 0, fmt.Errorf("%w: group sync: %v", ErrUnavailable, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(groupSyncTimeout))
	if err := protocol.WriteGroupSyncRequest(s, req); err != nil {
		_ = s.Reset()
		return 0, fmt.Errorf("%w: group sync: %v", ErrUnavailable, err)
	}
	_ = s.CloseWrite()
	msgs, err := protocol.ReadGroupSyncResponse(bufio.NewReader(s))
	if err != nil {
		return 0, fmt.Errorf("%w: group sync: %v", ErrUnavailable, err)
	}
	stored := 0
	for _, m := range msgs {
		if m.Group != id || m.Epoch != gr.State.Epoch {
			continue
		}
		if _, err := g.receive(ctx, m); err != nil {
			if !errors.Is(err, store.ErrDuplicate) && !errors.Is(err, protocol.ErrGroupReplay) {
				g.log.Debug("synced group message not stored", "group", id.String(), "err", err)
			}
			continue
		}
		stored++
	}
	return stored, nil
}
