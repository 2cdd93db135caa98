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
