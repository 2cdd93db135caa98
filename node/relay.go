package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/internal/promreg"
	"github.com/parley-chat/parley/node/groupguard"
)

// RelayConfig configures a relay: the operator's node that bootstraps the
// network. It has no user identity and no passphrase.
type RelayConfig struct {
	// DataDir keeps the relay's host key (relay.key), so its peer ID and
	// therefore its bootstrap address survive restarts.
	DataDir string
	// Listen are the libp2p listen multiaddrs (DefaultRelayListen if empty).
	Listen []string
	// Bootstrap are other relays (multiaddrs with /p2p/) to join the DHT
	// through.
	Bootstrap []string
	// Logger receives the relay's logs.
	Logger *slog.Logger
	// Now is the clock for validating records (time.Now).
	Now func() time.Time
	// Metrics, if set, receives libp2p's metrics and the relay's own.
	Metrics prometheus.Registerer
	// ManualRefresh turns off the DHT's periodic refresh (tests).
	ManualRefresh bool
	// GroupLimits are the rate limits of the group traffic the relay
	// carries (zero fields: groupguard's defaults).
	GroupLimits groupguard.Config
}

// DefaultRelayListen are the listen addresses of a relay: every interface,
// on the well-known port 4001, over TCP and QUIC.
// It also listens for networks that pass only web traffic: WebSocket on
// TCP port 4002 (put a TLS proxy on 443 in front of it) and WebTransport
// on the QUIC port.
var DefaultRelayListen = []string{
	"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1", "/ip6/::/tcp/4001", "/ip6/::/udp/4001/quic-v1",
	"/ip4/0.0.0.0/tcp/4002/ws", "/ip4/0.0.0.0/udp/4001/quic-v1/webtransport",
}

// Relay limits: a relay is shared by many users, so it takes more
// reservations than libp2p's defaults (128 in all, 8 per IP), enough for
// a whole office or carrier-grade NAT behind one address. A relayed
// connection (a circuit) carries chat until a hole punch connects the
// peers directly, and for good where it cannot (symmetric NATs): each
// circuit lasts up to RelayCircuitDuration and RelayCircuitData per
// direction (libp2p's defaults, 2 min and 128 KiB, end a chat burst of
// a few hundred messages mid-way), after which the relay resets it and
// the sender opens a new one, sending again only what was unacknowledged.
// A session message is under 1 KiB and an envelope under 64 KiB, so
// every frame fits a circuit.
const (
	RelayMaxReservations      = 4096
	RelayMaxReservationsPerIP = 1024
	RelayMaxReservationsASN   = 4096
	RelayMaxCircuits          = 64
	RelayCircuitDuration      = 10 * time.Minute
	RelayCircuitData          = 4 << 20
)

// Relay is a running relay: DHT server, circuit relay v2 service, AutoNAT
// service and gossipsub peer.
type Relay struct {
	host   host.Host
	dir    *directory.DHT
	ps     *pubsub.PubSub
	guard  *groupguard.Guard // group traffic's rates, for the relay's topic validators
	cancel context.CancelFunc
	log    *slog.Logger
}

// StartRelay starts a relay and joins the DHT through cfg.Bootstrap.
func StartRelay(ctx context.Context, cfg RelayConfig) (*Relay, error) {
	if cfg.DataDir == "" {
		return nil, fail(ErrInvalid, "no data directory")
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = DefaultRelayListen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := prepareDir(cfg.DataDir); err != nil {
		return nil, err
	}
	key, err := relayKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	boot, err := addrInfos(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	res := relayv2.DefaultResources()
	res.MaxReservations = RelayMaxReservations
	res.MaxReservationsPerIP = RelayMaxReservationsPerIP
	res.MaxReservationsPerASN = RelayMaxReservationsASN
	res.MaxCircuits = RelayMaxCircuits
	res.Limit = &relayv2.RelayLimit{Duration: RelayCircuitDuration, Data: RelayCircuitData}
	ropts := []relayv2.Option{relayv2.WithResources(res)}
	var dm *directory.Metrics
	if cfg.Metrics != nil {
		dm = directory.NewMetrics(cfg.Metrics)
		ropts = append(ropts, relayv2.WithMetricsTracer(newReservationTracer(cfg.Metrics)))
	}
	h, err := newHost(hostSpec{
		key: key, listen: cfg.Listen, low: 512, high: 1024, metrics: cfg.Metrics, perIP: true,
		extra: []libp2p.Option{
			libp2p.EnableRelayService(ropts...),
			libp2p.EnableNATService(),
			libp2p.EnableAutoNATv2(),
			// A relay is run to be reachable; without this the relay
			// service waits for AutoNAT to say so, which never happens on a
			// private network or loopback (LIBP2P.md §4).
			libp2p.ForceReachabilityPublic(),
		},
	})
	if err != nil {
		return nil, err
	}
	d, err := directory.NewDHT(h, directory.Config{
		Server: true, Bootstrap: boot, Now: cfg.Now, Logger: cfg.Logger, Metrics: dm, ManualRefresh: cfg.ManualRefresh,
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	guard, err := groupguard.New(cfg.GroupLimits)
	if err != nil {
		d.Close()
		h.Close()
		return nil, fail(ErrInvalid, "group limits: %v", err)
	}
	if cfg.Metrics != nil {
		promreg.Register(cfg.Metrics, groupguard.NewCollector(func() *groupguard.Guard { return guard }))
	}
	life, cancel := context.WithCancel(context.Background())
	// The same router settings as members' (StrictNoSign, content-hash
	// IDs, groupguard's scores, bounds and per-peer rate; groups.go), so
	// that a relay can be on a group's topic.
	ps, err := newGroupPubSub(life, h, false, guard)
	if err != nil {
		cancel()
		d.Close()
		h.Close()
		return nil, err
	}
	r := &Relay{host: h, dir: d, ps: ps, guard: guard, cancel: cancel, log: cfg.Logger}
	for _, b := range boot {
		if err := h.Connect(ctx, b); err != nil {
			cfg.Logger.Warn("bootstrap relay unreachable", "peer", b.ID.String(), "err", err)
		}
	}
	if len(boot) > 0 {
		if err := d.Refresh(ctx); err != nil {
			cfg.Logger.Warn("DHT refresh", "err", err)
		}
	}
	cfg.Logger.Info("relay started", "peer", h.ID().String(), "addrs", fmt.Sprint(r.Addrs()))
	return r, nil
}

// ID is the relay's peer ID.
func (r *Relay) ID() peer.ID { return r.host.ID() }

// Host is the relay's libp2p host, for services that run beside the relay
// (the mailbox of package node/mailbox).
func (r *Relay) Host() host.Host { return r.host }

// PubSub is the relay's gossipsub router, with the settings of members'
// (groups.go), for the group relay of package node/grouprelay.
func (r *Relay) PubSub() *pubsub.PubSub { return r.ps }

// GroupGuard is the rate limiter of the group traffic the relay carries:
// the per-peer rate applies to every topic already (in gossipsub's RPC
// inspector); services on group topics ask it about each chain.
func (r *Relay) GroupGuard() *groupguard.Guard { return r.guard }

// Directory is the relay's DHT, where those services look up user records.
func (r *Relay) Directory() *directory.DHT { return r.dir }

// Addrs are the relay's full multiaddrs, with /p2p/<id>: what another
// node takes as --bootstrap.
func (r *Relay) Addrs() []string {
	return p2pAddrs(r.host)
}

// Close stops the relay: gossipsub, the DHT, then the host.
func (r *Relay) Close() error {
	r.cancel()
	return errors.Join(r.dir.Close(), r.host.Close())
}

// p2pAddrs lists h's addresses with /p2p/<id> appended, expanding
// unspecified listen addresses to the interfaces'.
func p2pAddrs(h host.Host) []string {
	info := peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
	mas, err := peer.AddrInfoToP2pAddrs(&info)
	if err != nil {
		return nil
	}
	out := make([]string, len(mas))
	for i, a := range mas {
		out[i] = a.String()
	}
	return out
}

// addrInfos parses multiaddrs that end in /p2p/<id>, merging addresses of
// one peer.
func addrInfos(addrs []string) ([]peer.AddrInfo, error) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fail(ErrInvalid, "bootstrap address %q: %v", s, err)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fail(ErrInvalid, "bootstrap addresses must end in /p2p/<peer ID>: %v", err)
	}
	return infos, nil
}

// relayKey loads the relay's Ed25519 host key from <dir>/relay.key, making
// it on first start.
func relayKey(dir string) (crypto.PrivKey, error) {
	path := filepath.Join(dir, "relay.key")
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("node: relay key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("node: relay key: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node: generate relay key: %w", err)
	}
	if b, err = crypto.MarshalPrivateKey(k); err != nil {
		return nil, fmt.Errorf("node: relay key: %w", err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("node: save relay key: %w", err)
	}
	return k, nil
}
