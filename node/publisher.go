package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/store"
)

// Publication: the own record is published when the node unlocks, after
// every change (kick) and every Config.Republish; a publication that
// reached no DHT peer is retried from publishRetryMin, doubling up to
// publishRetryMax.
const (
	publishRetryMin = time.Second
	publishRetryMax = 5 * time.Minute
)

// publisher is the part that keeps the own directory record (name, keys,
// this device, relays, prekey) and name claim in the DHT, serves the last
// record signed on directory.RecordProtocol, and republishes when the
// host's addresses change. mu guards record.
type publisher struct {
	st   *store.Store
	cfg  Config
	log  *slog.Logger
	keys *keyring
	host host.Host
	dir  *directory.DHT
	// hostPriv is the device's host key, which counter-signs the device
	// in the record.
	hostPriv crypto.PrivKey
	// connect dials a bootstrap peer by its multiaddr.
	connect func(ctx context.Context, addr string) error

	kicks chan struct{}
	// published is the sequence number of the last record the DHT took.
	published atomic.Uint64

	mu     sync.Mutex
	record *directory.Record // own record, last signed
}

func newPublisher(st *store.Store, cfg Config, log *slog.Logger, keys *keyring, h host.Host, dir *directory.DHT,
	hostPriv crypto.PrivKey, connect func(context.Context, string) error) *publisher {
	return &publisher{st: st, cfg: cfg, log: log, keys: keys, host: h, dir: dir, hostPriv: hostPriv,
		connect: connect, kicks: make(chan struct{}, 1)}
}

// kick asks serve to publish the own record again.
func (p *publisher) kick() {
	select {
	case p.kicks <- struct{}{}:
	default:
	}
}

// serve joins the DHT through the bootstrap peers, then keeps the own
// record and name claim published until ctx ends. It serves the record on
// directory.RecordProtocol while it runs.
func (p *publisher) serve(ctx context.Context) error {
	directory.ServeRecord(p.host, p.ownBytes)
	defer p.host.RemoveStreamHandler(directory.RecordProtocol)
	sub, err := p.host.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		return fmt.Errorf("node: address events: %w", err)
	}
	defer sub.Close()
	p.joinDHT(ctx)
	retry := publishRetryMin
	var provided time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-sub.Out():
			if !ok {
				return nil
			}
			// The card's and the record's addresses are out of date.
			p.keys.dropCard()
			timer.Stop()
		case <-timer.C:
		case <-p.kicks:
			timer.Stop()
		}
		next := p.cfg.Republish
		if err := p.publish(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			level := slog.LevelWarn
			if len(p.cfg.Bootstrap) == 0 && errors.Is(err, directory.ErrNoPeers) {
				level = slog.LevelDebug // a node on its own: nobody to publish to yet
			}
			p.log.Log(ctx, level, "directory record not published", "err", err, "retry", retry)
			next, retry = retry, min(2*retry, publishRetryMax)
		} else {
			retry = publishRetryMin
			if now := p.cfg.Now(); now.Sub(provided) >= p.cfg.Reprovide {
				if err := p.dir.ProvideName(ctx, p.keys.displayName()); err != nil {
					p.log.Warn("name claim not provided", "err", err)
					next = min(next, publishRetryMax)
				} else {
					provided = now
				}
			}
		}
		timer.Reset(next)
	}
}

// joinDHT connects to the bootstrap peers and fills the routing table.
func (p *publisher) joinDHT(ctx context.Context) {
	// Every address of each bootstrap peer first, so that the first dial
	// may choose among them (QUIC before TCP): a relay that sees this node
	// over QUIC reports the NAT's mapping of its listening port, which
	// hole punching after a restart needs; a TCP dial to it alone, from an
	// address listed first, made nodes behind NAT punch over mismatched
	// transports (one side's TCP address, the other's QUIC).
	if infos, err := addrInfos(p.cfg.Bootstrap); err == nil {
		for _, info := range infos {
			p.host.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.AddressTTL)
		}
	}
	joined := false
	for _, a := range p.cfg.Bootstrap {
		if err := p.connect(ctx, a); err != nil {
			p.log.Warn("bootstrap peer unreachable", "addr", a, "err", err)
			continue
		}
		joined = true
	}
	if joined {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := p.dir.Refresh(rctx); err != nil && ctx.Err() == nil {
			p.log.Debug("DHT refresh", "err", err)
		}
		cancel()
	}
}

// publish signs a new own record (next sequence number) and puts it into
// the DHT.
func (p *publisher) publish(ctx context.Context) error {
	rec, err := p.sign(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.record = rec
	p.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.dir.Publish(pctx, rec); err != nil {
		return err
	}
	p.published.Store(rec.Seq())
	p.log.Info("directory record published", "seq", rec.Seq())
	return nil
}

// sign makes the own record: name, keys, this device, relays and the
// current prekey, with a sequence number above every earlier one.
func (p *publisher) sign(ctx context.Context) (*directory.Record, error) {
	now := p.cfg.Now()
	prof, err := p.st.Profile(ctx)
	if err != nil {
		return nil, fmt.Errorf("node: profile: %w", err)
	}
	// Milliseconds since the epoch keep the sequence increasing across a
	// restore from an old backup; the stored one covers a clock that went
	// back.
	seq := max(prof.RecordSeq+1, uint64(now.UnixMilli()))
	prof.RecordSeq = seq
	if _, err := p.st.PutProfile(ctx, prof); err != nil {
		return nil, fmt.Errorf("node: profile: %w", err)
	}
	dev, err := directory.SignDevice(p.hostPriv, p.keys.me)
	if err != nil {
		return nil, fmt.Errorf("node: sign device: %w", err)
	}
	k := p.keys.snapshot()
	rec, err := directory.NewRecord(k.key, directory.RecordInput{
		Name:     k.name,
		Genesis:  k.genesis,
		Chain:    k.chain,
		Devices:  []directory.Device{dev},
		Relays:   recordRelays(p.cfg),
		Prekey:   &k.prekey.Signed,
		Seq:      seq,
		Lifetime: p.cfg.RecordLifetime,
	}, now)
	if err != nil {
		return nil, fmt.Errorf("node: sign directory record: %w", err)
	}
	return rec, nil
}

// own is the last record signed, nil before the first.
func (p *publisher) own() *directory.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.record
}

// ownBytes is what RecordProtocol serves: the last record signed, nil
// before the first.
func (p *publisher) ownBytes() []byte {
	if rec := p.own(); rec != nil {
		return rec.Marshal()
	}
	return nil
}
