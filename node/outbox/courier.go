package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// courier delivers to one recipient. Its cursor and link belong to its
// goroutine (run); rushed and its presence in Outbox.couriers are guarded
// by Outbox.mu.
type courier struct {
	o      *Outbox
	to     protocol.ID
	signal chan struct{} // something to do; capacity 1
	rushed bool          // a Rush since the last dial (Outbox.mu)
	live   *link         // the current stream, nil if none (Outbox.mu)

	cursor   uint64 // the last Seq put on the current stream, or settled
	failures int    // dials and streams that failed in a row
	sentMax  uint64 // the highest Seq ever written, to count resends (kept in Outbox.sentMax across couriers)
	mailbox  bool   // the last dial failed and what was queued went to a mailbox
}

// run delivers until the courier has nothing queued and has been idle for
// Idle, or ctx ends.
func (c *courier) run(ctx context.Context) {
	var l *link
	defer func() {
		if l != nil {
			c.setLive(nil)
			l.close(ctx)
		}
	}()
	idle := time.NewTimer(c.o.cfg.Idle)
	defer idle.Stop()
	for ctx.Err() == nil {
		if l != nil && l.progressed() {
			c.succeeded()
		}
		if l != nil && (l.broken() || (c.takeRush() && l.str.Conn().IsClosed())) {
			c.rewind(l)
			c.setLive(nil)
			l.close(ctx)
			l = nil
		}
		l = c.leaveRelay(ctx, l)
		if wait := c.heldFor(); wait > 0 {
			if c.mailbox {
				// Unreachable, but with a mailbox: what was queued
				// meanwhile goes there now, not after the backoff.
				c.deposit(ctx)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-c.signal:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if a := c.o.cfg.Allowed; a != nil && !a(c.to) {
			// Held until told again (Rush, Notify); an idle courier retires.
			idle.Reset(c.o.cfg.Idle)
			select {
			case <-ctx.Done():
			case <-c.signal:
			case <-idle.C:
				if (l == nil || l.inflight() == 0) && c.retire() {
					return
				}
			}
			continue
		}
		free := c.o.cfg.Window
		if l != nil {
			free -= l.inflight()
		}
		var es []store.OutboxEntry
		if free > 0 {
			var err error
			if es, err = c.o.cfg.Store.OutboxQueue(ctx, c.to, c.cursor, free); err != nil {
				if ctx.Err() == nil {
					c.o.cfg.Logger.Error("outbox read failed", "to", c.to.String(), "err", err)
					c.fail()
				}
				continue
			}
		}
		if len(es) == 0 {
			var done <-chan struct{}
			if l != nil {
				done = l.done
			}
			if free > 0 && (l == nil || l.inflight() == 0) {
				idle.Reset(c.o.cfg.Idle)
			}
			select {
			case <-ctx.Done():
			case <-c.signal:
			case <-done:
			case <-l.progressChan():
			case <-idle.C:
				if (l == nil || l.inflight() == 0) && c.retire() {
					return
				}
			}
			continue
		}
		// Asked again with the entries in hand: a connection that became
		// better after the check above, while they were being read, is
		// the one they go on.
		if l = c.leaveRelay(ctx, l); l == nil {
			c.takeRush()
			str, err := c.o.cfg.Open(ctx, c.to)
			if err != nil {
				if ctx.Err() == nil {
					c.o.cfg.Logger.Debug("recipient unreachable", "to", c.to.String(), "err", err)
					c.fail()
					c.deposit(ctx)
				}
				continue
			}
			l = newLink(c, str)
			c.setLive(l)
		}
		if err := c.sendAll(ctx, l, es); err != nil && ctx.Err() == nil {
			c.o.cfg.Logger.Debug("stream to recipient broke", "to", c.to.String(), "err", err)
		}
	}
}

// leaveRelay closes l, and returns nil, when it is a relayed stream with
// nothing in flight and a better connection to the recipient now exists
// (a hole punch made a direct one): the next frames go there, and
// nothing goes twice. Otherwise it returns l.
func (c *courier) leaveRelay(ctx context.Context, l *link) *link {
	if l == nil || l.path != store.PathRelay || c.o.cfg.Better == nil || l.inflight() != 0 || !c.o.cfg.Better(l.str) {
		return l
	}
	l.close(ctx)
	return nil
}

// sendAll writes es on l and flushes.
func (c *courier) sendAll(ctx context.Context, l *link, es []store.OutboxEntry) error {
	for _, e := range es {
		d, err := c.o.cfg.Frame(e)
		if err != nil {
			c.o.cfg.Logger.Error("outbox entry does not parse; dropping it", "msg", e.MsgID.String(), "err", err)
			if err := c.o.finish(ctx, []store.Settle{{MsgID: e.MsgID, Status: store.StatusFailed, Error: "unreadable outbox entry"}}); err != nil {
				return err
			}
			c.cursor = e.Seq
			continue
		}
		if ok, err := l.write(e, d); err != nil {
			l.kill()
			return err
		} else if !ok {
			c.cursor = e.Seq // withdrawn: the store no longer has it
			continue
		}
		c.o.stats.wrote(e.Seq <= c.sentMax)
		c.sentMax = max(c.sentMax, e.Seq)
		c.cursor = e.Seq
	}
	if err := l.flush(); err != nil {
		l.kill()
		return err
	}
	return nil
}

// rewind moves the cursor back before the first entry that was in flight
// on a stream that broke, so those go again on the next one, in order.
func (c *courier) rewind(l *link) {
	seq, inflight := l.firstUnacked()
	if inflight > 0 {
		c.cursor = min(c.cursor, seq-1)
	}
	c.o.stats.broke(inflight)
	if !l.progressed() {
		c.fail()
	}
}

// setLive records the courier's current stream, for Withdraw.
func (c *courier) setLive(l *link) {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	c.live = l
}

// fail counts a failure and holds the courier for the backoff.
func (c *courier) fail() {
	c.failures++
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	c.o.held[c.to] = c.o.cfg.Now().Add(c.o.backoff(c.failures - 1))
}

// succeeded resets the failure count (an ack arrived).
func (c *courier) succeeded() { c.failures = 0 }

// heldFor is how long the courier must still wait before dialing.
func (c *courier) heldFor() time.Duration {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	until, ok := c.o.held[c.to]
	if !ok {
		return 0
	}
	d := until.Sub(c.o.cfg.Now())
	if d <= 0 {
		delete(c.o.held, c.to)
		return 0
	}
	return d
}

// dialsNext reports a Rush not yet taken while no backoff holds the
// courier: its next turn dials the recipient.
func (c *courier) dialsNext() bool {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	return c.rushed && !c.o.isHeld(c.to)
}

// takeRush reports and clears a Rush.
func (c *courier) takeRush() bool {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	r := c.rushed
	c.rushed = false
	return r
}

// retire removes an idle courier, unless it was signalled meanwhile.
func (c *courier) retire() bool {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	if len(c.signal) > 0 {
		return false
	}
	if c.o.couriers[c.to] == c {
		delete(c.o.couriers, c.to)
		// No entry read before a Withdraw is still in hand.
		delete(c.o.withdrawn, c.to)
	}
	c.o.sentMax[c.to] = max(c.o.sentMax[c.to], c.sentMax)
	return true
}

// link is one open stream to the recipient: the courier writes frames,
// a reader goroutine matches acknowledgements to the entries in flight,
// in order, and settles them in batches.
type link struct {
	c    *courier
	str  network.Stream
	bw   *bufio.Writer
	done chan struct{} // closed when the reader ends

	path store.Path // how frames on str travel: direct, or relay (a limited, relayed connection)

	mu       sync.Mutex
	flight   []store.OutboxEntry // written, not acknowledged, in order
	dead     bool
	acked    int           // acknowledgements read
	progress chan struct{} // signalled when acks free the window; capacity 1
}

func newLink(c *courier, str network.Stream) *link {
	l := &link{c: c, str: str, bw: bufio.NewWriter(str), done: make(chan struct{}), progress: make(chan struct{}, 1), path: store.PathDirect}
	if c := str.Conn(); c != nil && c.Stat().Limited {
		l.path = store.PathRelay
	}
	go l.readAcks()
	return l
}

// progressChan is nil for a nil link (a select case that never fires).
func (l *link) progressChan() <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.progress
}

func (l *link) broken() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dead
}

func (l *link) inflight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.flight)
}

func (l *link) progressed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked > 0
}

// firstUnacked returns the Seq of the first entry in flight and how many
// are.
func (l *link) firstUnacked() (seq uint64, inflight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.flight) == 0 {
		return 0, 0
	}
	return l.flight[0].Seq, len(l.flight)
}

// holds reports whether message id is in flight on l.
func (l *link) holds(id store.MsgID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.flight, func(e store.OutboxEntry) bool { return e.MsgID == id })
}

// write buffers one frame and puts e in flight; false (and nothing
// written) when e was withdrawn. The check and putting e in flight are
// one step under Outbox.mu, so that Withdraw sees either the one or the
// other.
func (l *link) write(e store.OutboxEntry, d *protocol.Delivery) (bool, error) {
	o := l.c.o
	o.mu.Lock()
	if _, gone := o.withdrawn[e.Recipient][e.MsgID]; gone {
		o.mu.Unlock()
		return false, nil
	}
	l.mu.Lock()
	o.mu.Unlock()
	if l.dead {
		l.mu.Unlock()
		return false, fmt.Errorf("outbox: stream closed")
	}
	if len(l.flight) == 0 {
		// The reader may be waiting with no deadline: from now on an
		// acknowledgement is owed.
		l.str.SetReadDeadline(time.Now().Add(l.c.o.cfg.AckTimeout))
	}
	l.flight = append(l.flight, e)
	l.mu.Unlock()
	l.str.SetWriteDeadline(time.Now().Add(l.c.o.cfg.AckTimeout))
	return true, protocol.WriteDelivery(l.bw, d)
}

func (l *link) flush() error {
	l.str.SetWriteDeadline(time.Now().Add(l.c.o.cfg.AckTimeout))
	return l.bw.Flush()
}

// kill marks the link dead and resets its stream; the courier rewinds to
// the first entry still in flight.
func (l *link) kill() {
	l.mu.Lock()
	l.dead = true
	l.mu.Unlock()
	l.str.Reset()
	l.signal()
}

func (l *link) signal() {
	select {
	case l.progress <- struct{}{}:
	default:
	}
}

// readAcks reads acknowledgements, settling those that have arrived
// together in one store write, until the stream ends or fails.
func (l *link) readAcks() {
	defer close(l.done)
	defer l.signal()
	o := l.c.o
	br := bufio.NewReaderSize(l.str, 4096)
	for {
		ack, err := protocol.ReadAck(br)
		if err != nil {
			l.kill()
			return
		}
		var settles []store.Settle
		var stale *store.OutboxEntry
		l.mu.Lock()
		for {
			if len(l.flight) == 0 || (ack.MsgID != l.flight[0].MsgID && !ack.MsgID.IsZero()) {
				l.mu.Unlock()
				o.cfg.Logger.Warn("acknowledgement for an envelope not in flight", "to", l.c.to.String())
				l.kill()
				l.settle(settles)
				return
			}
			e := l.flight[0]
			if s, ok := l.outcome(e, ack); ok {
				settles = append(settles, s)
			} else if ack.Code == protocol.AckStale && e.Session && o.cfg.Reseal != nil {
				stale = &e
				break
			} else {
				// The recipient could not take it now: this stream ends
				// and the entry goes again after a backoff.
				l.acked = 0 // no progress: back off
				l.dead = true
				l.mu.Unlock()
				o.cfg.Logger.Debug("recipient deferred a delivery", "to", l.c.to.String(), "code", ack.Code.String())
				l.settle(settles)
				l.kill()
				return
			}
			l.flight = l.flight[1:]
			l.acked++
			if br.Buffered() == 0 || len(l.flight) == 0 {
				break
			}
			if ack, err = protocol.ReadAck(br); err != nil {
				l.mu.Unlock()
				l.settle(settles)
				l.kill()
				return
			}
		}
		if len(l.flight) > 0 {
			l.str.SetReadDeadline(time.Now().Add(o.cfg.AckTimeout))
		} else {
			l.str.SetReadDeadline(time.Time{})
		}
		l.mu.Unlock()
		l.settle(settles)
		if stale != nil {
			// Seal it again in a new session, in its place, and send it
			// and what followed it on a new stream.
			if !o.cfg.Reseal(context.Background(), *stale) {
				l.settle([]store.Settle{{MsgID: stale.MsgID, Status: store.StatusFailed, Error: RefusedError(ack.Code)}})
				l.mu.Lock()
				l.flight = l.flight[1:]
				l.mu.Unlock()
			}
			l.kill()
			return
		}
		l.signal()
	}
}

// outcome is how an acknowledgement settles e: delivered, or failed for
// good; false when it does not settle e (try again).
func (l *link) outcome(e store.OutboxEntry, ack *protocol.Ack) (store.Settle, bool) {
	switch {
	case ack.Code == protocol.AckOK || ack.Code == protocol.AckReplay:
		return store.Settle{MsgID: e.MsgID, Status: store.StatusDelivered, Path: l.path}, true
	case ack.Code == protocol.AckStale && e.Session && l.c.o.cfg.Reseal != nil:
		return store.Settle{}, false
	case ack.Code.Permanent() && l.c.o.cfg.Retry != nil && l.c.o.cfg.Retry(e, ack.Code):
		return store.Settle{}, false
	case ack.Code.Permanent():
		l.c.o.cfg.Logger.Warn("delivery refused", "msg", e.MsgID.String(), "to", e.Recipient.String(), "code", ack.Code.String())
		return store.Settle{MsgID: e.MsgID, Status: store.StatusFailed, Error: RefusedError(ack.Code)}, true
	}
	return store.Settle{}, false
}

// RefusedError is the error text of a message the recipient refused with
// code, for good.
func RefusedError(code protocol.AckCode) string { return "refused by the recipient: " + code.String() }

// settle finishes acknowledged entries. A failed write leaves them
// queued (they would go again, and the receiver answer replay), and stops
// the outbox: Serve returns the error, so the node stops and says why.
func (l *link) settle(settles []store.Settle) {
	if len(settles) == 0 {
		return
	}
	o := l.c.o
	// Settling what the receiver acknowledged is not cut short by a
	// closing node: the store closes after the outbox has stopped.
	if err := o.finish(context.Background(), settles); err != nil && !errors.Is(err, store.ErrClosed) {
		o.cfg.Logger.Error("outbox settle failed", "to", l.c.to.String(), "err", err)
		select {
		case o.failed <- err:
		default: // one is enough
		}
	}
}

// close ends the stream: gracefully (the receiver sees EOF after the last
// frame, the acks owed are read) unless ctx has ended, then at once; what
// is unacknowledged stays queued.
func (l *link) close(ctx context.Context) {
	if ctx.Err() != nil {
		l.str.Reset()
		<-l.done
		return
	}
	l.str.CloseWrite()
	t := time.NewTimer(l.c.o.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
		l.str.Reset()
		<-l.done
	case <-ctx.Done():
		l.str.Reset()
		<-l.done
	}
	l.str.Close()
}
