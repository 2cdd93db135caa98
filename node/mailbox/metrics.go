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
		deposits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "mailbox", Name: "deposits_total",
			Help: "Deposits answered, by result code (ok, full, sender-quota, rate-limited, ...).",
		}, []string{"result"}),
		pipes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "mailbox", Name: "deposit_streams_total",
			Help: "Deposit streams served, each a pipeline of one or more deposits (deposits_total / this is the mean pipeline).",
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "mailbox", Name: "deposit_writes_total",
			Help: "Synced writes that held deposits, each holding the deposits of a stream that had arrived (deposits_total{result=\"ok\"} / this is the mean batch).",
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "mailbox", Name: "fetches_total",
			Help: "Fetches (and registrations) answered, by result code (ok, not-authorised, ...).",
		}, []string{"result"}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "mailbox", Name: "acked_total",
			Help: "Envelopes deleted because their recipient acknowledged them.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "mailbox", Name: "expired_total",
			Help: "Envelopes deleted unfetched at the end of their TTL.",
		}),
	}
	m.deposits = promreg.Register(reg, m.deposits)
	m.pipes = promreg.Register(reg, m.pipes)
	m.writes = promreg.Register(reg, m.writes)
	m.fetches = promreg.Register(reg, m.fetches)
	m.acked = promreg.Register(reg, m.acked)
	m.expired = promreg.Register(reg, m.expired)
	// A second server in one process (tests) keeps the first one's gauges.
	reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "mailbox", Name: "envelopes_held",
		Help: "Envelopes the relay holds for offline recipients.",
	}, func() float64 { n, _ := d.totals(); return float64(n) }))
	reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "mailbox", Name: "bytes_held",
		Help: "Bytes of envelopes the relay holds for offline recipients.",
	}, func() float64 { _, b := d.totals(); return float64(b) }))
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
