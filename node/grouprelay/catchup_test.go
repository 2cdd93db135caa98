package grouprelay

import (
	"bufio"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/protocol"
)

// TestFetch: a peer joining a ticketed topic is asked, with the ticket,
// for each chain of the ticket from the first iteration the relay lacks;
// of its answer the relay stores what its topic validator would admit,
// once: not what it holds already, a message of another epoch, a forged
// signature, a chain not in the (complete) ticket, or one older than the
// retention.
func TestFetch(t *testing.T) {
	f := newFixture(t)
	f.reg = prometheus.NewRegistry()
	f.now = time.Now()
	s := f.server(t, Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.Close()
	})
	if err := s.Take(f.h.ID(), f.t1b.Marshal()); err != nil {
		t.Fatal(err)
	}
	name, k := f.t1b.Topic(), keyOf(f.t1b.Topic())
	alice := seal(t, f.a1, 5, f.now)
	for _, m := range alice[:2] { // what the relay held before it went away
		if _, _, err := s.db.put(k, m, m.Marshal(), f.now, s.lim); err != nil {
			t.Fatal(err)
		}
	}
	bob := seal(t, f.b1, 1, f.now)
	forged, err := protocol.ParseGroupMessage(seal(t, f.a1, 6, f.now)[5].Marshal())
	if err != nil {
		t.Fatal(err)
	}
	forged.Signature[0] ^= 1
	other, err := protocol.NewGroupState(f.carol, f.carol.ID(), "h", nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	carol, err := protocol.NewSenderChain(other, f.carol.ID())
	if err != nil {
		t.Fatal(err)
	}
	old := seal(t, f.b1, 2, f.now.Add(-15*24*time.Hour))[1]
	answer := [][]byte{
		alice[0].Marshal(), alice[1].Marshal(), // held already
		seal(t, f.a2, 1, f.now)[0].Marshal(), // epoch 2
		forged.Marshal(),
		seal(t, carol, 1, f.now)[0].Marshal(), // not in the ticket
		old.Marshal(),
		alice[2].Marshal(), alice[3].Marshal(), alice[4].Marshal(), bob[0].Marshal(), // new; last
	}

	// A member that answers the relay's request.
	mh, mps := newPeer(t)
	var (
		mu    sync.Mutex
		asked []*protocol.RelaySyncRequest
	)
	mh.SetStreamHandler(RelaySyncID, func(st network.Stream) {
		defer st.Close()
		r, err := protocol.ReadRelaySyncRequest(bufio.NewReader(st))
		if err != nil {
			_ = st.Reset()
			return
		}
		mu.Lock()
		asked = append(asked, r)
		mu.Unlock()
		_ = protocol.WriteGroupSyncResponse(st, answer)
	})
	tp, err := mps.Join(name)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	if err := mh.Connect(ctx, peer.AddrInfo{ID: f.h.ID(), Addrs: f.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Fetched() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the relay fetched %d messages, want 4", s.Fetched())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.HeldOn(name); n != 6 || s.Fetched() != 4 {
		t.Fatalf("the relay holds %d messages (fetched %d), want 6 (4)", n, s.Fetched())
	}
	mu.Lock()
	r := asked[0]
	mu.Unlock()
	from := map[protocol.ChainID]uint32{}
	for _, w := range r.Wants {
		from[w.Chain] = w.From
	}
	if r.Ticket.Hash() != f.t1b.Hash() || len(from) != 2 || from[f.a1.ID()] != 2 || from[f.b1.ID()] != 0 {
		t.Fatalf("the relay asked with %d wants %v, want alice's from 2 and bob's from 0 with its ticket", len(r.Wants), from)
	}
	vals, err := metricValues(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"parley_grouprelay_fetched_total{stored}": 4, "parley_grouprelay_fetched_total{duplicate}": 2,
		"parley_grouprelay_fetched_total{refused}": 4,
	} {
		if vals[name] != want {
			t.Errorf("%s = %v, want %v", name, vals[name], want)
		}
	}
}
