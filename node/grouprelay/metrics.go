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
		messages: promreg.CounterVec(reg, "grouprelay", "messages_total",
			"Group messages validated on ticketed topics, by result (accept, reject, ignore).", "result"),
		stores: promreg.Counter(reg, "grouprelay", "stored_total",
			"Group messages stored for members' catch-up."),
		drops: promreg.CounterVec(reg, "grouprelay", "dropped_total",
			"Stored group messages deleted, by reason (expired, limit).", "reason"),
		tickets: promreg.CounterVec(reg, "grouprelay", "tickets_total",
			"Relay tickets answered, by result code (ok, auth, not-admin, lineage, stale, ...).", "result"),
		syncs: promreg.CounterVec(reg, "grouprelay", "syncs_total",
			"Group sync requests, by result (ok, refused).", "result"),
		fetches: promreg.CounterVec(reg, "grouprelay", "fetched_total",
			"Group messages the relay fetched from members after being away, by result (stored, duplicate, refused).", "result"),
	}
	promreg.GaugeFunc(reg, "grouprelay", "messages_held", "Group messages the relay holds.",
		func() float64 { n, _ := s.db.totals(); return float64(n) })
	promreg.GaugeFunc(reg, "grouprelay", "bytes_held", "Bytes of group messages the relay holds.",
		func() float64 { _, b := s.db.totals(); return float64(b) })
	promreg.GaugeFunc(reg, "grouprelay", "topics", "Group topics the relay is on.",
		func() float64 { return float64(len(s.Topics())) })
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
