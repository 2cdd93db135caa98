package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/parley-chat/parley/node/grouprelay"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Group relays (package node/grouprelay): the relays a group chooses
// carry its topic, admit only its members' chain keys and keep its
// recent traffic for members who were offline. A group's relays are the
// mailbox relays of the admin who made its current epoch (the first two
// relays it takes mail at, else its bootstrap peers). That admin's node
// hands each of them a relay ticket of the epoch — the topic proof and
// every chain key of the epoch it knows, admins' marked — when it makes
// the epoch, again whenever it learns another member's sender key of the
// epoch, and at start; it retries with a backoff until every relay has
// answered. A ticket of a new epoch follows this node's ticket of the
// epoch before (signed with its chain of that epoch), so that relays
// that held the old one carry the new one under the same authority.
// Members need nothing more: a relay on the topic is a peer that joins
// it, and catchUp asks every such peer (group_sync.go).

// Ticket timing: retries with a backoff, and a refresh while the group
// lives (a relay drops a topic nobody posted on for its retention, 14
// days by default).
const (
	relayRetryMin = time.Second
	relayRetryMax = 5 * time.Minute
	relayRefresh  = 24 * time.Hour
)

// groupRelays issues this node's groups' relay tickets. mu guards the
// maps.
type groupRelays struct {
	relays []peer.AddrInfo

	mu     sync.Mutex
	work   map[protocol.GroupID]chan struct{}                    // a running issuer per group; its kick (capacity 1)
	latest map[protocol.GroupID]map[uint64]*protocol.RelayTicket // the last ticket made, per group and epoch
	// others are the groups whose current epoch another admin made: a
	// sender key of theirs arriving starts nothing here.
	others map[protocol.GroupID]bool
}

func newGroupRelays(relays []peer.AddrInfo) *groupRelays {
	return &groupRelays{
		relays: relays, work: map[protocol.GroupID]chan struct{}{},
		latest: map[protocol.GroupID]map[uint64]*protocol.RelayTicket{}, others: map[protocol.GroupID]bool{},
	}
}

// relayState issues the ticket of a state just adopted (if this node
// made it).
func (g *groups) relayState(st *protocol.GroupState) {
	if rt := g.relays; rt != nil {
		rt.mu.Lock()
		delete(rt.others, st.Group)
		rt.mu.Unlock()
	}
	g.relayTicket(st.Group)
}

// relayTicket (re)issues a group's ticket to its relays in the
// background, if this node issues its tickets; it never blocks.
func (g *groups) relayTicket(id protocol.GroupID) {
	rt := g.relays
	if rt == nil || len(rt.relays) == 0 {
		return
	}
	rt.mu.Lock()
	if rt.others[id] {
		rt.mu.Unlock()
		return
	}
	if kick, ok := rt.work[id]; ok {
		select {
		case kick <- struct{}{}:
		default:
		}
		rt.mu.Unlock()
		return
	}
	kick := make(chan struct{}, 1)
	rt.work[id] = kick
	rt.mu.Unlock()
	g.spawn(func(ctx context.Context) { g.issueTickets(ctx, id, kick) })
}

// issueTickets makes the group's ticket and offers it to every relay
// until each has answered, starting over when kicked and once a day (with
// the same ticket when nothing it names changed: makeTicket); it ends
// when this node no longer issues the group's tickets (or stops).
func (g *groups) issueTickets(ctx context.Context, id protocol.GroupID, kick chan struct{}) {
	rt := g.relays
	// stop ends the issuer unless a kick came meanwhile; others marks
	// the group as one this node does not issue tickets of.
	stop := func(others bool) bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		select {
		case <-kick:
			return false
		default:
			delete(rt.work, id)
			if others {
				rt.others[id] = true
			}
			return true
		}
	}
	for ctx.Err() == nil {
		t, err := g.makeTicket(ctx, id, true)
		if err != nil {
			g.log.Debug("group relay ticket not made", "group", id.String(), "err", err)
		}
		if t == nil {
			if stop(err == nil) {
				return
			}
			continue
		}
		if !g.offerTicket(ctx, id, t, kick) {
			continue // kicked, or stopping
		}
		timer := time.NewTimer(relayRefresh)
		select {
		case <-ctx.Done():
		case <-kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// offerTicket offers t to every relay, again after a backoff while some
// fail. It returns true once each relay has taken or refused it, false
// when kicked (a newer ticket is due) or stopped.
func (g *groups) offerTicket(ctx context.Context, id protocol.GroupID, t *protocol.RelayTicket, kick chan struct{}) bool {
	pending := append([]peer.AddrInfo(nil), g.relays.relays...)
	wait := relayRetryMin
	for {
		var left []peer.AddrInfo
		for _, r := range pending {
			g.host.Peerstore().AddAddrs(r.ID, r.Addrs, peerstore.PermanentAddrTTL)
			err := grouprelay.Offer(ctx, g.host, r.ID, t)
			if errors.Is(err, protocol.ErrTicketLineage) && len(t.Previous) != 0 {
				// The relay does not hold the ticket this one follows:
				// it takes one of the epoch's own admin keys instead.
				var first *protocol.RelayTicket
				if first, err = g.makeTicket(ctx, id, false); err == nil && first != nil {
					err = grouprelay.Offer(ctx, g.host, r.ID, first)
				}
			}
			var re *grouprelay.RefusedError
			switch {
			case err == nil:
			case errors.As(err, &re) && !re.Temporary():
				g.log.Warn("group relay refused the ticket", "group", id.String(), "relay", r.ID.String(), "err", err)
			default:
				g.log.Debug("group relay ticket not delivered", "group", id.String(), "relay", r.ID.String(), "err", err)
				left = append(left, r)
			}
		}
		if pending = left; len(pending) == 0 {
			return true
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-kick:
			timer.Stop()
			return false
		case <-timer.C:
		}
		wait = min(2*wait, relayRetryMax)
	}
}

// makeTicket makes the group's ticket of its current epoch, or nil when
// this node does not issue it: only the admin who signed the epoch's
// state does. With lineage, a ticket follows this node's last ticket of
// the epoch before, if it has one. When the last ticket made names the
// same keys and follows the same one, it is returned again. It reads the
// store only (no group lock).
func (g *groups) makeTicket(ctx context.Context, id protocol.GroupID, lineage bool) (*protocol.RelayTicket, error) {
	gr, err := g.st.Group(ctx, id)
	if err != nil {
		return nil, err
	}
	st := gr.State
	if gr.Removed || st.Signer != g.me || !st.IsAdmin(g.me) {
		return nil, nil
	}
	chains, err := g.st.SenderChains(ctx, id, st.Epoch)
	if err != nil {
		return nil, err
	}
	var own *protocol.SenderChain
	keys := make([]protocol.RelayKey, 0, len(chains))
	for _, c := range chains {
		if c.Sender() == g.me {
			if c.Own() {
				own = c
			}
			continue
		}
		if st.IsMember(c.Sender()) {
			keys = append(keys, protocol.RelayKey{Chain: c.ID(), Admin: st.IsAdmin(c.Sender())})
		}
	}
	if own == nil {
		return nil, fmt.Errorf("%w: own sender key of epoch %d", store.ErrNotFound, st.Epoch)
	}
	rt := g.relays
	rt.mu.Lock()
	prev, last := rt.latest[id][st.Epoch-1], rt.latest[id][st.Epoch]
	rt.mu.Unlock()
	signer := own
	if !lineage {
		prev = nil
	}
	if prev != nil {
		if c, err := g.st.OwnChain(ctx, id, prev.Epoch); err == nil && prev.IsAdmin(c.ID()) {
			signer = c
		} else {
			prev = nil
		}
	}
	now := g.now()
	if last != nil && now.UnixMilli() <= last.Issued {
		now = time.UnixMilli(last.Issued + 1)
	}
	t, err := protocol.NewRelayTicket(signer, own, st, keys, prev, now)
	if err != nil {
		return nil, err
	}
	if last != nil && sameTicket(t, last) {
		// Nothing it names changed (a kick that came after the last
		// ticket was made, with what woke it): offer the same one, so
		// that the next epoch's ticket follows what the relays hold.
		return last, nil
	}
	rt.mu.Lock()
	rt.latest[id] = map[uint64]*protocol.RelayTicket{st.Epoch: t}
	if prev != nil {
		rt.latest[id][prev.Epoch] = prev
	}
	rt.mu.Unlock()
	return t, nil
}

// sameTicket reports whether a and b name the same keys for the same
// topic and state, follow the same ticket and are signed with the same
// chain: they differ in their time and signature only.
func sameTicket(a, b *protocol.RelayTicket) bool {
	return a.Epoch == b.Epoch && a.Proof == b.Proof && a.Members == b.Members && a.Signer == b.Signer &&
		bytes.Equal(a.Previous, b.Previous) && slices.Equal(a.Keys, b.Keys)
}
