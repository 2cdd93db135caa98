package groupguard

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descAdmitted = prometheus.NewDesc("parley_group_messages_admitted_total",
		"Group messages within their rate: by forwarding peer (before validation) or by sender key (after).", []string{"by"}, nil)
	descDropped = prometheus.NewDesc("parley_group_messages_dropped_total",
		"Group messages dropped over their rate: by forwarding peer (before validation) or by sender key (after).", []string{"by"}, nil)
	descTracked = prometheus.NewDesc("parley_group_rate_keys",
		"Forwarding peers and sender keys whose rate is tracked.", []string{"kind"}, nil)
	descGraylisted = prometheus.NewDesc("parley_group_peers_graylisted",
		"Peers whose gossipsub score is below the graylist threshold (as last sampled).", nil, nil)
)

// Collector reports a Guard's counters to Prometheus when scraped. Its
// function returns the Guard in use (nil: none, nothing reported), so
// that it follows a node that is locked and unlocked again.
type Collector struct{ guard func() *Guard }

// NewCollector returns a Collector of the Guard guard returns.
func NewCollector(guard func() *Guard) *Collector { return &Collector{guard: guard} }

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAdmitted, descDropped, descTracked, descGraylisted} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	g := c.guard()
	if g == nil {
		return
	}
	s := g.Stats()
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	counter(descAdmitted, s.PeerAdmitted, "peer")
	counter(descAdmitted, s.ChainAdmitted, "chain")
	counter(descDropped, s.PeerDropped, "peer")
	counter(descDropped, s.ChainDropped, "chain")
	ch <- prometheus.MustNewConstMetric(descTracked, prometheus.GaugeValue, float64(s.Peers), "peer")
	ch <- prometheus.MustNewConstMetric(descTracked, prometheus.GaugeValue, float64(s.Chains), "chain")
	ch <- prometheus.MustNewConstMetric(descGraylisted, prometheus.GaugeValue, float64(g.graylisted()))
}

// graylisted counts the peers last sampled below the graylist threshold.
func (g *Guard) graylisted() int {
	g.scoresMu.Lock()
	defer g.scoresMu.Unlock()
	n := 0
	for _, s := range g.scores {
		if s < GraylistThreshold {
			n++
		}
	}
	return n
}
