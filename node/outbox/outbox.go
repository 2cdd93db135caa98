// Package outbox delivers what a node's store has queued for its friends.
//
// It owns the couriers: one per recipient, each the only thing that puts
// that recipient's envelopes on the wire. A courier reads its recipient's
// queue from the store (store.OutboxQueue) in write order, from the last
// entry it sent, and pipelines the entries on one stream; the receiver
// acknowledges each after storing it, in order. Acknowledged entries are
// settled in batches (one store write for the acks read together). So:
//
//   - only what the store holds durably reaches the wire (an entry is
//     read from the store, after its write was committed);
//   - per recipient, envelopes leave in the order they were written,
//     across new sends, retries, reconnects and restarts: there is one
//     path to the wire, and it reads the queue in order;
//   - nothing acknowledged is sent again, except by a restart between
//     the ack and its settling; after a broken stream, only what was
//     unacknowledged on it is sent again (Stats counts what is sent
//     again and what was unacknowledged when streams broke; so do the
//     Prometheus counters of Config.Metrics).
//
// # Mailboxes
//
// When Open fails — every known address of every device of the
// recipient was tried (directly and through relay circuits) and none
// answered — and Config.Deposit is set, the courier deposits what is
// queued, in outbox order, at the recipient's mailbox relays, a window
// at a time (Deposit tries them in order; the first that holds any of
// the batch wins, and holds a prefix of it), and settles each
// entry held as sent with path mailbox: it leaves the queue, so it is
// never sent directly again. The first failed dial is the threshold, not
// a count or a time: Open has already tried everything it knows, within
// its dial timeout, and a relay pushes a deposit to a subscribed
// recipient at once, so a deposit costs no latency when the recipient is
// in fact online, whereas waiting out backoffs (up to RetryMax) would.
// While the courier then waits out its backoff, what is queued meanwhile
// is deposited at once too; a Rush stops a deposit between windows, and
// the rest goes on the dial that follows. A deposit that fails (no
// mailbox, every relay refuses or is unreachable, or a relay refuses
// after holding the first entries of the batch) leaves the first entry
// not held, and those after it, queued for the next attempt: order is
// kept, as there is still one path to the wire, the courier. A mailbox
// relay's "held" is not "delivered": the recipient says which messages
// it stored with a delivery receipt (protocol.KindDelivered), on which
// the node marks them delivered.
//
// Notify (something was queued), Rush (the recipient came online) and
// the periodic scan only tell a courier to go; none of them hands it
// work. Withdraw takes an entry back (a message deleted while queued):
// the courier checks, as it puts an entry in flight, that it was not
// withdrawn, so a withdrawn entry it had read already is never written. The outbox's state is guarded by Outbox.mu; a courier's cursor
// and stream belong to its goroutine, and a link's in-flight list to
// link.mu (taken after Outbox.mu when both are held, never the reverse).
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Store is what the outbox needs of the store.
type Store interface {
	OutboxQueue(ctx context.Context, to protocol.ID, after uint64, limit int) ([]store.OutboxEntry, error)
	OutboxRecipients(ctx context.Context) ([]protocol.ID, error)
	FinishOutboxes(ctx context.Context, settles []store.Settle) ([]store.Message, []error, error)
}

// Config is what an outbox is built from. Store, Open and Frame are
// required.
type Config struct {
	Store Store
	// Open opens a message stream to one of to's devices.
	Open func(ctx context.Context, to protocol.ID) (network.Stream, error)
	// Frame makes the frame that carries e; an error means e can never
	// be sent (it does not parse), and it is settled as failed.
	Frame func(e store.OutboxEntry) (*protocol.Delivery, error)
	// Reseal seals e again after the recipient answered AckStale (its
	// session is gone) and reports whether it did; the entry, kept in its
	// place in the queue, then goes again. Nil: never.
	Reseal func(ctx context.Context, e store.OutboxEntry) bool
	// Retry, if set, reports whether a refusal that is otherwise for good
	// (code.Permanent) may pass later: e then goes again after a backoff,
	// as after AckUnavailable. Nil: never.
	Retry func(e store.OutboxEntry, code protocol.AckCode) bool
	// Settled is told of each message whose delivery ended (delivered or
	// failed), as stored. Nil: nobody.
	Settled func(m store.Message)
	// Allowed, if set, reports whether to may be sent to now; while it
	// says no, to's courier sends nothing more (what is queued waits) until
	// a Rush or Notify finds it allowed (a friend whose key signed two
	// histories, until the user verifies them again).
	Allowed func(to protocol.ID) bool
	// Better, if set, reports whether a connection better than str's now
	// exists to str's peer (a direct one, where str runs on a relayed,
	// limited one). The courier then ends that stream once what is in
	// flight on it is acknowledged, and opens the next on the better
	// connection (after a hole punch). Nil: a stream is kept while it works.
	Better func(str network.Stream) bool
	// Deposit, if set, asks one of to's mailbox relays to hold ds, in
	// order (a batch of at most Window, deposited as one pipeline). It
	// returns how many leading deliveries a relay holds durably (all of
	// them at one relay), and nil if that is all of them; else the error
	// that stopped it: one wrapping ErrNoMailbox when to has no mailbox
	// relay, another when no relay would take the first, or the refusal
	// that followed the held ones. The courier settles the held ones and
	// deposits the rest, in order, at its next attempt. It deposits after
	// a failed Open (see "Mailboxes" in the package doc). Nil: entries
	// wait for a direct delivery.
	Deposit func(ctx context.Context, to protocol.ID, ds []*protocol.Delivery) (held int, err error)

	Now      func() time.Time // nil: time.Now
	Logger   *slog.Logger     // nil: discard
	RetryMin time.Duration    // first backoff after a failure (1 s)
	RetryMax time.Duration    // longest backoff (5 min); also the scan period
	// Window is how many envelopes may be unacknowledged on a stream (32).
	Window int
	// AckTimeout is how long a stream may owe an acknowledgement before
	// it is taken for dead (10 s).
	AckTimeout time.Duration
	// Idle is how long a courier keeps its stream with nothing to send
	// (30 s).
	Idle time.Duration
	// Metrics, if set, receives the counters of Stats (frames sent and
	// sent again, broken streams and what was in flight on them) as
	// parley_outbox_* counters. Nil: Stats only.
	Metrics prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.Store == nil || c.Open == nil || c.Frame == nil {
		return c, errors.New("outbox: Store, Open and Frame are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(c.RetryMin, 5*time.Minute)
	}
	if c.Window <= 0 {
		c.Window = 32
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 30 * time.Second
	}
	return c, nil
}

// Outbox runs the couriers. Its methods are safe for concurrent use.
type Outbox struct {
	cfg Config

	mu       sync.Mutex
	ctx      context.Context // Serve's, nil before it runs and after it ends
	couriers map[protocol.ID]*courier
	held     map[protocol.ID]time.Time // no dialing before then (backoff), until a Rush
	sentMax  map[protocol.ID]uint64    // a retired courier's sentMax, for the next one
	// withdrawn are entries that must not be written any more (Withdraw),
	// by recipient; a recipient's are forgotten when its courier retires.
	withdrawn map[protocol.ID]map[store.MsgID]struct{}
	wg        sync.WaitGroup // couriers

	stats *counters
	// failed receives the first store failure that leaves acknowledged
	// entries unsettled; Serve returns it.
	failed chan error
}

// New makes an outbox; it delivers once Serve runs.
func New(cfg Config) (*Outbox, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Outbox{
		cfg:       cfg,
		couriers:  make(map[protocol.ID]*courier),
		held:      make(map[protocol.ID]time.Time),
		sentMax:   make(map[protocol.ID]uint64),
		withdrawn: make(map[protocol.ID]map[store.MsgID]struct{}),
		stats:     newCounters(cfg.Metrics),
		failed:    make(chan error, 1),
	}, nil
}

// Serve starts a courier for every recipient with queued entries, scans
// again every RetryMax (a safety net: Notify and Rush start couriers), and
// returns, after every courier has stopped, when ctx ends (nil) or when
// the store failed to settle acknowledged entries (that error).
func (o *Outbox) Serve(ctx context.Context) error {
	// Couriers run in ctx, which ends with Serve (a failure ends it too).
	ctx, cancel := context.WithCancel(ctx)
	o.mu.Lock()
	o.ctx = ctx
	o.mu.Unlock()
	defer func() {
		cancel()
		o.mu.Lock()
		o.ctx = nil
		o.mu.Unlock()
		o.wg.Wait()
	}()
	t := time.NewTicker(o.cfg.RetryMax)
	defer t.Stop()
	for {
		o.scan(ctx)
		select {
		case <-ctx.Done():
			return nil
		case err := <-o.failed:
			// The store could not record what the recipient acknowledged:
			// the node stops rather than deliver on without a durable
			// record of it.
			return err
		case <-t.C:
		}
	}
}

func (o *Outbox) scan(ctx context.Context) {
	tos, err := o.cfg.Store.OutboxRecipients(ctx)
	if err != nil {
		if ctx.Err() == nil {
			o.cfg.Logger.Error("outbox scan failed", "err", err)
		}
		return
	}
	for _, to := range tos {
		o.Notify(to)
	}
}

// Notify tells to's courier that its queue has grown, starting one if
// needed. It does not dial a recipient that is backing off.
func (o *Outbox) Notify(to protocol.ID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.poke(to)
}

// Rush tells to's courier to go now, backing off or not: the recipient
// came online, or became a friend.
func (o *Outbox) Rush(to protocol.ID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.held, to)
	if c := o.poke(to); c != nil {
		c.rushed = true
	}
}

// Hold keeps to's courier from dialing until a Rush (for tests that need
// a message to wait in the queue).
func (o *Outbox) Hold(to protocol.ID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.held[to] = time.Unix(1<<40, 0)
}

// Held reports whether to's courier is waiting out a backoff or a Hold.
func (o *Outbox) Held(to protocol.ID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.isHeld(to)
}

// isHeld reports whether a backoff or a Hold keeps to's courier from
// dialing now; o.mu held.
func (o *Outbox) isHeld(to protocol.ID) bool {
	until, ok := o.held[to]
	return ok && until.After(o.cfg.Now())
}

// poke signals to's courier, starting it when there is none; o.mu held.
func (o *Outbox) poke(to protocol.ID) *courier {
	if o.ctx == nil || o.ctx.Err() != nil {
		return nil // not serving: the scan at start finds the queue
	}
	c := o.couriers[to]
	if c == nil {
		c = &courier{o: o, to: to, signal: make(chan struct{}, 1), sentMax: o.sentMax[to]}
		o.couriers[to] = c
		o.wg.Add(1)
		ctx := o.ctx
		go func() {
			defer o.wg.Done()
			c.run(ctx)
		}()
	}
	select {
	case c.signal <- struct{}{}:
	default:
	}
	return c
}

// Drop settles everything queued for to as failed with reason (a friend
// removed or blocked).
func (o *Outbox) Drop(ctx context.Context, to protocol.ID, reason string) error {
	for {
		es, err := o.cfg.Store.OutboxQueue(ctx, to, 0, 256)
		if err != nil || len(es) == 0 {
			return err
		}
		settles := make([]store.Settle, len(es))
		for i, e := range es {
			settles[i] = store.Settle{MsgID: e.MsgID, Status: store.StatusFailed, Error: reason}
		}
		if err := o.finish(ctx, settles); err != nil {
			return err
		}
	}
}

// Withdraw keeps message id's entry, queued for to, off the wire from now
// on, then calls remove, which deletes it from the store, and returns
// remove's error. It reports whether the entry was on the wire already
// (written to a stream and not acknowledged): the recipient may then still
// get it. (An entry acknowledged already is gone from the store: remove
// says so.) The courier never
// writes a withdrawn entry (it checks, under the lock Withdraw takes,
// just before it puts an entry in flight), so no entry read before
// remove deleted it goes out after Withdraw returns.
func (o *Outbox) Withdraw(ctx context.Context, to protocol.ID, id store.MsgID, remove func(ctx context.Context) error) (onWire bool, err error) {
	o.mu.Lock()
	ids := o.withdrawn[to]
	if ids == nil {
		ids = make(map[store.MsgID]struct{})
		o.withdrawn[to] = ids
	}
	ids[id] = struct{}{}
	if c := o.couriers[to]; c != nil && c.live != nil {
		onWire = c.live.holds(id)
	}
	o.mu.Unlock()
	return onWire, remove(ctx)
}

// finish settles entries in one write and reports their messages.
func (o *Outbox) finish(ctx context.Context, settles []store.Settle) error {
	msgs, _, err := o.cfg.Store.FinishOutboxes(ctx, settles)
	if err != nil {
		return fmt.Errorf("outbox: settle: %w", err)
	}
	if o.cfg.Settled != nil {
		for _, m := range msgs {
			if !m.ID.IsZero() {
				o.cfg.Settled(m)
			}
		}
	}
	return nil
}

// backoff is the wait after the given number of failures in a row:
// RetryMin doubled per failure up to RetryMax, with jitter over the
// upper half (so that many recipients' retries spread out).
func (o *Outbox) backoff(failures int) time.Duration {
	d := o.cfg.RetryMax
	if failures < 30 {
		if b := o.cfg.RetryMin << failures; b > 0 && b < d {
			d = b
		}
	}
	return d/2 + rand.N(d/2+1)
}
