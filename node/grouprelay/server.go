package grouprelay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/internal/streamgate"
	"github.com/parley-chat/parley/protocol"
)

// Limits are a group relay's limits. Over a topic's cap or the total, the
// oldest messages (of the topic; of all topics for the total) are dropped
// to make room: a relay keeps the most recent traffic.
type Limits struct {
	// Retention is how long a message is kept (14 days).
	Retention time.Duration
	// MaxTopicMessages and MaxTopicBytes cap what one topic holds.
	MaxTopicMessages int
	MaxTopicBytes    int64
	// MaxBytes caps what all topics hold together.
	MaxBytes int64
	// MaxTopics caps the topics carried; a ticket for one more is
	// refused (CodeFull).
	MaxTopics int
	// MaxTopicsPerPeer caps the topics one peer brought (handed the
	// first ticket of) among those carried since the relay started; a
	// ticket for one more from it is refused (CodeFull). A topic nobody
	// posts on is dropped after Retention (its admin's node offers the
	// ticket again every day while the group lives).
	MaxTopicsPerPeer int
	// Grace is how long the previous epoch's topic is still carried once
	// the next epoch's ticket follows its ticket (2 minutes).
	Grace time.Duration
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		Retention:        14 * 24 * time.Hour,
		MaxTopicMessages: 20000,
		MaxTopicBytes:    128 << 20,
		MaxBytes:         4 << 30,
		MaxTopics:        10000,
		MaxTopicsPerPeer: 256,
		Grace:            2 * time.Minute,
	}
}

// withDefaults fills zero fields from DefaultLimits and refuses negative
// ones.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits()
	if l.Retention < 0 || l.MaxTopicMessages < 0 || l.MaxTopicBytes < 0 || l.MaxBytes < 0 || l.MaxTopics < 0 || l.MaxTopicsPerPeer < 0 || l.Grace < 0 {
		return l, errors.New("grouprelay: negative limit")
	}
	if l.Retention == 0 {
		l.Retention = d.Retention
	}
	if l.MaxTopicMessages == 0 {
		l.MaxTopicMessages = d.MaxTopicMessages
	}
	if l.MaxTopicBytes == 0 {
		l.MaxTopicBytes = d.MaxTopicBytes
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxTopics == 0 {
		l.MaxTopics = d.MaxTopics
	}
	if l.MaxTopicsPerPeer == 0 {
		l.MaxTopicsPerPeer = d.MaxTopicsPerPeer
	}
	if l.Grace == 0 {
		l.Grace = d.Grace
	}
	return l, nil
}

// Admitter decides whether a message that verified may pass its sender
// chain's rate: *groupguard.Guard (the per-peer rate is applied before
// validation, in gossipsub's RPC inspector). chain is its sender's chain,
// size its encoded size. A message it refuses is ignored.
type Admitter interface {
	AdmitChain(chain protocol.ChainID, size int) bool
}

// DefaultSweepInterval is how often expired messages are deleted.
const DefaultSweepInterval = 10 * time.Minute

// Config configures a Server.
type Config struct {
	// Dir is the directory of the server's badger database.
	Dir string
	// PubSub is the relay's gossipsub router (node.Relay.PubSub), with
	// the settings every node on a group topic uses.
	PubSub *pubsub.PubSub
	// Limits are the relay's limits (DefaultLimits for zero fields).
	Limits Limits
	// Admit, if set, is asked about every message that verified; a
	// message it refuses is ignored (not forwarded, not stored), as
	// members do with a chain over its rate, since an honest forwarder
	// may carry it.
	Admit Admitter
	// TopicScore, if set, are the gossipsub score parameters of each
	// topic the server joins (groupguard.TopicScoreParams).
	TopicScore *pubsub.TopicScoreParams
	// SweepInterval is how often expired messages are deleted
	// (DefaultSweepInterval if zero).
	SweepInterval time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// Logger receives the server's logs (never content).
	Logger *slog.Logger
	// Metrics, if set, receives the group relay metrics.
	Metrics prometheus.Registerer
}

// Server is a group relay.
type Server struct {
	host  host.Host
	ps    *pubsub.PubSub
	db    *db
	lim   Limits
	admit Admitter
	score *pubsub.TopicScoreParams
	now   func() time.Time
	log   *slog.Logger
	met   *metrics
	sweep time.Duration

	takeMu sync.Mutex // serialises ticket decisions

	accepted, rejected, ignored atomic.Int64 // validations, by result
	fetchedN                    atomic.Int64 // messages stored by relay sync

	mu     sync.Mutex // guards the fields below
	topics map[string]*topic
	chains map[protocol.ChainID]string // chain key → topic name
	bring  map[peer.ID]int             // topics each peer brought, of those held
	life   context.Context             // Serve's, nil outside it
	wg     sync.WaitGroup              // topic readers and grace timers
}

// NewServer opens the database in cfg.Dir and loads the tickets held.
// Topics are joined and the protocols served from Serve on.
func NewServer(h host.Host, cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.PubSub == nil || h == nil {
		return nil, errors.New("grouprelay: server needs a host, a gossipsub router and a database directory")
	}
	lim, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	d, err := openDB(cfg.Dir, cfg.Logger, cfg.Now())
	if err != nil {
		return nil, err
	}
	held, err := d.tickets()
	if err != nil {
		d.close()
		return nil, err
	}
	s := &Server{
		host: h, ps: cfg.PubSub, db: d, lim: lim, admit: cfg.Admit, score: cfg.TopicScore, now: cfg.Now, log: cfg.Logger, sweep: cfg.SweepInterval,
		topics: map[string]*topic{}, chains: map[protocol.ChainID]string{}, bring: map[peer.ID]int{},
	}
	for _, hd := range held {
		s.index(&topic{name: hd.ticket.Topic(), key: keyOf(hd.ticket.Topic()), held: hd})
	}
	s.met = newMetrics(cfg.Metrics, s)
	n, b := d.totals()
	cfg.Logger.Info("group relay open", "dir", cfg.Dir, "topics", len(held), "messages", n, "bytes", b)
	return s, nil
}

// index adds (or replaces) a topic and its ticket's chains; call with
// s.mu held or before Serve.
func (s *Server) index(t *topic) {
	if old := s.topics[t.name]; old != nil {
		for _, k := range old.held.ticket.Keys {
			delete(s.chains, k.Chain)
		}
		t.joined, t.group, t.bound, t.from = old.joined, old.group, old.bound, old.from
	}
	s.topics[t.name] = t
	for _, k := range t.held.ticket.Keys {
		s.chains[k.Chain] = t.name
	}
}

// Serve joins the held topics, serves the ticket and sync protocols and
// sweeps expired messages until ctx ends; then it leaves the topics and
// waits for the streams it is serving.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	s.life = ctx
	var join []string
	now := s.now()
	graces := map[string]time.Duration{}
	for name, t := range s.topics {
		switch end := t.held.superseded.Add(s.lim.Grace); {
		case t.held.superseded.IsZero():
			join = append(join, name)
		case now.Before(end):
			join = append(join, name)
			graces[name] = end.Sub(now)
		}
	}
	s.mu.Unlock()
	for _, name := range join {
		if err := s.join(name); err != nil {
			s.log.Warn("group relay: joining a held topic", "err", err)
		}
	}
	for name, d := range graces {
		s.leaveAfter(ctx, name, d)
	}
	var gate streamgate.Gate
	s.host.SetStreamHandler(ID, gate.Handler(ctx, s.handleTicket))
	s.host.SetStreamHandler(SyncID, gate.Handler(ctx, s.handleSync))
	defer func() {
		s.host.RemoveStreamHandler(ID)
		s.host.RemoveStreamHandler(SyncID)
		gate.Close()
		s.mu.Lock()
		s.life = nil
		var all []*topic
		for _, t := range s.topics {
			all = append(all, t)
		}
		s.mu.Unlock()
		for _, t := range all {
			s.leave(t.name)
		}
		s.wg.Wait()
	}()
	tick := time.NewTicker(s.sweep)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.Sweep()
		}
	}
}

// Close closes the database; call it after Serve has returned.
func (s *Server) Close() error { return s.db.close() }

// Held returns the messages and bytes held.
func (s *Server) Held() (messages int, bytes int64) { return s.db.totals() }

// Topics returns the names of the topics the relay is on.
func (s *Server) Topics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, t := range s.topics {
		if t.joined != nil {
			out = append(out, name)
		}
	}
	return out
}

// Validated returns how many messages the topic validators accepted,
// rejected and ignored.
func (s *Server) Validated() (accepted, rejected, ignored int64) {
	return s.accepted.Load(), s.rejected.Load(), s.ignored.Load()
}

// Fetched returns how many messages the relay stored from members' answers
// to its relay sync requests (catchup.go).
func (s *Server) Fetched() int64 { return s.fetchedN.Load() }

// Ticket returns the ticket held for a topic, nil for none.
func (s *Server) Ticket(topic string) *protocol.RelayTicket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.topics[topic]; t != nil {
		return t.held.ticket
	}
	return nil
}

// HeldOn returns how many messages a topic holds.
func (s *Server) HeldOn(topic string) int { return s.db.held(keyOf(topic)) }

// Sweep deletes the messages older than the retention, and the tickets
// of topics the group moved on from once they hold nothing; Serve calls
// it every SweepInterval.
func (s *Server) Sweep() {
	now := s.now()
	n, err := s.db.sweep(now.Add(-s.lim.Retention))
	if err != nil {
		s.log.Error("group relay sweep", "err", err)
	}
	if n > 0 {
		s.met.dropped("expired", n)
		s.log.Info("group relay: expired messages deleted", "count", n)
		s.db.gc()
	}
	s.takeMu.Lock() // no ticket is taken meanwhile
	defer s.takeMu.Unlock()
	s.mu.Lock()
	var gone []*topic
	for _, t := range s.topics {
		if s.db.held(t.key) != 0 {
			continue
		}
		left := !t.held.superseded.IsZero() && now.After(t.held.superseded.Add(s.lim.Retention))
		idle := t.held.superseded.IsZero() && now.After(t.held.taken.Add(s.lim.Retention))
		if left || idle {
			gone = append(gone, t)
		}
	}
	s.mu.Unlock()
	for _, t := range gone {
		s.leave(t.name)
		s.mu.Lock()
		if t.from != "" {
			if s.bring[t.from]--; s.bring[t.from] <= 0 {
				delete(s.bring, t.from)
			}
		}
		delete(s.topics, t.name)
		for _, k := range t.held.ticket.Keys {
			if s.chains[k.Chain] == t.name {
				delete(s.chains, k.Chain)
			}
		}
		s.mu.Unlock()
		if err := s.db.deleteTopic(t.key); err != nil {
			s.log.Error("group relay: deleting a topic", "err", err)
		}
	}
}

// handleTicket takes one ticket and answers.
func (s *Server) handleTicket(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(streamTimeout))
	raw, err := readTicket(bufio.NewReader(st))
	if err == nil {
		err = s.Take(st.Conn().RemotePeer(), raw)
	}
	code := codeFor(err)
	s.met.ticket(code)
	detail := ""
	switch {
	case code == CodeUnavailable:
		s.log.Warn("group relay: taking a ticket", "err", err)
		detail = "try again later"
	case err != nil:
		detail = err.Error()
		s.log.Debug("group relay: ticket refused", "peer", st.Conn().RemotePeer().String(), "err", err)
	}
	if err := writeAnswer(st, code, detail); err != nil {
		_ = st.Reset()
	}
}

// Take decides on an encoded ticket that peer from handed over
// (protocol.CheckRelayTicket): it keeps a ticket it takes and joins its
// topic; the next epoch's ticket, when it follows a held one, starts the
// previous topic's grace. A ticket held already is taken again without
// change.
func (s *Server) Take(from peer.ID, raw []byte) error {
	t, err := protocol.ParseRelayTicket(raw)
	if err != nil {
		return err
	}
	name := t.Topic()
	s.takeMu.Lock()
	defer s.takeMu.Unlock()
	s.mu.Lock()
	cur := s.topics[name]
	count, brought := len(s.topics), s.bring[from]
	s.mu.Unlock()
	var curTicket *protocol.RelayTicket
	curAnchored := false
	if cur != nil {
		if cur.held.ticket.Hash() == t.Hash() {
			return nil
		}
		if !cur.held.superseded.IsZero() {
			return fmt.Errorf("%w: the group has moved on from this topic", protocol.ErrTicketStale)
		}
		curTicket, curAnchored = cur.held.ticket, cur.held.anchored
	} else if count >= s.lim.MaxTopics || brought >= s.lim.MaxTopicsPerPeer {
		return ErrFull
	}
	var prev *protocol.RelayTicket
	if len(t.Previous) != 0 {
		if prev, err = s.db.ticketByHash(t.Previous); err != nil {
			prev = nil
		}
	}
	anchored, err := protocol.CheckRelayTicket(t, curTicket, prev, curAnchored)
	if err != nil {
		return err
	}
	h := &held{ticket: t, anchored: anchored, taken: s.now()}
	if err := s.db.putTicket(h); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s.mu.Lock()
	nt := &topic{name: name, key: keyOf(name), held: h}
	if cur == nil {
		nt.from = from
		s.bring[from]++
	}
	s.index(nt)
	s.mu.Unlock()
	if prev != nil {
		s.supersede(prev.Topic())
	}
	if err := s.join(name); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// supersede starts the grace of a topic the group moved on from: it is
// carried for Grace more, then left; its messages stay for sync until
// they expire.
func (s *Server) supersede(name string) {
	s.mu.Lock()
	t := s.topics[name]
	if t == nil || !t.held.superseded.IsZero() {
		s.mu.Unlock()
		return
	}
	h := *t.held
	h.superseded = s.now()
	t.held = &h
	life := s.life
	s.mu.Unlock()
	if err := s.db.putTicket(&h); err != nil {
		s.log.Warn("group relay: storing a superseded ticket", "err", err)
	}
	if life != nil {
		s.leaveAfter(life, name, s.lim.Grace)
	}
}

// leaveAfter leaves a topic after d, or when life ends.
func (s *Server) leaveAfter(life context.Context, name string, d time.Duration) {
	s.wg.Add(1)
	timer := time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.leave(name)
	})
	context.AfterFunc(life, func() {
		if timer.Stop() {
			s.wg.Done()
		}
	})
}
