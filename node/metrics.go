package node

import (
	"github.com/parley-chat/parley/internal/promreg"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// reservationTracer keeps libp2p's relay metrics and adds the gauge
// operators ask for first: how many reservations the relay holds now.
type reservationTracer struct {
	relayv2.MetricsTracer
	active prometheus.Gauge
}

func newReservationTracer(reg prometheus.Registerer) *reservationTracer {
	t := &reservationTracer{
		MetricsTracer: relayv2.NewMetricsTracer(relayv2.WithRegisterer(reg)),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "parley", Subsystem: "relay", Name: "reservations",
			Help: "Circuit relay v2 reservations currently held.",
		}),
	}
	t.active = promreg.Register(reg, t.active)
	return t
}

func (t *reservationTracer) ReservationAllowed(isRenewal bool) {
	t.MetricsTracer.ReservationAllowed(isRenewal)
	if !isRenewal {
		t.active.Inc()
	}
}

func (t *reservationTracer) ReservationClosed(cnt int) {
	t.MetricsTracer.ReservationClosed(cnt)
	t.active.Sub(float64(cnt))
}
