package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/parley-chat/parley/protocol"
)

// ProtocolPrefix is the prefix of Parley's private DHT: its protocol is
// /parley/kad/1.0.0, so Parley nodes never join (or answer) the IPFS DHT.
const ProtocolPrefix = "/parley"

// Sentinel errors of lookups and publication.
var (
	// ErrNotFound: no valid record (or no claim of a name) was found.
	ErrNotFound = errors.New("directory: not found")
	// ErrNoPeers: the node knows no DHT server to publish to or ask.
	ErrNoPeers = errors.New("directory: no DHT peers")
)

// Config configures a DHT.
type Config struct {
	// Server runs the DHT in server mode (relays, and tests). Otherwise the
	// node runs ModeAutoServer: a server until AutoNAT says it is private.
	// The default ModeAuto is never used: on private networks every node
	// would stay a client and routing tables stay empty (LIBP2P.md §2).
	Server bool
	// Bootstrap are the DHT servers to join through.
	Bootstrap []peer.AddrInfo
	// Hold, if set, keeps the DHT from dialling the bootstrap peers until
	// it is closed. A host's routing is built before the host listens: a
	// dial made then leaves from an ephemeral port, so the peer observes
	// (and reports, through identify) no address that maps to a listener,
	// and behind NAT the node never learns a public address to hole
	// punch with (LIBP2P.md §4). The node closes Hold once listening.
	Hold <-chan struct{}
	// Now is the clock for validating records (time.Now).
	Now func() time.Time
	// Logger receives lookup and publication logs; never record contents.
	Logger *slog.Logger
	// Metrics, if set, counts records stored and lookups served.
	Metrics *Metrics
	// ManualRefresh disables kad-dht's periodic routing-table refresh;
	// tests refresh explicitly to stay deterministic.
	ManualRefresh bool
}

// DHT is Parley's kad-DHT: user records under /parley-user/, validated by
// Validator, and provider records for names.
type DHT struct {
	dht    *dht.IpfsDHT
	host   host.Host
	log    *slog.Logger
	now    func() time.Time
	values datastore.Batching
}

// NewDHT starts the DHT on h.
func NewDHT(h host.Host, cfg Config) (*DHT, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mode := dht.ModeAutoServer
	if cfg.Server {
		mode = dht.ModeServer
	}
	values := dssync.MutexWrap(datastore.NewMapDatastore())
	v := Validator{Now: cfg.Now}
	opts := []dht.Option{
		dht.Mode(mode),
		dht.ProtocolPrefix(ProtocolPrefix),
		dht.NamespacedValidator(Namespace, v),
		dht.ValueDatastore(values),
		dht.MaxRecordAge(MaxLifetime),
		// Private networks run on any addresses, including private ones.
		dht.QueryFilter(func(any, peer.AddrInfo) bool { return true }),
		dht.RoutingTableFilter(func(any, peer.ID) bool { return true }),
	}
	switch {
	case len(cfg.Bootstrap) > 0 && cfg.Hold != nil:
		opts = append(opts, dht.BootstrapPeersFunc(func() []peer.AddrInfo {
			select {
			case <-cfg.Hold:
				return cfg.Bootstrap
			default:
				return nil
			}
		}))
	case len(cfg.Bootstrap) > 0:
		opts = append(opts, dht.BootstrapPeers(cfg.Bootstrap...))
	}
	if cfg.ManualRefresh {
		opts = append(opts, dht.DisableAutoRefresh())
	}
	if m := cfg.Metrics; m != nil {
		opts = append(opts, dht.OnRequestHook(func(_ context.Context, _ network.Stream, req *dhtpb.Message) {
			m.request(req.GetType())
		}))
		m.watchValues(values)
	}
	d, err := dht.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("directory: start DHT: %w", err)
	}
	return &DHT{dht: d, host: h, log: cfg.Logger, now: cfg.Now, values: values}, nil
}

// Routing is the DHT as libp2p peer routing, for a routed host.
func (d *DHT) Routing() routing.PeerRouting { return d.dht }

// Kad is the underlying kad-dht, for tests and benchmarks.
func (d *DHT) Kad() *dht.IpfsDHT { return d.dht }

// Close stops the DHT (before its host is closed).
func (d *DHT) Close() error { return d.dht.Close() }

// Refresh refreshes the routing table and waits for the result.
func (d *DHT) Refresh(ctx context.Context) error {
	select {
	case err := <-d.dht.ForceRefresh():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish stores rec under its key on the closest DHT servers (and
// locally). kad-dht reports nil even when no peer took it; Publish
// returns ErrNoPeers when the routing table is empty, after the local
// copy is stored.
func (d *DHT) Publish(ctx context.Context, rec *Record) error {
	err := d.dht.PutValue(ctx, Key(rec.UserID()), rec.Marshal())
	if err != nil {
		if d.dht.RoutingTable().Size() == 0 {
			return fmt.Errorf("%w: %v", ErrNoPeers, err)
		}
		return fmt.Errorf("directory: publish: %w", err)
	}
	return nil
}

// Lookup finds user's newest valid record. Every value the DHT returns
// passed the Validator on the way in; Lookup checks again at its own
// clock, since a record may have expired in between.
func (d *DHT) Lookup(ctx context.Context, user protocol.ID) (*Record, error) {
	b, err := d.dht.GetValue(ctx, Key(user))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("directory: lookup %s: %w", user, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrNotFound, user, err)
	}
	rec, err := VerifyRecord(b, d.now())
	if err == nil && rec.UserID() != user {
		err = fmt.Errorf("%w: record of another user", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotFound, user, err)
	}
	return rec, nil
}

// ProvideName announces that this node's user claims name.
func (d *DHT) ProvideName(ctx context.Context, name string) error {
	if err := d.dht.Provide(ctx, NameCID(name), true); err != nil {
		return fmt.Errorf("directory: provide name: %w", err)
	}
	return nil
}

// NameClaimants returns the peers that claim name, unverified: provider
// records prove nothing (see Search).
func (d *DHT) NameClaimants(ctx context.Context, name string, limit int) []peer.AddrInfo {
	var out []peer.AddrInfo
	for p := range d.dht.FindProvidersAsync(ctx, NameCID(name), limit) {
		out = append(out, p)
	}
	return out
}
