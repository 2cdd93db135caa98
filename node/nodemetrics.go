package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/internal/promreg"
	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/store"
)

// nodeMetrics are the node's own Prometheus metrics (Config.Metrics),
// beside libp2p's, the outbox's, the directory's and the group rate
// limits' (groupguard.Collector). The counters follow
// the event bus (bus.observe), so they count what the user is told;
// the gauges are read from the running node at scrape time.
type nodeMetrics struct {
	now      func() time.Time
	sent     *prometheus.CounterVec // by path
	received *prometheus.CounterVec // by path
	failed   prometheus.Counter
	refused  *prometheus.CounterVec // by code
	latency  prometheus.Histogram
}

// newNodeMetrics registers the node's metrics with reg: the counters, and
// a collector of the gauges that asks n when scraped.
func newNodeMetrics(reg prometheus.Registerer, n *Node) *nodeMetrics {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "parley", Subsystem: "messages", Name: name, Help: help}
	}
	m := &nodeMetrics{
		now: n.cfg.Now,
		sent: promreg.Register(reg, prometheus.NewCounterVec(opts("sent_total",
			"Messages delivered to a device of the recipient (acknowledged as stored), by path."), []string{"path"})),
		received: promreg.Register(reg, prometheus.NewCounterVec(opts("received_total",
			"Messages received and stored, by path."), []string{"path"})),
		failed: promreg.Register(reg, prometheus.NewCounter(opts("failed_total",
			"Messages that failed for good (refused by the recipient, or unreadable in the outbox)."))),
		refused: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "envelopes", Name: "refused_total",
			Help: "Incoming envelopes refused, by ack code (bad_signature, replay, not_a_friend, ...).",
		}, []string{"code"})),
		latency: promreg.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "parley", Subsystem: "messages", Name: "delivery_latency_seconds",
			Help:    "Time from send to the recipient's acknowledgement, for delivered messages.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10), // 5 ms .. about 22 min
		})),
	}
	promreg.Register(reg, &nodeCollector{n: n})
	promreg.Register(reg, groupguard.NewCollector(func() *groupguard.Guard {
		if u, err := n.running(); err == nil && u.groups != nil {
			return u.groups.guard
		}
		return nil
	}))
	return m
}

// observe counts one event.
func (m *nodeMetrics) observe(e Event) {
	switch e.Type {
	case EventMessage:
		m.received.WithLabelValues(pathLabel(e.Message.Path)).Inc()
	case EventMessageStatus:
		msg := e.Message
		if msg.Direction != store.Out {
			return
		}
		switch msg.Status {
		case store.StatusDelivered:
			m.sent.WithLabelValues(pathLabel(msg.Path)).Inc()
			if !msg.SentAt.IsZero() {
				m.latency.Observe(max(0, m.now().Sub(msg.SentAt).Seconds()))
			}
		case store.StatusFailed:
			m.failed.Inc()
		}
	case EventEnvelopeRefused:
		m.refused.WithLabelValues(e.Code).Inc()
	}
}

func pathLabel(p store.Path) string {
	if p == "" {
		return "direct"
	}
	return string(p)
}

// nodeCollector reports the gauges of the running node when scraped:
// zero (and unlocked 0) while it is locked.
type nodeCollector struct{ n *Node }

var (
	descUnlocked = prometheus.NewDesc("parley_node_unlocked", "1 while the node is unlocked (running), else 0.", nil, nil)
	descDepth    = prometheus.NewDesc("parley_outbox_depth", "Entries in the outbox: messages and control envelopes waiting for delivery.", nil, nil)
	descOldest   = prometheus.NewDesc("parley_outbox_oldest_age_seconds",
		"Age of the oldest message waiting in the outbox (0 when none waits).", nil, nil)
	descSessions  = prometheus.NewDesc("parley_sessions_open", "Friends with double-ratchet sessions loaded.", nil, nil)
	descStoreSize = prometheus.NewDesc("parley_store_size_bytes", "The database's size on disk (LSM tree and value log).", nil, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUnlocked, descDepth, descOldest, descSessions, descStoreSize} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	u, err := c.n.running()
	if err != nil {
		for _, d := range []*prometheus.Desc{descUnlocked, descDepth, descOldest, descSessions, descStoreSize} {
			gauge(d, 0)
		}
		return
	}
	gauge(descUnlocked, 1)
	ctx, cancel := context.WithTimeout(u.life, 5*time.Second)
	defer cancel()
	depth, oldest, err := u.st.OutboxStats(ctx)
	if err == nil {
		gauge(descDepth, float64(depth))
		age := 0.0
		if !oldest.IsZero() {
			age = max(0, c.n.cfg.Now().Sub(oldest).Seconds())
		}
		gauge(descOldest, age)
	}
	gauge(descSessions, float64(u.msgs.sessionCount()))
	gauge(descStoreSize, float64(u.st.Size()))
}
