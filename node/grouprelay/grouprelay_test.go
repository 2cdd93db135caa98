package grouprelay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/protocoltest"
)

// fixture is a group of alice (admin) and bob at epochs 1 and 2, with
// their own chains, and a relay server on a real host.
type fixture struct {
	s1, s2       *protocol.GroupState
	a1, b1, a2   *protocol.SenderChain
	t1, t1b, t2  *protocol.RelayTicket
	h            host.Host
	ps           *pubsub.PubSub
	dir          string
	now          time.Time
	alice, carol *protocol.PrivateKey
	reg          *prometheus.Registry // nil: no metrics
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), now: time.Now()}
	alice, bob := protocoltest.Key(t, "alice-2048"), protocoltest.Key(t, "bob-2048")
	f.alice, f.carol = alice, protocoltest.Key(t, "carol-2048")
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	f.s1, err = protocol.NewGroupState(alice, alice.ID(), "g", []protocol.GroupMember{{User: bob.ID(), Role: protocol.RoleMember}}, f.now)
	must(err)
	f.s2, err = f.s1.Next(alice, alice.ID(), "g", f.s1.Members, f.now)
	must(err)
	f.a1, err = protocol.NewSenderChain(f.s1, alice.ID())
	must(err)
	f.b1, err = protocol.NewSenderChain(f.s1, bob.ID())
	must(err)
	f.a2, err = protocol.NewSenderChain(f.s2, alice.ID())
	must(err)
	f.t1, err = protocol.NewRelayTicket(f.a1, f.a1, f.s1, nil, nil, f.now)
	must(err)
	f.t1b, err = protocol.NewRelayTicket(f.a1, f.a1, f.s1, []protocol.RelayKey{{Chain: f.b1.ID()}}, nil, f.now.Add(time.Millisecond))
	must(err)
	f.t2, err = protocol.NewRelayTicket(f.a1, f.a2, f.s2, nil, f.t1b, f.now.Add(2*time.Millisecond))
	must(err)
	f.h, f.ps = newPeer(t)
	return f
}

func newPeer(t testing.TB) (host.Host, *pubsub.PubSub) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); h.Close() })
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign))
	if err != nil {
		t.Fatal(err)
	}
	return h, ps
}

func (f *fixture) server(t testing.TB, lim Limits) *Server {
	t.Helper()
	cfg := Config{Dir: f.dir, PubSub: f.ps, Limits: lim, Now: func() time.Time { return f.now }, Logger: slog.New(slog.DiscardHandler)}
	if f.reg != nil {
		cfg.Metrics = f.reg
	}
	s, err := NewServer(f.h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTakeTickets: the order of a topic's tickets, the lineage into the
// next epoch, the limit of topics, and a restart.
func TestTakeTickets(t *testing.T) {
	f := newFixture(t)
	s := f.server(t, Limits{MaxTopics: 2})
	take := func(tk *protocol.RelayTicket) error { return s.Take(f.h.ID(), tk.Marshal()) }
	if err := take(f.t1b); err != nil {
		t.Fatalf("first ticket: %v", err)
	}
	if err := take(f.t1b); err != nil {
		t.Fatalf("the same again: %v", err)
	}
	if err := take(f.t1); !errors.Is(err, protocol.ErrTicketStale) {
		t.Fatalf("an older ticket: %v, want ErrTicketStale", err)
	}
	if err := take(f.t2); err != nil {
		t.Fatalf("the next epoch's: %v", err)
	}
	if s.Ticket(f.t1.Topic()) == nil || s.Ticket(f.t2.Topic()).Hash() != f.t2.Hash() {
		t.Fatal("tickets not held")
	}
	later, err := protocol.NewRelayTicket(f.a1, f.a1, f.s1, []protocol.RelayKey{{Chain: f.b1.ID()}}, nil, f.now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := take(later); !errors.Is(err, protocol.ErrTicketStale) {
		t.Fatalf("a ticket for the topic the group left: %v, want ErrTicketStale", err)
	}
	other, err := protocol.NewGroupState(f.carol, f.carol.ID(), "h", nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := protocol.NewSenderChain(other, f.carol.ID())
	if err != nil {
		t.Fatal(err)
	}
	ot, err := protocol.NewRelayTicket(oc, oc, other, nil, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := take(ot); !errors.Is(err, ErrFull) || codeFor(err) != CodeFull {
		t.Fatalf("a third topic: %v, want ErrFull", err)
	}
	if err := s.Take(f.h.ID(), []byte{1, 2, 3}); !errors.Is(err, protocol.ErrMalformed) || codeFor(err) != CodeMalformed {
		t.Fatalf("garbage: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = f.server(t, Limits{})
	defer s.Close()
	if s.Ticket(f.t2.Topic()) == nil || s.Ticket(f.t1.Topic()) == nil {
		t.Fatal("tickets lost over a restart")
	}
	if err := take(later); !errors.Is(err, protocol.ErrTicketStale) {
		t.Fatalf("after a restart, a ticket for the topic left: %v, want ErrTicketStale", err)
	}
}

// seal makes n messages of chain c.
func seal(t testing.TB, c *protocol.SenderChain, n int, now time.Time) []*protocol.GroupMessage {
	t.Helper()
	var out []*protocol.GroupMessage
	for i := range n {
		m, next, err := c.Seal(protocol.KindText, []byte(fmt.Sprint("m", i)), now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
		c = next
	}
	return out
}

// TestStoreLimits: a topic's cap and the total drop the oldest; a chain
// and iteration is stored once; the sweep drops what expired; the counts
// survive a restart.
func TestStoreLimits(t *testing.T) {
	now := time.Now()
	d, err := openDB(t.TempDir(), slog.New(slog.DiscardHandler), now)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	ta, tb := keyOf("a"), keyOf("b")
	msgs := seal(t, f.a1, 8, now)
	size := int64(msgHeaderLen + len(msgs[0].Marshal()))
	lim := Limits{MaxTopicMessages: 5, MaxTopicBytes: 1 << 20, MaxBytes: 8*size + 20} // iteration 0 encodes 2 bytes shorter
	for i, m := range msgs {
		stored, _, err := d.put(ta, m, m.Marshal(), now.Add(time.Duration(i)*time.Minute), lim)
		if err != nil || !stored {
			t.Fatalf("put %d: %v, %v", i, stored, err)
		}
	}
	if stored, _, err := d.put(ta, msgs[7], msgs[7].Marshal(), now, lim); err != nil || stored {
		t.Fatalf("the same iteration again: stored %v, %v", stored, err)
	}
	got, err := d.chainMessages(ta, f.a1.ID(), 0, 100)
	if err != nil || len(got) != 5 {
		t.Fatalf("topic a holds %d (%v), want its newest 5", len(got), err)
	}
	if first, _ := protocol.ParseGroupMessage(got[0]); first.Iteration != 3 {
		t.Fatalf("oldest kept is iteration %d, want 3", first.Iteration)
	}
	// Topic b's 4 messages push the total over 8: topic a's oldest go.
	for i, m := range seal(t, f.b1, 4, now) {
		if _, _, err := d.put(tb, m, m.Marshal(), now.Add(time.Hour+time.Duration(i)*time.Minute), lim); err != nil {
			t.Fatal(err)
		}
	}
	if d.held(ta) != 4 || d.held(tb) != 4 {
		t.Fatalf("held %d and %d, want 4 and 4", d.held(ta), d.held(tb))
	}
	n, b := d.totals()
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	if d, err = openDB(d.bdb.Opts().Dir, slog.New(slog.DiscardHandler), now); err != nil {
		t.Fatal(err)
	}
	defer d.close()
	if n2, b2 := d.totals(); n2 != n || b2 != b {
		t.Fatalf("after a restart: %d messages, %d bytes; before %d, %d", n2, b2, n, b)
	}
	// Topic a's kept messages arrived at minutes 4 to 7.
	if gone, err := d.sweep(now.Add(6 * time.Minute)); err != nil || gone != 2 || d.held(ta) != 2 || d.held(tb) != 4 {
		t.Fatalf("sweep deleted %d (%v); held %d and %d", gone, err, d.held(ta), d.held(tb))
	}
}

// TestSync: a member of a ticket gets the stored messages of the chains it
// asks for; a chain not in a ticket, a request for another responder, or
// one relabelled, gets nothing.
func TestSync(t *testing.T) {
	f := newFixture(t)
	f.reg = prometheus.NewRegistry()
	f.now = time.Now() // the server's clock, read by its goroutines from Serve on
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
	for _, m := range seal(t, f.a1, 3, f.now) {
		if _, _, err := s.db.put(keyOf(f.t1b.Topic()), m, m.Marshal(), f.now, s.lim); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newPeer(t)
	if err := c.Connect(ctx, peer.AddrInfo{ID: f.h.ID(), Addrs: f.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	ask := func(by *protocol.SenderChain, responder peer.ID, relabel bool) ([]*protocol.GroupMessage, error) {
		r, err := by.SyncRequest([]byte(responder), []protocol.GroupSyncWant{{Sender: f.a1.Sender(), Chain: f.a1.ID(), From: 1}}, time.Now())
		if err != nil {
			return nil, err
		}
		if relabel {
			r.RequesterChain = f.a1.ID()
		}
		st, err := c.NewStream(ctx, f.h.ID(), SyncID)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		if err := protocol.WriteGroupSyncRequest(st, r); err != nil {
			return nil, err
		}
		_ = st.CloseWrite()
		return protocol.ReadGroupSyncResponse(bufio.NewReader(st))
	}
	got, err := ask(f.b1, f.h.ID(), false)
	if err != nil || len(got) != 2 || got[0].Iteration != 1 {
		t.Fatalf("bob's request: %d messages, %v; want iterations 1 and 2", len(got), err)
	}
	stranger, err := protocol.NewSenderChain(f.s2, f.alice.ID()) // a chain of no ticket held
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		by        *protocol.SenderChain
		responder peer.ID
		relabel   bool
	}{
		"chain of no ticket":  {stranger, f.h.ID(), false},
		"another responder":   {f.b1, c.ID(), false},
		"relabelled as alice": {f.b1, f.h.ID(), true},
	} {
		if got, err := ask(tc.by, tc.responder, tc.relabel); err == nil {
			t.Errorf("%s: got %d messages, %v; want the stream reset", name, len(got), err)
		}
	}
	vals, err := metricValues(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"parley_grouprelay_syncs_total{ok}": 1, "parley_grouprelay_syncs_total{refused}": 3,
		"parley_grouprelay_messages_held": 3, "parley_grouprelay_topics": 1,
	} {
		if vals[name] != want {
			t.Errorf("%s = %v, want %v", name, vals[name], want)
		}
	}
}

// metricValues gathers reg into name{label values} → value.
func metricValues(reg *prometheus.Registry) (map[string]float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out, nil
}

// TestTopicLimits: one peer brings at most MaxTopicsPerPeer topics; a
// topic nobody posted on is dropped after the retention, and its bringer
// may bring another.
func TestTopicLimits(t *testing.T) {
	f := newFixture(t)
	s := f.server(t, Limits{MaxTopicsPerPeer: 1})
	defer s.Close()
	other, err := protocol.NewGroupState(f.carol, f.carol.ID(), "h", nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := protocol.NewSenderChain(other, f.carol.ID())
	if err != nil {
		t.Fatal(err)
	}
	ot, err := protocol.NewRelayTicket(oc, oc, other, nil, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	a, b := peer.ID("peer-a"), peer.ID("peer-b")
	if err := s.Take(a, f.t1b.Marshal()); err != nil {
		t.Fatal(err)
	}
	if err := s.Take(a, ot.Marshal()); !errors.Is(err, ErrFull) {
		t.Fatalf("a second topic from one peer: %v, want ErrFull", err)
	}
	if err := s.Take(b, ot.Marshal()); err != nil {
		t.Fatalf("the same from another peer: %v", err)
	}
	// A message on the second topic a day before the sweep keeps it.
	m := seal(t, oc, 1, f.now)[0]
	f.now = f.now.Add(s.lim.Retention + time.Hour)
	if _, _, err := s.db.put(keyOf(ot.Topic()), m, m.Marshal(), f.now.Add(-24*time.Hour), s.lim); err != nil {
		t.Fatal(err)
	}
	s.Sweep()
	if s.Ticket(f.t1b.Topic()) != nil {
		t.Fatal("a topic nobody posted on outlived the retention")
	}
	if s.Ticket(ot.Topic()) == nil || s.HeldOn(ot.Topic()) != 1 {
		t.Fatal("a topic with a recent message went")
	}
	f.now = f.now.Add(s.lim.Retention)
	s.Sweep()
	if s.Ticket(ot.Topic()) != nil || s.HeldOn(ot.Topic()) != 0 {
		t.Fatal("the topic stayed once its message expired")
	}
	if err := s.Take(a, ot.Marshal()); err != nil {
		t.Fatalf("the peer whose topic went brings another: %v", err)
	}
}

type admitFunc func(protocol.ChainID, int) bool

func (f admitFunc) AdmitChain(c protocol.ChainID, n int) bool { return f(c, n) }

// TestValidate: the topic validator's verdicts.
func TestValidate(t *testing.T) {
	f := newFixture(t)
	s := f.server(t, Limits{})
	defer s.Close()
	name := f.t1.Topic()
	verdict := func(m *protocol.GroupMessage) pubsub.ValidationResult {
		raw := []byte{1, 2, 3}
		if m != nil {
			raw = m.Marshal()
		}
		return s.validate(name, "forwarder", &pubsub.Message{Message: &pubpb.Message{Data: raw, Topic: &name}})
	}
	now := time.Now()
	f.now = now
	fromAlice := seal(t, f.a1, 1, now)[0]
	bob2, err := protocol.NewSenderChain(f.s1, f.b1.Sender()) // a chain of bob's the ticket does not list
	if err != nil {
		t.Fatal(err)
	}
	fromBob2 := seal(t, bob2, 1, now)[0]
	if v := verdict(fromAlice); v != pubsub.ValidationIgnore {
		t.Fatalf("no ticket yet: %v, want ignore", v)
	}
	if err := s.Take("p", f.t1.Marshal()); err != nil { // alice's key only, of two members
		t.Fatal(err)
	}
	if v := verdict(fromBob2); v != pubsub.ValidationIgnore {
		t.Fatalf("an unlisted chain while the ticket is incomplete: %v, want ignore", v)
	}
	if err := s.Take("p", f.t1b.Marshal()); err != nil { // complete
		t.Fatal(err)
	}
	forged := *fromAlice
	forged.Ciphertext = append([]byte(nil), fromAlice.Ciphertext...)
	forged.Ciphertext[0] ^= 1
	for name, tc := range map[string]struct {
		m    *protocol.GroupMessage
		want pubsub.ValidationResult
	}{
		"alice's":                {fromAlice, pubsub.ValidationAccept},
		"an unlisted chain":      {fromBob2, pubsub.ValidationReject},
		"garbage":                {nil, pubsub.ValidationReject},
		"tampered":               {&forged, pubsub.ValidationReject},
		"another epoch's":        {seal(t, f.a2, 1, now)[0], pubsub.ValidationReject},
		"out of the time window": {seal(t, f.b1, 1, now.Add(-30*24*time.Hour))[0], pubsub.ValidationIgnore},
	} {
		if v := verdict(tc.m); v != tc.want {
			t.Errorf("%s: %v, want %v", name, v, tc.want)
		}
	}
	s.admit = admitFunc(func(protocol.ChainID, int) bool { return false })
	if v := verdict(seal(t, f.b1, 1, now)[0]); v != pubsub.ValidationIgnore {
		t.Errorf("over the rate: %v, want ignore (its forwarder may be honest)", v)
	}
}

// TestGrace: once the next epoch's ticket follows the held one, the old
// topic still admits its own keys for Grace, then nothing.
func TestGrace(t *testing.T) {
	f := newFixture(t)
	f.now = time.Now()
	s := f.server(t, Limits{Grace: time.Minute})
	defer s.Close()
	for _, tk := range []*protocol.RelayTicket{f.t1b, f.t2} {
		if err := s.Take("p", tk.Marshal()); err != nil {
			t.Fatal(err)
		}
	}
	name := f.t1b.Topic()
	raw := seal(t, f.b1, 1, f.now)[0].Marshal()
	verdict := func() pubsub.ValidationResult {
		return s.validate(name, "p", &pubsub.Message{Message: &pubpb.Message{Data: raw, Topic: &name}})
	}
	if v := verdict(); v != pubsub.ValidationAccept {
		t.Fatalf("the old topic in its grace: %v, want accept", v)
	}
	f.now = f.now.Add(time.Minute + time.Second)
	if v := verdict(); v != pubsub.ValidationIgnore {
		t.Fatalf("the old topic past its grace: %v, want ignore", v)
	}
}
