package node

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/websocket"
	webtransport "github.com/libp2p/go-libp2p/p2p/transport/webtransport"
	"github.com/libp2p/go-libp2p/x/rate"
	"github.com/prometheus/client_golang/prometheus"
)

// msgProtocol is the 1:1 messaging protocol.
const msgProtocol = protocol.ID("/parley/msg/1.0.0")

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

// hostSpec is what differs between a user node's host and a relay's.
type hostSpec struct {
	key      crypto.PrivKey
	listen   []string
	low      int // connection manager watermarks
	high     int
	metrics  prometheus.Registerer // nil: libp2p metrics off
	perIP    bool                  // raise the per-IP limits (relays)
	extra    []libp2p.Option
	rcmgrOpt []rcmgr.Option
}

// newHost builds a libp2p host: TCP and QUIC, Noise and TLS, a connection
// manager, and a resource manager with explicit limits for our protocol
// (LIBP2P.md §1).
func newHost(spec hostSpec) (host.Host, error) {
	cm, err := connmgr.NewConnManager(spec.low, spec.high, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("node: connection manager: %w", err)
	}
	lim := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&lim)
	lim.AddProtocolLimit(msgProtocol, msgProtocolLimit, msgProtocolInc)
	lim.AddProtocolPeerLimit(msgProtocol, msgPeerLimit, rcmgr.BaseLimitIncrease{})
	ropts := spec.rcmgrOpt
	if spec.perIP {
		ropts = append(ropts, relayIPLimits()...)
	}
	if spec.metrics != nil {
		rcmgr.MustRegisterWith(spec.metrics)
		str, err := rcmgr.NewStatsTraceReporter()
		if err == nil {
			ropts = append(ropts, rcmgr.WithTraceReporter(str))
		}
	}
	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(lim.Scale(512<<20, 1024)), ropts...)
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(spec.key),
		libp2p.ListenAddrStrings(spec.listen...),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		// For networks that pass only web traffic: WebSocket (over TCP,
		// e.g. on port 443 behind a TLS-terminating proxy) and
		// WebTransport (over QUIC, HTTP/3), each used where a listen or
		// friend address names it.
		libp2p.Transport(websocket.New),
		libp2p.Transport(webtransport.New),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(mgr),
		libp2p.UserAgent(userAgent),
	}
	if spec.metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(spec.metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	h, err := libp2p.New(append(opts, spec.extra...)...)
	if err != nil {
		mgr.Close()
		cm.Close()
		return nil, fmt.Errorf("node: start libp2p host: %w", err)
	}
	return h, nil
}

// Per-IP limits of a relay. libp2p allows 8 concurrent connections per
// IPv4 address (/56 for IPv6) and 0.2 new connections a second with a
// burst of 16, which a relay used by one office or one carrier-grade NAT
// exhausts at once (LIBP2P.md §1). A relay allows, per IPv4 address or
// IPv6 /56, relayConnsPerIP connections and relayConnRatePerIP new ones a
// second (burst relayConnBurstPerIP); an IPv6 /48 gets 8 times as many.
const (
	relayConnsPerIP     = 1024
	relayConnRatePerIP  = 20
	relayConnBurstPerIP = 256
)

func relayIPLimits() []rcmgr.Option {
	v4 := []rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: relayConnsPerIP}}
	v6 := []rcmgr.ConnLimitPerSubnet{
		{PrefixLength: 56, ConnCount: relayConnsPerIP},
		{PrefixLength: 48, ConnCount: 8 * relayConnsPerIP},
	}
	// Loopback stays unlimited, as in libp2p's defaults.
	unlimited := func(p string) rcmgr.NetworkPrefixLimit {
		return rcmgr.NetworkPrefixLimit{Network: netip.MustParsePrefix(p), ConnCount: math.MaxInt}
	}
	perSecond := rate.Limit{RPS: relayConnRatePerIP, Burst: relayConnBurstPerIP}
	limiter := &rate.Limiter{
		GlobalLimit: rate.Limit{}, // no global cap: the per-subnet ones apply
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: perSecond}},
			IPv6SubnetLimits: []rate.SubnetLimit{{PrefixLength: 56, Limit: perSecond}},
			GracePeriod:      time.Minute,
		},
	}
	return []rcmgr.Option{
		rcmgr.WithLimitPerSubnet(v4, v6),
		rcmgr.WithNetworkPrefixLimit(
			[]rcmgr.NetworkPrefixLimit{unlimited("127.0.0.0/8")},
			[]rcmgr.NetworkPrefixLimit{unlimited("::1/128")}),
		rcmgr.WithConnRateLimiters(limiter),
	}
}

// natOptions are a user node's means to be reached from behind NAT,
// beside the slots the reserver holds on its relays: the relay transport
// (to dial and accept circuits) and hole punching (DCUtR), which turns a
// relayed connection into a direct one. Hole punching cannot be exercised
// on loopback; TestNATRelayThenDirect runs it behind real NATs in
// network namespaces (LIBP2P.md §4, §9).
func natOptions(relays []peer.AddrInfo) []libp2p.Option {
	if len(relays) == 0 {
		return nil
	}
	return []libp2p.Option{libp2p.EnableRelay(), libp2p.EnableHolePunching()}
}
