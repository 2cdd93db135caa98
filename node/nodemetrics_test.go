package node

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gathered is the value of each sample in reg, by metric name and label
// values ("name" or "name{value}"); a histogram gives its sample count.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestNodeMetrics: after traffic, the sender counts its messages sent by
// path and their latency, the receiver counts them received, and
// refusals by code; the gauges show an empty outbox, open sessions and
// the store's size.
func TestNodeMetrics(t *testing.T) {
	ctx := context.Background()
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	ca, cb := testConfig(t, "alice-2048"), testConfig(t, "bob-2048")
	ca.Metrics, cb.Metrics = regA, regB
	a, b := startNode(t, ca, "alice"), startNode(t, cb, "bob")
	if got := gathered(t, regA)["parley_node_unlocked"]; got != 1 {
		t.Fatalf("parley_node_unlocked = %v", got)
	}
	befriend(t, a, b)
	ma, mb := meOf(t, a), meOf(t, b)
	for _, s := range []string{"one", "two", "three"} {
		if _, err := a.Send(ctx, mb.UserID, s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "three sent and received", func() bool {
		ga, gb := gathered(t, regA), gathered(t, regB)
		return ga["parley_messages_sent_total{direct}"] == 3 && gb["parley_messages_received_total{direct}"] == 3 &&
			ga["parley_outbox_depth"] == 0
	})
	ga := gathered(t, regA)
	if ga["parley_messages_delivery_latency_seconds"] != 3 || ga["parley_sessions_open"] < 1 || ga["parley_store_size_bytes"] <= 0 {
		t.Errorf("metrics after traffic: %v", ga)
	}
	if ga["parley_outbox_oldest_age_seconds"] != 0 {
		t.Errorf("oldest age %v with an empty outbox", ga["parley_outbox_oldest_age_seconds"])
	}

	// Bob blocks Alice: her next message is refused (not_a_friend) and
	// counted by Bob, and fails at Alice.
	if _, err := b.BlockFriend(ctx, ma.UserID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, mb.UserID, "four"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the refusal counted", func() bool {
		for k, v := range gathered(t, regB) {
			if len(k) > len("parley_envelopes_refused_total") && k[:len("parley_envelopes_refused_total")] == "parley_envelopes_refused_total" && v >= 1 {
				return true
			}
		}
		return false
	})
	waitFor(t, 20*time.Second, "the failure counted", func() bool {
		return gathered(t, regA)["parley_messages_failed_total"] >= 1
	})

	// Locked (closed), the gauges read zero and the counters stay.
	closeNode(t, a)
	ga = gathered(t, regA)
	if ga["parley_node_unlocked"] != 0 || ga["parley_messages_sent_total{direct}"] != 3 {
		t.Errorf("after close: %v", ga)
	}
}
