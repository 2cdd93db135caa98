package outbox

import (
	"sync/atomic"

	"github.com/parley-chat/parley/internal/promreg"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats count what an outbox put on the wire since New.
type Stats struct {
	// Sent is the frames written on a stream (buffered without error).
	Sent uint64
	// Resent is the frames among Sent for an entry that had been written
	// on a stream before: sent again after a broken stream (a rewind),
	// a deferral or a reseal.
	Resent uint64
	// Breaks is the streams given up as broken, each followed by a
	// rewind to its first unacknowledged entry.
	Breaks uint64
	// UnackedAtBreak is, summed over Breaks, the frames in flight
	// (written, not acknowledged) when the stream was given up: what the
	// rewind may send again. Resent never exceeds it, unless the store
	// failed to settle acknowledged entries (they stay queued and go
	// again with a later courier).
	UnackedAtBreak uint64
	// Deposited is the entries held by a recipient's mailbox relay
	// (Config.Deposit), counted when the relay answers, before they are
	// settled as sent with path mailbox: once the queue shows them gone,
	// they are counted. An entry whose settle fails goes again and is
	// counted again, as the relay holds it again.
	Deposited uint64
}

// counters are an outbox's Stats, and the Prometheus counters they also
// feed when Config.Metrics is set (shared with an earlier outbox of the
// same registry: a node that unlocks again in the same process).
type counters struct {
	sent, resent, breaks, unacked, deposited atomic.Uint64

	promSent, promResent, promBreaks, promUnacked, promDeposited prometheus.Counter // nil without a registry
}

func newCounters(reg prometheus.Registerer) *counters {
	c := &counters{}
	if reg == nil {
		return c
	}
	counter := func(name, help string) prometheus.Counter {
		return promreg.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "outbox", Name: name, Help: help,
		}))
	}
	c.promSent = counter("frames_sent_total", "Delivery frames written on a stream to a recipient.")
	c.promResent = counter("frames_resent_total",
		"Delivery frames written again for an entry already written on a stream before (after a broken stream, a deferral or a reseal).")
	c.promBreaks = counter("stream_breaks_total", "Delivery streams given up as broken, each followed by a rewind to the first unacknowledged entry.")
	c.promUnacked = counter("unacked_at_break_total",
		"Delivery frames in flight (written, not acknowledged) on streams when they broke, summed: what the rewinds may send again.")
	c.promDeposited = counter("deposited_total", "Entries held by a recipient's mailbox relay, after the recipient could not be reached directly.")
	return c
}

// wrote counts one frame written; again when its entry was written before.
func (c *counters) wrote(again bool) {
	c.sent.Add(1)
	if c.promSent != nil {
		c.promSent.Inc()
	}
	if again {
		c.resent.Add(1)
		if c.promResent != nil {
			c.promResent.Inc()
		}
	}
}

// broke counts a stream given up with inflight frames unacknowledged.
func (c *counters) broke(inflight int) {
	c.breaks.Add(1)
	c.unacked.Add(uint64(inflight))
	if c.promBreaks != nil {
		c.promBreaks.Inc()
		c.promUnacked.Add(float64(inflight))
	}
}

// deposit counts n entries held by a mailbox.
func (c *counters) deposit(n int) {
	c.deposited.Add(uint64(n))
	if c.promDeposited != nil {
		c.promDeposited.Add(float64(n))
	}
}

// Stats returns the outbox's counters (cheap: a few atomic loads).
func (o *Outbox) Stats() Stats {
	c := o.stats
	return Stats{Sent: c.sent.Load(), Resent: c.resent.Load(), Breaks: c.breaks.Load(), UnackedAtBreak: c.unacked.Load(), Deposited: c.deposited.Load()}
}
