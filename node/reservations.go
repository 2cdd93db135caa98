package node

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
)

// Backoff of a relay that refused or could not be reached for a
// reservation.
const (
	reserveRetryMin = time.Second
	reserveRetryMax = time.Minute
)

// reserver keeps a slot (a circuit relay v2 reservation) on each of the
// node's relays (its bootstrap peers) from the start, so that friends can
// reach it through them at once, whether or not it is behind NAT: AutoNAT
// takes tens of seconds to decide, and chat must not wait for it. Its
// circuit addresses go on the own card (cardAddrs); the directory record
// lists the relays, from which a friend builds the same addresses
// (relayCircuits). A hole punch (DCUtR, on the relayed connection) then
// makes a direct connection where the NATs allow it.
//
// A reservation lives on the connection to the relay: it is renewed at
// three quarters of its lifetime, and at once when that connection goes.
type reserver struct {
	host    host.Host
	relays  []peer.AddrInfo
	log     *slog.Logger
	changed func() // the card's addresses changed

	mu       sync.Mutex
	circuits map[peer.ID][]ma.Multiaddr // relays holding a slot: our addresses through them
}

func newReserver(h host.Host, relays []peer.AddrInfo, log *slog.Logger, changed func()) *reserver {
	return &reserver{host: h, relays: relays, log: log, changed: changed, circuits: make(map[peer.ID][]ma.Multiaddr)}
}

// serve keeps the reservations until ctx ends.
func (r *reserver) serve(ctx context.Context) error {
	if len(r.relays) == 0 {
		return nil
	}
	sub, err := r.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return err
	}
	defer sub.Close()
	gone := make(map[peer.ID]chan struct{}, len(r.relays))
	var wg sync.WaitGroup
	for _, relay := range r.relays {
		ch := make(chan struct{}, 1)
		gone[relay.ID] = ch
		// The connection carries the reservation: the connection
		// manager must not trim it.
		r.host.ConnManager().Protect(relay.ID, "parley-relay")
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.keep(ctx, relay, ch)
		}()
	}
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-sub.Out():
			if !ok {
				return nil
			}
			ev := e.(event.EvtPeerConnectednessChanged)
			if ch, ok := gone[ev.Peer]; ok && ev.Connectedness != network.Connected {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}
}

// keep holds a reservation on relay: reserves, waits for the renewal time
// or the connection's end, and again; after a failure it backs off.
func (r *reserver) keep(ctx context.Context, relay peer.AddrInfo, gone <-chan struct{}) {
	backoff := reserveRetryMin
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		rsv, err := client.Reserve(rctx, r.host, relay)
		cancel()
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Debug("relay reservation failed", "relay", relay.ID.String(), "err", err, "retry", backoff)
			r.set(relay.ID, nil)
			wait, backoff = backoff, min(2*backoff, reserveRetryMax)
		} else {
			backoff = reserveRetryMin
			r.set(relay.ID, circuitAddrs(relay))
			wait = max(time.Until(rsv.Expiration)*3/4, reserveRetryMin)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-gone:
			// Reserve again at once (it dials the relay again).
		}
		t.Stop()
	}
}

// set records our circuit addresses through relay (none: no slot there)
// and tells when they changed.
func (r *reserver) set(relay peer.ID, addrs []ma.Multiaddr) {
	r.mu.Lock()
	old := r.circuits[relay]
	if len(addrs) == 0 {
		delete(r.circuits, relay)
	} else {
		r.circuits[relay] = addrs
	}
	r.mu.Unlock()
	if !slices.EqualFunc(old, addrs, ma.Multiaddr.Equal) {
		r.log.Info("relay reservation", "relay", relay.String(), "held", len(addrs) > 0)
		if r.changed != nil {
			r.changed()
		}
	}
}

// addrs are our circuit addresses through the relays holding a slot for
// us, in the order of the relays.
func (r *reserver) addrs() []ma.Multiaddr {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ma.Multiaddr
	for _, relay := range r.relays {
		out = append(out, r.circuits[relay.ID]...)
	}
	return out
}

// circuitAddrs are the addresses through relay at which a peer holding a
// slot there is reached: each of the relay's addresses, then
// /p2p/<relay>/p2p-circuit (the dialer appends the peer).
func circuitAddrs(relay peer.AddrInfo) []ma.Multiaddr {
	suffix, err := ma.NewMultiaddr("/p2p/" + relay.ID.String() + "/p2p-circuit")
	if err != nil {
		return nil
	}
	out := make([]ma.Multiaddr, 0, len(relay.Addrs))
	for _, a := range relay.Addrs {
		out = append(out, a.Encapsulate(suffix))
	}
	return out
}

// relayCircuits are the circuit addresses through the relays a directory
// record lists (multiaddrs with /p2p/), for a friend whose card is not
// known or too old to carry them.
func relayCircuits(relays []string) []ma.Multiaddr {
	infos, err := addrInfos(relays)
	if err != nil {
		return nil
	}
	var out []ma.Multiaddr
	for _, info := range infos {
		out = append(out, circuitAddrs(info)...)
	}
	return out
}
