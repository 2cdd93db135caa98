package grouprelay

import (
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/internal/promreg"
)

// metrics are the group relay's metrics; nil-safe methods, so a server
// without a registry counts nothing.
type metrics struct {
	messages *prometheus.CounterVec
	stores   prometheus.Counter
	drops    *prometheus.CounterVec
	tickets  *prometheus.CounterVec
	syncs    *prometheus.CounterVec
	fetches  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "grouprelay", Name: "messages_total",
			Help: "Group messages validated on ticketed topics, by result (accept, reject, ignore).",
		}, []string{"result"}),
		stores: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "grouprelay", Name: "stored_total",
			Help: "Group messages stored for members' catch-up.",
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "grouprelay", Name: "dropped_total",
			Help: "Stored group messages deleted, by reason (expired, limit).",
		}, []string{"reason"}),
		tickets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "grouprelay", Name: "tickets_total",
			Help: "Relay tickets answered, by result code (ok, auth, not-admin, lineage, stale, ...).",
		}, []string{"result"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "grouprelay", Name: "syncs_total",
			Help: "Group sync requests, by result (ok, refused).",
		}, []string{"result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "grouprelay", Name: "fetched_total",
			Help: "Group messages the relay fetched from members after being away, by result (stored, duplicate, refused).",
		}, []string{"result"}),
	}
	m.messages = promreg.Register(reg, m.messages)
	m.stores = promreg.Register(reg, m.stores)
	m.drops = promreg.Register(reg, m.drops)
	m.tickets = promreg.Register(reg, m.tickets)
	m.syncs = promreg.Register(reg, m.syncs)
	m.fetches = promreg.Register(reg, m.fetches)
	// A second server in one process (tests) keeps the first one's gauges.
	reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "grouprelay", Name: "messages_held",
		Help: "Group messages the relay holds.",
	}, func() float64 { n, _ := s.db.totals(); return float64(n) }))
	reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "grouprelay", Name: "bytes_held",
		Help: "Bytes of group messages the relay holds.",
	}, func() float64 { _, b := s.db.totals(); return float64(b) }))
	reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "grouprelay", Name: "topics",
		Help: "Group topics the relay is on.",
	}, func() float64 { return float64(len(s.Topics())) }))
	return m
}

var resultNames = map[pubsub.ValidationResult]string{
	pubsub.ValidationAccept: "accept", pubsub.ValidationReject: "reject", pubsub.ValidationIgnore: "ignore",
}

func (m *metrics) message(r pubsub.ValidationResult) {
	if m != nil {
		m.messages.WithLabelValues(resultNames[r]).Inc()
	}
}

func (m *metrics) stored() {
	if m != nil {
		m.stores.Inc()
	}
}

func (m *metrics) dropped(reason string, n int) {
	if m != nil {
		m.drops.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *metrics) ticket(c Code) {
	if m != nil {
		m.tickets.WithLabelValues(c.String()).Inc()
	}
}

func (m *metrics) sync(ok bool) {
	if m != nil {
		r := "refused"
		if ok {
			r = "ok"
		}
		m.syncs.WithLabelValues(r).Inc()
	}
}

func (m *metrics) fetched(result string) {
	if m != nil {
		m.fetches.WithLabelValues(result).Inc()
	}
}
