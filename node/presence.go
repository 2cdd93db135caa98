package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// presence is the part that knows who is online: it watches the host's
// connections (a friend is online while one of their devices is
// connected), tells the event bus, hurries the outbox when a friend's
// device connects, dials friends (all of them once at start), and keeps
// the host's reachability. mu guards online and reach, for short reads
// and writes; no other lock is taken while holding it.
type presence struct {
	cfg     Config
	log     *slog.Logger
	host    host.Host
	friends *friendBook
	events  *bus
	// rush tells the outbox a friend's device is connected.
	rush func(to protocol.ID)
	// spawn runs f in a goroutine that Close waits for.
	spawn func(f func(ctx context.Context))

	mu     sync.Mutex
	online map[protocol.ID]bool // friends shown online (last event sent)
	reach  network.Reachability // as AutoNAT last said
}

func newPresence() *presence {
	return &presence{online: make(map[protocol.ID]bool)}
}

// serve watches connections and reachability, and dials every friend
// once, until ctx ends.
func (pr *presence) serve(ctx context.Context) error {
	sub, err := pr.host.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		return fmt.Errorf("node: reachability events: %w", err)
	}
	defer sub.Close()
	nb := &network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { pr.peerConnected(c.RemotePeer()) },
		DisconnectedF: func(_ network.Network, c network.Conn) { pr.peerDisconnected(c.RemotePeer()) },
	}
	pr.host.Network().Notify(nb)
	defer pr.host.Network().StopNotify(nb)
	// Devices may have connected before the notifications started.
	for _, fe := range pr.friends.having(func(*friendEntry) bool { return true }) {
		pr.cached(fe)
	}
	pr.spawn(pr.dialKnown)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-sub.Out():
			if !ok {
				return nil
			}
			if r, ok := e.(event.EvtLocalReachabilityChanged); ok {
				pr.mu.Lock()
				pr.reach = r.Reachability
				pr.mu.Unlock()
			}
		}
	}
}

// peerConnected is the host's notification of a new connection: a
// friend's device coming online gets what is queued for them at once.
func (pr *presence) peerConnected(p peer.ID) {
	user, ok := pr.friends.userOf(p)
	if !ok {
		return
	}
	pr.mu.Lock()
	first := !pr.online[user]
	pr.online[user] = true
	pr.mu.Unlock()
	if first {
		pr.events.publish(Event{Type: EventPeerOnline, User: user, Peer: p})
	}
	pr.rush(user)
}

// peerDisconnected is the host's notification of a closed connection: the
// friend goes offline when none of their devices is connected any more.
func (pr *presence) peerDisconnected(p peer.ID) {
	user, ok := pr.friends.userOf(p)
	if !ok || !pr.isOnline(user) || pr.anyConnected(pr.friends.devicesOf(user)) {
		return
	}
	pr.mu.Lock()
	last := pr.online[user]
	pr.online[user] = false
	pr.mu.Unlock()
	if last {
		pr.events.publish(Event{Type: EventPeerOffline, User: user, Peer: p})
	}
}

// cached is told of a friend cached anew: a device may have connected
// before we knew whose it was (their contact request came over that
// connection).
func (pr *presence) cached(fe *friendEntry) {
	if pr.isOnline(fe.f.UserID) || !pr.anyConnected(fe.devices) {
		return
	}
	pr.mu.Lock()
	pr.online[fe.f.UserID] = true
	pr.mu.Unlock()
}

// forget drops a removed friend.
func (pr *presence) forget(id protocol.ID) {
	pr.mu.Lock()
	delete(pr.online, id)
	pr.mu.Unlock()
}

// isOnline reports whether a friend is shown online.
func (pr *presence) isOnline(id protocol.ID) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.online[id]
}

func (pr *presence) reachability() network.Reachability {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.reach
}

// direct reports whether the host has a direct (not relayed, not
// limited) connection to the peer at the other end of str, which runs on a
// relayed one: a hole punch succeeded (outbox.Config.Better).
func (pr *presence) direct(str network.Stream) bool {
	for _, c := range pr.host.Network().ConnsToPeer(str.Conn().RemotePeer()) {
		if !c.Stat().Limited && !c.IsClosed() {
			return true
		}
	}
	return false
}

// anyConnected reports whether the host has a connection to any of ids.
func (pr *presence) anyConnected(ids []peer.ID) bool {
	for _, id := range ids {
		if pr.host.Network().Connectedness(id) == network.Connected {
			return true
		}
	}
	return false
}

// dialKnown connects, once at start, to every accepted friend's devices
// (the publisher dials the bootstrap peers), so they learn our (possibly
// new) addresses and send what they queued for us.
func (pr *presence) dialKnown(ctx context.Context) {
	fes := pr.friends.having(func(fe *friendEntry) bool {
		return fe.f.Status == store.FriendAccepted || fe.f.Status == store.FriendPendingOut
	})
	for _, fe := range fes {
		if ctx.Err() != nil {
			return
		}
		pr.dialFriendNow(ctx, fe)
	}
}

// dialFriend connects to a friend's devices in the background.
func (pr *presence) dialFriend(fe *friendEntry) {
	pr.spawn(func(ctx context.Context) { pr.dialFriendNow(ctx, fe) })
}

func (pr *presence) dialFriendNow(ctx context.Context, fe *friendEntry) {
	for _, info := range fe.infos {
		if info.ID == pr.host.ID() || pr.host.Network().Connectedness(info.ID) == network.Connected {
			continue
		}
		// Without addresses, the routed host asks the DHT for them.
		dctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(ctx, "parley-friend"), pr.cfg.DialTimeout)
		err := pr.host.Connect(dctx, info)
		cancel()
		if err != nil {
			pr.log.Debug("friend device unreachable", "friend", fe.f.UserID.String(), "peer", info.ID.String(), "err", err)
		}
	}
}

// Connect dials a peer by a multiaddr that ends in /p2p/<peer ID>.
func (n *Node) Connect(ctx context.Context, addr string) error {
	s, err := n.running()
	if err != nil {
		return err
	}
	return s.presence.connect(ctx, addr)
}

func (pr *presence) connect(ctx context.Context, addr string) error {
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return fail(ErrInvalid, "address: %v", err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return fail(ErrInvalid, "address must end in /p2p/<peer ID>: %v", err)
	}
	if info.ID == pr.host.ID() {
		return fail(ErrInvalid, "that is this node")
	}
	pr.host.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.AddressTTL)
	dctx, cancel := context.WithTimeout(ctx, pr.cfg.DialTimeout)
	defer cancel()
	if err := pr.host.Connect(dctx, *info); err != nil {
		return fail(ErrUnavailable, "%v", err)
	}
	return nil
}

// Me describes the node's own user.
type Me struct {
	UserID      protocol.ID
	Name        string
	PeerID      peer.ID
	Addrs       []string // full multiaddrs, with /p2p/
	Invite      string   // the own card as a parley:card/ link
	ShortInvite string   // a parley:invite/ link that fits a small QR code (invite.go)
	Fingerprint string
}

// Me returns the own user, with a freshly signed invite card.
func (n *Node) Me(ctx context.Context) (Me, error) {
	s, err := n.running()
	if err != nil {
		return Me{}, err
	}
	c, err := s.keys.ownCard()
	if err != nil {
		return Me{}, err
	}
	short, err := s.invites.link()
	if err != nil {
		return Me{}, err
	}
	return Me{
		ShortInvite: short,
		UserID:      s.me,
		Name:        s.keys.displayName(),
		PeerID:      s.host.ID(),
		Addrs:       p2pAddrs(s.host),
		Invite:      c.URI(),
		Fingerprint: s.me.Fingerprint(),
	}, nil
}

// Info describes the libp2p side of a running node.
type Info struct {
	PeerID         peer.ID
	Addrs          []string
	ConnectedPeers []peer.ID
	Reachability   network.Reachability
}

// Info returns the host's peer ID, addresses, connections and
// reachability.
func (n *Node) Info(ctx context.Context) (Info, error) {
	s, err := n.running()
	if err != nil {
		return Info{}, err
	}
	reach := s.presence.reachability()
	return Info{
		PeerID:         s.host.ID(),
		Addrs:          p2pAddrs(s.host),
		ConnectedPeers: s.host.Network().Peers(),
		Reachability:   reach,
	}, nil
}
