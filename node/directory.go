package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
)

// Publication: the own record is published when the node unlocks, after
// every change (kickPublish) and every Config.Republish; a publication
// that reached no DHT peer is retried from publishRetryMin, doubling up
// to publishRetryMax.
const (
	publishRetryMin = time.Second
	publishRetryMax = 5 * time.Minute
)

// DirectoryEntry is a verified directory record, as the API shows it.
type DirectoryEntry struct {
	UserID      protocol.ID
	Name        string
	Fingerprint string
	Devices     []peer.ID
	Seq         uint64
	ExpiresAt   time.Time
}

// SearchResult is one user who claims a name, with a verified record.
type SearchResult struct {
	UserID      protocol.ID
	Name        string
	Fingerprint string
	Friend      bool // already a friend (accepted or asked)
}

func entryOf(rec *directory.Record) DirectoryEntry {
	return DirectoryEntry{
		UserID:      rec.UserID(),
		Name:        rec.Name(),
		Fingerprint: rec.UserID().Fingerprint(),
		Devices:     rec.DevicePeers(),
		Seq:         rec.Seq(),
		ExpiresAt:   rec.ExpiresAt(),
	}
}

// LookupUser finds a user's record in the directory and verifies it
// (ErrNotFound when there is no valid one).
func (n *Node) LookupUser(ctx context.Context, id protocol.ID) (DirectoryEntry, error) {
	s, err := n.session()
	if err != nil {
		return DirectoryEntry{}, err
	}
	rec, err := s.lookup(ctx, id)
	if err != nil {
		return DirectoryEntry{}, err
	}
	return entryOf(rec), nil
}

// lookup returns id's verified record: the own one from memory, anyone
// else's from the DHT.
func (s *session) lookup(ctx context.Context, id protocol.ID) (*directory.Record, error) {
	if id == s.me {
		s.mu.Lock()
		rec := s.record
		s.mu.Unlock()
		if rec != nil {
			return rec, nil
		}
	}
	rec, err := s.dir.Lookup(ctx, id)
	if errors.Is(err, directory.ErrNotFound) {
		return nil, fmt.Errorf("%w: no valid directory record for %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return rec, nil
}

// SearchName returns every user who claims name, each checked against
// their signed record, told apart by fingerprint.
func (n *Node) SearchName(ctx context.Context, name string) ([]SearchResult, error) {
	s, err := n.session()
	if err != nil {
		return nil, err
	}
	if directory.NormalizeName(name) == "" {
		return nil, fmt.Errorf("%w: empty name", ErrInvalid)
	}
	recs, err := s.dir.Search(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := make([]SearchResult, 0, len(recs))
	for _, rec := range recs {
		if rec.UserID() == s.me {
			continue
		}
		r := SearchResult{UserID: rec.UserID(), Name: rec.Name(), Fingerprint: rec.UserID().Fingerprint()}
		if fe := s.friend(rec.UserID()); fe != nil {
			r.Friend = fe.isContact()
		}
		out = append(out, r)
	}
	return out, nil
}

// kickPublish asks the directory loop to publish the own record again.
func (s *session) kickPublish() {
	select {
	case s.dirKick <- struct{}{}:
	default:
	}
}

// directoryLoop joins the DHT through the bootstrap peers, then keeps the
// own record and name claim published until ctx ends.
func (s *session) directoryLoop(ctx context.Context) {
	s.joinDHT(ctx)
	retry := publishRetryMin
	var provided time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.dirKick:
			timer.Stop()
		}
		next := s.cfg.Republish
		if err := s.publish(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			level := slog.LevelWarn
			if len(s.cfg.Bootstrap) == 0 && errors.Is(err, directory.ErrNoPeers) {
				level = slog.LevelDebug // a node on its own: nobody to publish to yet
			}
			s.log.Log(ctx, level, "directory record not published", "err", err, "retry", retry)
			next, retry = retry, min(2*retry, publishRetryMax)
		} else {
			retry = publishRetryMin
			if now := s.cfg.Now(); now.Sub(provided) >= s.cfg.Reprovide {
				if err := s.dir.ProvideName(ctx, s.displayName()); err != nil {
					s.log.Warn("name claim not provided", "err", err)
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
func (s *session) joinDHT(ctx context.Context) {
	joined := false
	for _, a := range s.cfg.Bootstrap {
		if err := s.connect(ctx, a); err != nil {
			s.log.Warn("bootstrap peer unreachable", "addr", a, "err", err)
			continue
		}
		joined = true
	}
	if joined {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := s.dir.Refresh(rctx); err != nil && ctx.Err() == nil {
			s.log.Debug("DHT refresh", "err", err)
		}
		cancel()
	}
}

// publish signs a new own record (next sequence number) and puts it into
// the DHT.
func (s *session) publish(ctx context.Context) error {
	rec, err := s.signRecord()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.record = rec
	s.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.dir.Publish(pctx, rec); err != nil {
		return err
	}
	s.published.Store(rec.Seq())
	s.log.Info("directory record published", "seq", rec.Seq())
	return nil
}

// signRecord makes the own record: name, keys, this device, relays and
// the current prekey, with a sequence number above every earlier one.
func (s *session) signRecord() (*directory.Record, error) {
	now := s.cfg.Now()
	ctx := s.life
	p, err := s.st.Profile(ctx)
	if err != nil {
		return nil, fmt.Errorf("node: profile: %w", err)
	}
	// Milliseconds since the epoch keep the sequence increasing across a
	// restore from an old backup; the stored one covers a clock that went
	// back.
	seq := max(p.RecordSeq+1, uint64(now.UnixMilli()))
	p.RecordSeq = seq
	if _, err := s.st.PutProfile(ctx, p); err != nil {
		return nil, fmt.Errorf("node: profile: %w", err)
	}
	dev, err := directory.SignDevice(s.hostPriv, s.me)
	if err != nil {
		return nil, fmt.Errorf("node: sign device: %w", err)
	}
	s.mu.Lock()
	in := directory.RecordInput{
		Name:     s.name,
		Genesis:  s.genesis,
		Chain:    s.chain,
		Devices:  []directory.Device{dev},
		Relays:   s.cfg.Bootstrap,
		Prekey:   &s.prekey.Signed,
		Seq:      seq,
		Lifetime: s.cfg.RecordLifetime,
	}
	key := s.key
	s.mu.Unlock()
	rec, err := directory.NewRecord(key, in, now)
	if err != nil {
		return nil, fmt.Errorf("node: sign directory record: %w", err)
	}
	return rec, nil
}

func (s *session) displayName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

// ownRecordBytes is what RecordProtocol serves: the last record signed,
// nil before the first.
func (s *session) ownRecordBytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.record == nil {
		return nil
	}
	return s.record.Marshal()
}

// watchAddrs republishes the record when the host's addresses change.
func (s *session) watchAddrs(ctx context.Context, sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sub.Out():
			if !ok {
				return
			}
			s.mu.Lock()
			s.card = nil
			s.mu.Unlock()
			s.kickPublish()
		}
	}
}
