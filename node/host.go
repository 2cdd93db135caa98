package node

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// MsgProtocol is the 1:1 messaging protocol.
const MsgProtocol = protocol.ID("/parley/msg/1.0.0")

// Limits of the messaging protocol in the resource manager: in all, and
// per peer. A peer gets a few concurrent streams; one is all a sender
// needs, since frames are pipelined on it.
var (
	msgProtocolLimit = rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 64 << 20}
	msgProtocolInc   = rcmgr.BaseLimitIncrease{Streams: 128, Memory: 8 << 20}
	msgPeerLimit     = rcmgr.BaseLimit{StreamsInbound: 4, StreamsOutbound: 4, Streams: 8, Memory: 4 << 20}
)

// userAgent is what identify tells peers.
const userAgent = "parley/0.1"

// newHost builds the libp2p host: TCP and QUIC, Noise and TLS, a
// connection manager, and a resource manager with explicit limits for our
// protocol (LIBP2P.md §1).
func newHost(cfg Config, key crypto.PrivKey) (host.Host, error) {
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("node: connection manager: %w", err)
	}
	lim := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&lim)
	lim.AddProtocolLimit(MsgProtocol, msgProtocolLimit, msgProtocolInc)
	lim.AddProtocolPeerLimit(MsgProtocol, msgPeerLimit, rcmgr.BaseLimitIncrease{})
	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(lim.Scale(512<<20, 1024)))
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(mgr),
		libp2p.UserAgent(userAgent),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		mgr.Close()
		cm.Close()
		return nil, fmt.Errorf("node: start libp2p host: %w", err)
	}
	return h, nil
}
