package groupguard

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

func TestCollector(t *testing.T) {
	g, _ := newGuard(t, Config{Peer: Rate{Msgs: 1, BurstMsgs: 2}, Chain: Rate{Msgs: 1, BurstMsgs: 1}})
	for range 3 {
		g.AdmitPeer("p", 10)
		g.AdmitChain(chainID(1), 10)
	}
	g.setScores(map[peer.ID]float64{"p": GraylistThreshold - 1, "q": 0})
	var current *Guard
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(func() *Guard { return current }))
	if fams, err := reg.Gather(); err != nil || len(fams) != 0 {
		t.Fatalf("without a guard: %d metric families (%v), want none", len(fams), err)
	}
	current = g
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"parley_group_messages_admitted_total/peer": 2, "parley_group_messages_dropped_total/peer": 1,
		"parley_group_messages_admitted_total/chain": 1, "parley_group_messages_dropped_total/chain": 2,
		"parley_group_rate_keys/peer": 1, "parley_group_rate_keys/chain": 1, "parley_group_peers_graylisted": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
