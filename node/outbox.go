package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Delivery tuning.
const (
	// window is how many envelopes a courier keeps in flight on a stream
	// before it waits for acknowledgements.
	window = 32
	// courierIdle is how long a courier keeps its stream open without
	// work.
	courierIdle = 30 * time.Second
	// ackTimeout bounds the wait for one acknowledgement.
	ackTimeout = 30 * time.Second
	// scanLimit is how many due entries one outbox scan hands out.
	scanLimit = 1024
	// rushLimit is how many entries a rush (a friend came online) reads.
	rushLimit = 8192
)

// farFuture is later than any entry's next attempt.
var farFuture = time.Unix(1<<40, 0)

// outbox delivers what the store's outbox holds. A scanner wakes when
// the earliest entry is due (or when kicked) and hands due entries to one
// courier per recipient; a courier keeps one stream to the recipient,
// pipelines envelopes on it and settles each by its acknowledgement:
// delivered, failed for good, or rescheduled with exponential backoff and
// jitter. New messages go straight to the courier, without a scan.
type outbox struct {
	s    *session
	wake chan struct{}

	mu          sync.Mutex
	couriers    map[protocol.ID]*courier
	rushed      map[protocol.ID]bool
	unreachable map[protocol.ID]time.Time // no dialing before then
}

// job is an outbox entry with the header fields delivery needs.
type job struct {
	e     store.OutboxEntry
	kind  protocol.Kind
	stamp int64 // envelope timestamp, for ordering
	// stored is set for a new message handed to its courier while its
	// outbox write is still being synced (Send overlaps the two); the
	// job is settled only once that write is done.
	stored *storeWait
	// owner is the courier that holds the job (dispatch sets it): only
	// it forgets the job when it settles. A courier that gave up is
	// replaced at once, and must not release the new one's jobs, or the
	// scanner hands those out twice.
	owner *courier
}

// storeWait is an outbox write in progress.
type storeWait struct {
	done chan struct{}
	err  error // set before done is closed
}

// durable waits for the job's outbox write, if one is in progress, and
// reports whether the entry is in the store to be settled.
func (j job) durable() bool {
	if j.stored == nil {
		return true
	}
	<-j.stored.done
	return j.stored.err == nil
}

func newOutbox(s *session) *outbox {
	return &outbox{
		s:           s,
		wake:        make(chan struct{}, 1),
		couriers:    make(map[protocol.ID]*courier),
		rushed:      make(map[protocol.ID]bool),
		unreachable: make(map[protocol.ID]time.Time),
	}
}

func newJob(e store.OutboxEntry) (job, error) {
	if e.Session {
		m, err := protocol.ParseSessionMessage(e.Envelope)
		if err != nil {
			return job{}, err
		}
		return job{e: e, kind: m.Kind, stamp: m.Timestamp}, nil
	}
	env, err := protocol.ParseEnvelope(e.Envelope)
	if err != nil {
		return job{}, err
	}
	return job{e: e, kind: env.Kind, stamp: env.Timestamp}, nil
}

func (o *outbox) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// add hands a newly queued entry of kind, sealed at stamp (unix ms), to
// its recipient's courier. stored is nil when the entry is already
// durable.
func (o *outbox) add(e store.OutboxEntry, kind protocol.Kind, stamp int64, stored *storeWait) {
	o.dispatch(e.Recipient, []job{{e: e, kind: kind, stamp: stamp, stored: stored}}, false)
}

// rush delivers everything queued for a friend now, due or not: they
// just came online, or became a friend.
func (o *outbox) rush(to protocol.ID) {
	o.mu.Lock()
	o.rushed[to] = true
	delete(o.unreachable, to)
	o.mu.Unlock()
	o.kick()
}

// run is the scanner; it returns when ctx ends.
func (o *outbox) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-timer.C:
		}
		next := o.scan(ctx)
		if ctx.Err() != nil {
			return
		}
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(max(next.Sub(o.s.cfg.Now()), 0))
	}
}

// scan hands due (and rushed) entries to couriers and returns when it
// should run again.
func (o *outbox) scan(ctx context.Context) time.Time {
	now := o.s.cfg.Now()
	next := now.Add(o.s.cfg.RetryMax)
	o.mu.Lock()
	rushed := o.rushed
	o.rushed = make(map[protocol.ID]bool)
	for to, until := range o.unreachable {
		if !until.After(now) {
			delete(o.unreachable, to)
		} else if until.Before(next) {
			next = until
		}
	}
	o.mu.Unlock()

	due, err := o.s.st.DueOutbox(ctx, now, scanLimit)
	if err != nil {
		if ctx.Err() == nil {
			o.s.log.Error("outbox scan failed", "err", err)
		}
		return now.Add(o.s.cfg.RetryMin)
	}
	// A recipient with anything due gets everything queued for it, not
	// only the entries whose own (jittered) backoff has ended, so that its
	// courier sends in envelope order.
	whole := make(map[protocol.ID]bool, len(rushed)+len(due))
	for to := range rushed {
		whole[to] = true
	}
	for _, e := range due {
		whole[e.Recipient] = true
	}
	dueCount := len(due)
	var all []store.OutboxEntry // every entry, when read
	if len(whole) > 0 {
		if all, err = o.s.st.DueOutbox(ctx, farFuture, rushLimit); err != nil {
			all = nil
		}
		for _, e := range all {
			if whole[e.Recipient] && e.NextAttempt.After(now) {
				due = append(due, e)
			}
		}
	}
	byTo := make(map[protocol.ID][]job)
	for _, e := range due {
		j, err := newJob(e)
		if err != nil {
			o.s.log.Error("outbox entry does not parse; dropping it", "msg", e.MsgID.String(), "err", err)
			o.settle(ctx, job{e: e}, protocol.Ack{Code: protocol.AckMalformed, Detail: "unreadable outbox entry"})
			continue
		}
		byTo[e.Recipient] = append(byTo[e.Recipient], j)
	}
	for to, jobs := range byTo {
		o.dispatch(to, jobs, rushed[to])
	}
	if dueCount >= scanLimit {
		return now.Add(100 * time.Millisecond)
	}
	upcoming := all
	if upcoming == nil {
		if upcoming, err = o.s.st.DueOutbox(ctx, farFuture, dueCount+1); err != nil {
			upcoming = nil
		}
	}
	for _, e := range upcoming {
		if e.NextAttempt.After(now) && e.NextAttempt.Before(next) {
			next = e.NextAttempt
			break
		}
	}
	return next
}

// dispatch gives jobs to the recipient's courier, starting one if needed;
// a recipient that could not be reached recently waits, unless rushed.
func (o *outbox) dispatch(to protocol.ID, jobs []job, rushed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if until, ok := o.unreachable[to]; ok && !rushed && until.After(o.s.cfg.Now()) {
		return
	}
	c := o.couriers[to]
	if c == nil {
		c = &courier{o: o, to: to, held: make(map[protocol.MsgID]bool), signal: make(chan struct{}, 1)}
		o.couriers[to] = c
		o.s.track.goFunc(func() { c.run(o.s.life) })
	}
	added := false
	for _, j := range jobs {
		if c.held[j.e.MsgID] {
			continue
		}
		c.held[j.e.MsgID] = true
		j.owner = c
		i, _ := slices.BinarySearchFunc(c.pending, j, compareJobs)
		c.pending = slices.Insert(c.pending, i, j)
		added = true
	}
	if added {
		select {
		case c.signal <- struct{}{}:
		default:
		}
	}
}

func compareJobs(a, b job) int {
	if c := cmp.Compare(a.stamp, b.stamp); c != 0 {
		return c
	}
	return slices.Compare(a.e.MsgID[:], b.e.MsgID[:])
}

// release forgets a settled job in the courier that held it.
func (o *outbox) release(j job) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if j.owner != nil {
		delete(j.owner.held, j.e.MsgID)
	}
}

// settle records the outcome of one delivery attempt.
func (o *outbox) settle(ctx context.Context, j job, ack protocol.Ack) {
	s := o.s
	defer o.release(j)
	if !j.durable() {
		// Send failed to store it and said so; the recipient may have it.
		s.log.Warn("a message went out whose local copy failed to store", "msg", j.e.MsgID.String(), "code", ack.Code.String())
		return
	}
	var (
		m   store.Message
		err error
	)
	switch {
	case ack.Code == protocol.AckOK || ack.Code == protocol.AckReplay:
		m, err = s.st.FinishOutbox(ctx, j.e.MsgID, store.StatusDelivered, store.PathDirect, "")
	case ack.Code == protocol.AckStale && j.e.Session && o.resealSession(ctx, j):
		return // sealed again in a new session, and handed back
	case ack.Code.Permanent():
		s.log.Warn("delivery refused", "msg", j.e.MsgID.String(), "to", j.e.Recipient.String(), "code", ack.Code.String())
		m, err = s.st.FinishOutbox(ctx, j.e.MsgID, store.StatusFailed, "", "refused by the recipient: "+ack.Code.String())
	default:
		o.reschedule(ctx, j)
		return
	}
	if errors.Is(err, store.ErrNotFound) {
		return // settled already (a duplicate ack after a retry, a removal)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("outbox update failed", "msg", j.e.MsgID.String(), "err", err)
		}
		return
	}
	if !j.e.Control {
		s.n.events.publish(Event{Type: EventMessageStatus, Message: m})
	}
}

// reschedule counts a failed attempt and sets the next one after the
// backoff.
func (o *outbox) reschedule(ctx context.Context, j job) {
	defer o.release(j)
	if !j.durable() {
		return // Send failed to store it and said so
	}
	next := o.s.cfg.Now().Add(o.backoff(j.e.Attempts))
	if _, err := o.s.st.RescheduleOutbox(ctx, j.e.MsgID, next); err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		o.s.log.Error("outbox reschedule failed", "msg", j.e.MsgID.String(), "err", err)
	}
	o.kick()
}

// backoff is the wait after the given number of failed attempts:
// RetryMin doubled per attempt up to RetryMax, with jitter over the upper
// half (so retries of many entries spread out).
func (o *outbox) backoff(attempts int) time.Duration {
	d := o.s.cfg.RetryMax
	if attempts < 30 {
		if b := o.s.cfg.RetryMin << attempts; b > 0 && b < d {
			d = b
		}
	}
	return d/2 + rand.N(d/2+1)
}

// dropFor fails everything still queued for a friend who was removed.
func (o *outbox) dropFor(ctx context.Context, to protocol.ID, reason string) {
	all, err := o.s.st.DueOutbox(ctx, farFuture, rushLimit)
	if err != nil {
		o.s.log.Error("outbox read failed", "err", err)
		return
	}
	for _, e := range all {
		if e.Recipient != to {
			continue
		}
		m, err := o.s.st.FinishOutbox(ctx, e.MsgID, store.StatusFailed, "", reason)
		if err == nil && !e.Control {
			o.s.n.events.publish(Event{Type: EventMessageStatus, Message: m})
		}
	}
}

// openStream reaches one of the recipient's devices: a connected one if
// any, else each device at the addresses on its card, or where the DHT
// says it is.
func (o *outbox) openStream(ctx context.Context, to protocol.ID) (network.Stream, error) {
	s := o.s
	fe := s.friend(to)
	if fe == nil || len(fe.infos) == 0 {
		return nil, fmt.Errorf("%w: no known device of %s", ErrNotFound, to)
	}
	infos := slices.Clone(fe.infos)
	slices.SortStableFunc(infos, func(a, b peer.AddrInfo) int {
		ca := s.host.Network().Connectedness(a.ID) == network.Connected
		cb := s.host.Network().Connectedness(b.ID) == network.Connected
		switch {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		}
		return 0
	})
	var errs []error
	for _, info := range infos {
		if info.ID == s.host.ID() {
			continue
		}
		s.host.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.AddressTTL)
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		str, err := s.host.NewStream(dctx, info.ID, MsgProtocol)
		cancel()
		if err == nil {
			return str, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: %s has no reachable device", ErrUnavailable, to)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}
