package mailbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/internal/streamgate"
	"github.com/parley-chat/parley/node/mailbox/pb"
	"github.com/parley-chat/parley/protocol"
)

// Server timings.
const (
	// idleTimeout ends a deposit stream, or a fetch without subscribe, on
	// which the peer sends nothing for this long.
	idleTimeout = time.Minute
	// writeTimeout bounds one frame write to a slow reader.
	writeTimeout = 30 * time.Second
	// lookupTimeout bounds the directory lookup of a register or fetch.
	lookupTimeout = 20 * time.Second
	// DefaultSweepInterval is how often expired envelopes are deleted.
	DefaultSweepInterval = 10 * time.Minute
	sweepBatch           = 1000
)

// Config configures a Server.
type Config struct {
	// Dir is the directory of the mailbox's badger database.
	Dir string
	// Directory looks up recipients' records to authorise fetches.
	Directory Directory
	// Limits are the relay's limits (DefaultLimits for zero fields).
	Limits Limits
	// SweepInterval is how often expired envelopes are deleted
	// (DefaultSweepInterval if zero).
	SweepInterval time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// Logger receives the server's logs (never envelope content).
	Logger *slog.Logger
	// Metrics, if set, receives the mailbox metrics.
	Metrics prometheus.Registerer
}

// Server is the relay side of the mailbox protocol.
type Server struct {
	host  host.Host
	db    *db
	lim   Limits
	auth  *authoriser
	rate  *rateLimiter
	now   func() time.Time
	log   *slog.Logger
	met   *metrics
	sweep time.Duration

	mu   sync.Mutex // guards subs
	subs map[protocol.ID]map[chan struct{}]struct{}
}

// NewServer opens the database in cfg.Dir. The protocol is served from
// Serve on.
func NewServer(h host.Host, cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.Directory == nil || h == nil {
		return nil, errors.New("mailbox: server needs a host, a directory and a database directory")
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
	s := &Server{
		host: h, db: d, lim: lim, now: cfg.Now, log: cfg.Logger, sweep: cfg.SweepInterval,
		auth: &authoriser{dir: cfg.Directory, m: map[protocol.ID]cachedRecord{}},
		rate: newRateLimiter(lim.DepositRate, lim.DepositBurst),
		subs: map[protocol.ID]map[chan struct{}]struct{}{},
	}
	s.met = newMetrics(cfg.Metrics, d)
	n, b := d.totals()
	cfg.Logger.Info("mailbox open", "dir", cfg.Dir, "envelopes", n, "bytes", b)
	return s, nil
}

// Serve serves the protocol and sweeps expired envelopes until ctx ends,
// then waits for the streams it is serving to end.
func (s *Server) Serve(ctx context.Context) error {
	var gate streamgate.Gate
	handler := gate.Handler(ctx, func(st network.Stream) { s.handle(ctx, st) })
	s.host.SetStreamHandler(IDPipelined, handler)
	s.host.SetStreamHandler(ID, handler)
	defer func() {
		s.host.RemoveStreamHandler(IDPipelined)
		s.host.RemoveStreamHandler(ID)
		gate.Close()
	}()
	t := time.NewTicker(s.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep deletes what expired: envelopes, registrations and cached
// records and rate buckets; Serve calls it every SweepInterval.
func (s *Server) Sweep() {
	now := s.now()
	n, err := s.db.sweep(now, sweepBatch)
	if err != nil {
		s.log.Error("mailbox sweep", "err", err)
	}
	if n > 0 {
		s.met.expire(n)
		s.log.Info("mailbox: expired envelopes deleted", "count", n)
		s.db.gc()
	}
	s.rate.prune(now)
	s.auth.prune(now)
}

// Close closes the database; call it after Serve has returned.
func (s *Server) Close() error { return s.db.close() }

// Held returns the envelopes and bytes held.
func (s *Server) Held() (envelopes int, bytes int64) { return s.db.totals() }

// handle serves one stream.
func (s *Server) handle(ctx context.Context, st network.Stream) {
	defer st.Close()
	r := bufio.NewReader(st)
	var f pb.ClientFrame
	st.SetReadDeadline(time.Now().Add(idleTimeout))
	if err := readFrame(r, &f, maxClientFrame); err != nil {
		s.refuseFrame(st, err, s.met.fetch)
		return
	}
	switch k := f.GetKind().(type) {
	case *pb.ClientFrame_Deposit:
		s.serveDeposits(st, r, k.Deposit)
	case *pb.ClientFrame_Register:
		user, err := recipientID(k.Register.GetRecipient())
		if err == nil {
			err = s.authorise(ctx, user, st.Conn().RemotePeer())
		}
		s.met.fetch(codeFor(err))
		s.writeResult(st, err)
	case *pb.ClientFrame_Fetch:
		s.serveFetch(ctx, st, r, k.Fetch)
	default:
		err := fmt.Errorf("%w: first frame is not a deposit, register or fetch", ErrMalformed)
		s.met.fetch(codeFor(err))
		s.writeResult(st, err)
	}
}

// refuseFrame answers a frame that could not be read: a typed refusal for
// one too large or malformed, nothing for a stream that ended or broke.
func (s *Server) refuseFrame(st network.Stream, err error, count func(Code)) {
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMalformed) {
		count(codeFor(err))
		s.writeResult(st, err)
		return
	}
	if !errors.Is(err, io.EOF) {
		st.Reset()
	}
}

func (s *Server) writeResult(st network.Stream, err error) error {
	code, detail, retry := codeFor(err), "", time.Duration(0)
	var re *RefusedError
	switch {
	case errors.As(err, &re):
		detail, retry = re.Detail, re.RetryAfter
	case code == CodeUnavailable:
		detail = "try again later" // not the internal error text
		s.log.Warn("mailbox request failed", "err", err)
	case err != nil:
		detail = err.Error()
	}
	st.SetWriteDeadline(time.Now().Add(writeTimeout))
	return writeFrame(st, resultFrame(code, detail, retry), maxServerFrame)
}

// authorise checks that p is a device of user and (re)registers user. A
// register or fetch takes a token from p's bucket too, since it may cost
// the relay a DHT lookup.
func (s *Server) authorise(ctx context.Context, user protocol.ID, p peer.ID) error {
	now := s.now()
	if ok, wait := s.rate.take(p, now); !ok {
		return &RefusedError{Code: CodeRateLimited, RetryAfter: wait}
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	if err := s.auth.check(ctx, user, p, now); err != nil {
		return err
	}
	return s.db.register(user, now.Add(s.lim.Registration), s.lim.Registration/30)
}

// subscribe returns a channel that gets a token whenever an envelope is
// deposited for user, and the function that stops it.
func (s *Server) subscribe(user protocol.ID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.subs[user] == nil {
		s.subs[user] = map[chan struct{}]struct{}{}
	}
	s.subs[user][ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs[user], ch)
		if len(s.subs[user]) == 0 {
			delete(s.subs, user)
		}
		s.mu.Unlock()
	}
}

func (s *Server) notify(user protocol.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs[user] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}
