package mailbox

import (
	"github.com/parley-chat/parley/internal/promreg"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the relay's mailbox metrics; nil-safe methods, so a server
// without a registry counts nothing.
type metrics struct {
	deposits *prometheus.CounterVec
	pipes    prometheus.Counter
	writes   prometheus.Counter
	fetches  *prometheus.CounterVec
	acked    prometheus.Counter
	expired  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, d *db) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		deposits: promreg.CounterVec(reg, "mailbox", "deposits_total",
			"Deposits answered, by result code (ok, full, sender-quota, rate-limited, ...).", "result"),
		pipes: promreg.Counter(reg, "mailbox", "deposit_streams_total",
			"Deposit streams served, each a pipeline of one or more deposits (deposits_total / this is the mean pipeline)."),
		writes: promreg.Counter(reg, "mailbox", "deposit_writes_total",
			"Synced writes that held deposits, each holding the deposits of a stream that had arrived (deposits_total{result=\"ok\"} / this is the mean batch)."),
		fetches: promreg.CounterVec(reg, "mailbox", "fetches_total",
			"Fetches (and registrations) answered, by result code (ok, not-authorised, ...).", "result"),
		acked: promreg.Counter(reg, "mailbox", "acked_total",
			"Envelopes deleted because their recipient acknowledged them."),
		expired: promreg.Counter(reg, "mailbox", "expired_total",
			"Envelopes deleted unfetched at the end of their TTL."),
	}
	promreg.GaugeFunc(reg, "mailbox", "envelopes_held", "Envelopes the relay holds for offline recipients.",
		func() float64 { n, _ := d.totals(); return float64(n) })
	promreg.GaugeFunc(reg, "mailbox", "bytes_held", "Bytes of envelopes the relay holds for offline recipients.",
		func() float64 { _, b := d.totals(); return float64(b) })
	return m
}

func (m *metrics) deposit(c Code) {
	if m != nil {
		m.deposits.WithLabelValues(c.String()).Inc()
	}
}

func (m *metrics) depositStream() {
	if m != nil {
		m.pipes.Inc()
	}
}

func (m *metrics) depositWrite() {
	if m != nil {
		m.writes.Inc()
	}
}

func (m *metrics) fetch(c Code) {
	if m != nil {
		m.fetches.WithLabelValues(c.String()).Inc()
	}
}

func (m *metrics) ack(n int) {
	if m != nil {
		m.acked.Add(float64(n))
	}
}

func (m *metrics) expire(n int) {
	if m != nil {
		m.expired.Add(float64(n))
	}
}
