// Package promreg registers Prometheus collectors of parts that may be
// built more than once in one process (a node that unlocks again, two
// outboxes in a test): the second registration of a collector shares the
// first one's instead of failing.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg, or returns the equal collector already
// registered there under the same description.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// Counter is the counter parley_<subsystem>_<name>, registered with reg
// as Register does.
func Counter(reg prometheus.Registerer, subsystem, name, help string) prometheus.Counter {
	return Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "parley", Subsystem: subsystem, Name: name, Help: help,
	}))
}

// CounterVec is the counter parley_<subsystem>_<name> with labels,
// registered with reg as Register does.
func CounterVec(reg prometheus.Registerer, subsystem, name, help string, labels ...string) *prometheus.CounterVec {
	return Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "parley", Subsystem: subsystem, Name: name, Help: help,
	}, labels))
}

// GaugeFunc registers the gauge parley_<subsystem>_<name> that f reads.
// Where one of that name is registered already (a second server in one
// process, in tests), that one stays and f is not registered.
func GaugeFunc(reg prometheus.Registerer, subsystem, name, help string, f func() float64) {
	reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: subsystem, Name: name, Help: help,
	}, f))
}
