package node

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
)

// Hole punching retries (puncher).
const (
	// punchCheck is how often the puncher looks for friends reached only
	// through a relay.
	punchCheck = 5 * time.Second
	// punchGrace is how long a relayed connection is left to libp2p's
	// own hole punch before the puncher steps in.
	punchGrace = 3 * time.Second
	// punchTries caps the retries per device, punchBackoff is the first
	// wait between them (doubling): behind some NATs (symmetric ones) a
	// hole punch never works, and chat stays on the relay.
	punchTries   = 5
	punchBackoff = 5 * time.Second
)

// puncher retries hole punching where libp2p's single attempt failed.
//
// libp2p's hole punch (DCUtR) runs once per relayed connection, started
// by the side that accepted it, and only if both sides already serve
// /libp2p/dcutr, which a host does only once it has learnt a public
// address of its own (LIBP2P.md §4). Right after a start, a friend's node
// often connects through the relay before that: the attempt fails
// ("protocols not supported") and is never made again, and chat stays on
// the relay for the connection's life. So, once this host serves
// /libp2p/dcutr, for each friend device reached only through a relay for
// longer than punchGrace, the side with the lower peer ID closes the
// relayed connections and dials again through the relay: the friend,
// accepting the new relayed connection, starts a new hole punch. A few
// times per device, with backoff; the messaging streams on the closed
// connection break, and the outbox sends again only what was
// unacknowledged on them.
type puncher struct {
	host    host.Host
	log     *slog.Logger
	devices func() []peer.ID // accepted friends' devices

	// Owned by serve.
	tries map[peer.ID]punchTry
}

type punchTry struct {
	n    int
	next time.Time
}

func newPuncher(h host.Host, log *slog.Logger, devices func() []peer.ID) *puncher {
	return &puncher{host: h, log: log, devices: devices, tries: make(map[peer.ID]punchTry)}
}

// serve checks every punchCheck, and when this host starts serving
// /libp2p/dcutr, until ctx ends.
func (p *puncher) serve(ctx context.Context) error {
	sub, err := p.host.EventBus().Subscribe(new(event.EvtLocalProtocolsUpdated))
	if err != nil {
		return err
	}
	defer sub.Close()
	tick := time.NewTicker(punchCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-sub.Out():
			if !ok {
				return nil
			}
		case <-tick.C:
		}
		p.check(ctx)
	}
}

// ready reports whether this host takes hole punches (serves DCUtR).
func (p *puncher) ready() bool {
	return slices.Contains(p.host.Mux().Protocols(), holepunch.Protocol)
}

func (p *puncher) check(ctx context.Context) {
	if !p.ready() {
		return
	}
	now := time.Now()
	for _, id := range p.devices() {
		conns := p.host.Network().ConnsToPeer(id)
		relayedSince, direct := now, false
		for _, c := range conns {
			if !c.Stat().Limited {
				direct = true
			}
			if o := c.Stat().Opened; o.Before(relayedSince) {
				relayedSince = o
			}
		}
		if len(conns) == 0 || direct {
			delete(p.tries, id)
			continue
		}
		t := p.tries[id]
		if now.Sub(relayedSince) < punchGrace || now.Before(t.next) || t.n >= punchTries ||
			bytes.Compare([]byte(p.host.ID()), []byte(id)) > 0 {
			continue
		}
		t.n++
		t.next = now.Add(punchBackoff << (t.n - 1))
		p.tries[id] = t
		p.log.Debug("hole punch: reconnecting through the relay", "peer", id.String(), "try", t.n)
		for _, c := range conns {
			c.Close()
		}
		dctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(ctx, "parley-punch"), time.Minute)
		err := p.host.Connect(dctx, peer.AddrInfo{ID: id})
		cancel()
		if err != nil {
			p.log.Debug("hole punch: friend unreachable through the relay", "peer", id.String(), "err", err)
		}
	}
}
