package node

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// peerConnected is the host's notification of a new connection: a
// friend's device coming online gets what is queued for them at once.
func (s *session) peerConnected(p peer.ID) {
	s.mu.Lock()
	user, ok := s.devices[p]
	first := ok && !s.online[user]
	if first {
		s.online[user] = true
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	if first {
		s.n.events.publish(Event{Type: EventPeerOnline, User: user, Peer: p})
	}
	s.outbox.Rush(user)
}

// peerDisconnected is the host's notification of a closed connection: the
// friend goes offline when none of their devices is connected any more.
func (s *session) peerDisconnected(p peer.ID) {
	s.mu.Lock()
	user, ok := s.devices[p]
	var devices []peer.ID
	if ok && s.online[user] {
		devices = s.friends[user].devices
	}
	s.mu.Unlock()
	if len(devices) == 0 || s.anyConnected(devices) {
		return
	}
	s.mu.Lock()
	last := s.online[user]
	s.online[user] = false
	s.mu.Unlock()
	if last {
		s.n.events.publish(Event{Type: EventPeerOffline, User: user, Peer: p})
	}
}

// anyConnected reports whether the host has a connection to any of ids.
func (s *session) anyConnected(ids []peer.ID) bool {
	for _, id := range ids {
		if s.host.Network().Connectedness(id) == network.Connected {
			return true
		}
	}
	return false
}

// dialKnown connects, once at start, to every accepted friend's devices
// (directoryLoop dials the bootstrap peers), so they learn our (possibly new) addresses
// and send what they queued for us.
func (s *session) dialKnown(ctx context.Context) {
	s.mu.Lock()
	var fes []*friendEntry
	for _, fe := range s.friends {
		if fe.f.Status == store.FriendAccepted || fe.f.Status == store.FriendPendingOut {
			fes = append(fes, fe)
		}
	}
	s.mu.Unlock()
	for _, fe := range fes {
		if ctx.Err() != nil {
			return
		}
		s.dialFriendNow(ctx, fe)
	}
}

// dialFriend connects to a friend's devices in the background.
func (s *session) dialFriend(fe *friendEntry) {
	s.track.goFunc(func() { s.dialFriendNow(s.life, fe) })
}

func (s *session) dialFriendNow(ctx context.Context, fe *friendEntry) {
	for _, info := range fe.infos {
		if info.ID == s.host.ID() || s.host.Network().Connectedness(info.ID) == network.Connected {
			continue
		}
		// Without addresses, the routed host asks the DHT for them.
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		err := s.host.Connect(dctx, info)
		cancel()
		if err != nil {
			s.log.Debug("friend device unreachable", "friend", fe.f.UserID.String(), "peer", info.ID.String(), "err", err)
		}
	}
}

// Connect dials a peer by a multiaddr that ends in /p2p/<peer ID>.
func (n *Node) Connect(ctx context.Context, addr string) error {
	s, err := n.session()
	if err != nil {
		return err
	}
	return s.connect(ctx, addr)
}

func (s *session) connect(ctx context.Context, addr string) error {
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return fmt.Errorf("%w: address: %v", ErrInvalid, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return fmt.Errorf("%w: address must end in /p2p/<peer ID>: %v", ErrInvalid, err)
	}
	if info.ID == s.host.ID() {
		return fmt.Errorf("%w: that is this node", ErrInvalid)
	}
	s.host.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.AddressTTL)
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	if err := s.host.Connect(dctx, *info); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
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
	Fingerprint string
}

// Me returns the own user, with a freshly signed invite card.
func (n *Node) Me(ctx context.Context) (Me, error) {
	s, err := n.session()
	if err != nil {
		return Me{}, err
	}
	c, err := s.ownCard()
	if err != nil {
		return Me{}, err
	}
	s.mu.Lock()
	name := s.name
	s.mu.Unlock()
	return Me{
		UserID:      s.me,
		Name:        name,
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
	s, err := n.session()
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	reach := s.reach
	s.mu.Unlock()
	return Info{
		PeerID:         s.host.ID(),
		Addrs:          p2pAddrs(s.host),
		ConnectedPeers: s.host.Network().Peers(),
		Reachability:   reach,
	}, nil
}
