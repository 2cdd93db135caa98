package directory

import (
	"context"

	"github.com/parley-chat/parley/internal/promreg"

	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the directory's Prometheus metrics: records this node
// stores for the DHT, and the DHT requests it serves. libp2p's own
// metrics sit beside them in the same registry.
type Metrics struct {
	reg      prometheus.Registerer
	requests *prometheus.CounterVec
}

// NewMetrics registers the directory's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "dht", Name: "requests_served_total",
			Help: "DHT requests served, by type (GET_VALUE is a record lookup, GET_PROVIDERS a name lookup).",
		}, []string{"type"}),
	}
	m.requests = promreg.Register(reg, m.requests)
	return m
}

func (m *Metrics) request(t dhtpb.Message_MessageType) {
	m.requests.WithLabelValues(t.String()).Inc()
}

// watchValues exports the number of records in the DHT's value store.
func (m *Metrics) watchValues(values datastore.Read) {
	// A second DHT in the same process (a node unlocked again) keeps the
	// first one's gauge.
	m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "dht", Name: "records_stored",
		Help: "User records this node stores for the DHT.",
	}, func() float64 {
		res, err := values.Query(context.Background(), query.Query{KeysOnly: true})
		if err != nil {
			return 0
		}
		defer res.Close()
		n := 0
		for r := range res.Next() {
			if r.Error == nil {
				n++
			}
		}
		return float64(n)
	}))
}
