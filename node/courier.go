package node

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/protocol"
)

// courier delivers to one recipient over one stream at a time. Its
// pending jobs are guarded by the outbox's mutex.
type courier struct {
	o       *outbox
	to      protocol.ID
	held    map[protocol.MsgID]bool // pending or in flight
	pending []job                   // sorted by envelope time
	breaks  int                     // streams that broke since the last ack
	signal  chan struct{}
}

// maxBreaks is how many streams in a row may break before a courier
// stops trying and reschedules everything with backoff.
const maxBreaks = 3

// run delivers until the courier has been idle for courierIdle, the
// recipient cannot be reached, or ctx ends.
func (c *courier) run(ctx context.Context) {
	var l *link
	defer func() {
		if l != nil {
			l.close()
		}
	}()
	idle := time.NewTimer(courierIdle)
	defer idle.Stop()
	for {
		j, ok := c.take()
		if l != nil && l.broken() {
			l.close() // its in-flight jobs are back in pending
			l = nil
			if c.noteBreak() {
				c.giveUp(ctx, j, ok, fmt.Errorf("%w: %d streams broke in a row", ErrUnavailable, maxBreaks))
				return
			}
		}
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-c.signal:
				continue
			case <-idle.C:
				if c.retire() {
					return
				}
				idle.Reset(courierIdle)
				continue
			}
		}
		if l == nil {
			str, err := c.o.openStream(ctx, c.to)
			if err != nil {
				c.giveUp(ctx, j, true, err)
				return
			}
			l = newLink(c, str)
		}
		if err := l.send(ctx, j); err != nil && ctx.Err() == nil {
			l.close()
			l = nil
			if c.noteBreak() {
				c.giveUp(ctx, job{}, false, err)
				return
			}
		}
		idle.Reset(courierIdle)
	}
}

// noteBreak counts a broken stream; true once there were too many.
func (c *courier) noteBreak() bool {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	c.breaks++
	return c.breaks >= maxBreaks
}

// requeue puts jobs whose stream broke back into the queue, in order, for
// the courier's next stream.
func (c *courier) requeue(jobs []job) {
	if len(jobs) == 0 {
		return
	}
	c.o.mu.Lock()
	for _, j := range jobs {
		i, _ := slices.BinarySearchFunc(c.pending, j, compareJobs)
		c.pending = slices.Insert(c.pending, i, j)
	}
	c.o.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// take pops the next pending job.
func (c *courier) take() (job, bool) {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	if len(c.pending) == 0 {
		return job{}, false
	}
	j := c.pending[0]
	c.pending = c.pending[1:]
	return j, true
}

// retire removes an idle courier with nothing held.
func (c *courier) retire() bool {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	if len(c.held) > 0 {
		return false
	}
	if c.o.couriers[c.to] == c {
		delete(c.o.couriers, c.to)
	}
	return true
}

// giveUp reschedules j (if has) and everything pending, marks the
// recipient unreachable for the backoff, and retires the courier.
func (c *courier) giveUp(ctx context.Context, j job, has bool, err error) {
	c.o.s.log.Debug("recipient unreachable", "to", c.to.String(), "err", err)
	c.o.mu.Lock()
	jobs := c.pending
	if has {
		jobs = append([]job{j}, jobs...)
	}
	c.pending = nil
	if c.o.couriers[c.to] == c {
		delete(c.o.couriers, c.to)
	}
	attempts := 0
	if len(jobs) > 0 {
		attempts = jobs[0].e.Attempts
	}
	c.o.unreachable[c.to] = c.o.s.cfg.Now().Add(c.o.backoff(attempts))
	c.o.mu.Unlock()
	for _, j := range jobs {
		c.o.reschedule(ctx, j)
	}
}

// link is one open stream to the recipient: the courier writes frames,
// a reader goroutine matches acks to the jobs in flight, in order.
type link struct {
	c     *courier
	str   network.Stream
	bw    *bufio.Writer
	slots chan struct{} // one per job in flight, up to window
	done  chan struct{} // closed when the reader ends

	mu       sync.Mutex
	inflight []job
	dead     bool
}

func newLink(c *courier, str network.Stream) *link {
	l := &link{c: c, str: str, bw: bufio.NewWriter(str), slots: make(chan struct{}, window), done: make(chan struct{})}
	c.o.s.track.goFunc(l.readAcks)
	return l
}

func (l *link) broken() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dead
}

// send writes one job, waiting for a free slot in the window.
func (l *link) send(ctx context.Context, j job) error {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		l.c.requeue([]job{j})
		return fmt.Errorf("%w: stream closed", ErrUnavailable)
	case <-ctx.Done():
		l.c.o.release(j)
		return ctx.Err()
	}
	d := &protocol.Delivery{Envelope: j.e.Envelope}
	if j.e.Session {
		d = &protocol.Delivery{Session: j.e.Envelope}
	}
	if j.kind == protocol.KindContactRequest || j.kind == protocol.KindContactAccept {
		if card, err := l.c.o.s.ownCard(); err == nil {
			d.SenderCard = card.Marshal()
		}
	}
	l.mu.Lock()
	if l.dead {
		l.mu.Unlock()
		<-l.slots
		l.c.requeue([]job{j})
		return fmt.Errorf("%w: stream closed", ErrUnavailable)
	}
	l.inflight = append(l.inflight, j)
	l.mu.Unlock()
	l.str.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
	err := protocol.WriteDelivery(l.bw, d)
	if err == nil {
		c := l.c
		c.o.mu.Lock()
		more := len(c.pending) > 0 && len(l.slots) < cap(l.slots)
		c.o.mu.Unlock()
		if !more {
			err = l.bw.Flush() // flush at the end of a burst
		}
	}
	if err != nil {
		l.str.Reset() // the reader fails and reschedules what is in flight
		return err
	}
	return nil
}

// readAcks settles in-flight jobs as their acks arrive; when the stream
// fails, it reschedules whatever is still in flight.
func (l *link) readAcks() {
	defer close(l.done)
	ctx := l.c.o.s.life
	br := bufio.NewReaderSize(l.str, 1024)
	for {
		l.mu.Lock()
		waiting := len(l.inflight) > 0
		l.mu.Unlock()
		if waiting {
			l.str.SetReadDeadline(time.Now().Add(ackTimeout))
		} else {
			l.str.SetReadDeadline(time.Time{})
		}
		ack, err := protocol.ReadAck(br)
		l.mu.Lock()
		if err == nil && (len(l.inflight) == 0 || (ack.MsgID != l.inflight[0].e.MsgID && !ack.MsgID.IsZero())) {
			err = fmt.Errorf("%w: ack for an envelope not in flight", protocol.ErrMalformed)
		}
		if err != nil {
			l.dead = true
			rest := l.inflight
			l.inflight = nil
			l.mu.Unlock()
			l.str.Reset()
			l.c.requeue(rest) // the courier sends them again on a new stream
			return
		}
		j := l.inflight[0]
		l.inflight = l.inflight[1:]
		l.mu.Unlock()
		<-l.slots
		l.c.o.mu.Lock()
		l.c.breaks = 0
		l.c.o.mu.Unlock()
		l.c.o.settle(ctx, j, *ack)
	}
}

// close ends the stream gracefully: the receiver sees EOF after the last
// frame, acks still in flight are read before the reader ends.
func (l *link) close() {
	l.str.CloseWrite()
	select {
	case <-l.done:
	case <-time.After(ackTimeout):
		l.str.Reset()
		<-l.done
	}
	l.str.Close()
}
