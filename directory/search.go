package directory

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/parley-chat/parley/protocol"
)

// RecordProtocol serves a node's own signed record to whoever asks: name
// search uses it to turn a provider record (a peer ID that claims a name)
// into the user's signed record, which it then verifies.
const RecordProtocol = libp2pprotocol.ID("/parley/dir/record/1.0.0")

// recordTimeout bounds one record request, both sides.
const recordTimeout = 10 * time.Second

// ServeRecord answers RecordProtocol with current's bytes (nil: none yet).
func ServeRecord(h host.Host, current func() []byte) {
	h.SetStreamHandler(RecordProtocol, func(s network.Stream) {
		defer s.Close()
		s.SetDeadline(time.Now().Add(recordTimeout))
		if b := current(); len(b) > 0 {
			s.Write(b)
		}
	})
}

// FetchRecord asks peer p for its user's record and verifies it: it must
// be valid now and list p among its devices.
func FetchRecord(ctx context.Context, h host.Host, p peer.ID, now time.Time) (*Record, error) {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, RecordProtocol)
	if err != nil {
		return nil, fmt.Errorf("directory: ask %s for its record: %w", p, err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	s.CloseWrite()
	b, err := io.ReadAll(io.LimitReader(bufio.NewReader(s), MaxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("directory: read record from %s: %w", p, err)
	}
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("%w: record from %s", ErrTooLarge, p)
	}
	rec, err := VerifyRecord(b, now)
	if err != nil {
		return nil, err
	}
	if !rec.HasDevice(p) {
		return nil, fmt.Errorf("%w: record from %s does not list it as a device", ErrNotFound, p)
	}
	return rec, nil
}

// searchParallel is how many claimants Search asks at once.
const searchParallel = 8

// Search returns the verified records of every user who claims name, one
// per user (the highest sequence number seen), in the order found.
// Provider records prove nothing: each claimant's record is fetched from
// the claiming peer, verified, and kept only if it lists that peer as a
// device and carries the name.
func (d *DHT) Search(ctx context.Context, name string) ([]*Record, error) {
	want := NormalizeName(name)
	if want == "" {
		return nil, fmt.Errorf("%w: empty name", protocol.ErrMalformed)
	}
	claimants := d.NameClaimants(ctx, want, 0)
	var (
		mu   sync.Mutex
		best = make(map[protocol.ID]*Record)
		seen []protocol.ID
		wg   sync.WaitGroup
		sem  = make(chan struct{}, searchParallel)
	)
	for _, c := range claimants {
		if c.ID == d.host.ID() {
			continue
		}
		d.host.Peerstore().AddAddrs(c.ID, c.Addrs, peerstore.TempAddrTTL)
		wg.Add(1)
		sem <- struct{}{}
		go func(p peer.ID) {
			defer wg.Done()
			defer func() { <-sem }()
			rec, err := FetchRecord(ctx, d.host, p, d.now())
			if err != nil {
				d.log.Debug("name claim dropped", "peer", p.String(), "err", err)
				return
			}
			if NormalizeName(rec.Name()) != want {
				d.log.Debug("name claim dropped: record has another name", "peer", p.String())
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if old, ok := best[rec.UserID()]; !ok {
				seen = append(seen, rec.UserID())
				best[rec.UserID()] = rec
			} else if rec.Seq() > old.Seq() {
				best[rec.UserID()] = rec
			}
		}(c.ID)
	}
	wg.Wait()
	out := make([]*Record, 0, len(seen))
	for _, id := range seen {
		out = append(out, best[id])
	}
	return out, nil
}
