package outbox

import (
	"bufio"
	"context"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// memStore is an in-memory Store: one queue per recipient, in Seq order.
type memStore struct {
	mu      sync.Mutex
	queue   map[protocol.ID][]store.OutboxEntry
	settled map[store.MsgID]store.Status
	paths   map[store.MsgID]store.Path
	added   map[protocol.ID]int // entries ever added per recipient
	changed chan struct{}       // signalled after each settle; capacity 1
}

func newMemStore() *memStore {
	return &memStore{
		queue:   make(map[protocol.ID][]store.OutboxEntry),
		settled: make(map[store.MsgID]store.Status),
		paths:   make(map[store.MsgID]store.Path),
		added:   make(map[protocol.ID]int),
		changed: make(chan struct{}, 1),
	}
}

// add queues n more entries for to, Seq numbered on from those added
// before (1..n the first time), their MsgID's first byte the Seq.
func (s *memStore) add(to protocol.ID, n int) []store.OutboxEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var es []store.OutboxEntry
	first := s.added[to] + 1
	s.added[to] += n
	for i := first; i < first+n; i++ {
		var id store.MsgID
		id[0], id[1] = byte(i), 0xAA
		e := store.OutboxEntry{MsgID: id, Recipient: to, Envelope: id[:], Seq: uint64(i)}
		s.queue[to] = append(s.queue[to], e)
		es = append(es, e)
	}
	return es
}

func (s *memStore) OutboxQueue(_ context.Context, to protocol.ID, after uint64, limit int) ([]store.OutboxEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.OutboxEntry
	for _, e := range s.queue[to] {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *memStore) OutboxRecipients(context.Context) ([]protocol.ID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tos []protocol.ID
	for to, q := range s.queue {
		if len(q) > 0 {
			tos = append(tos, to)
		}
	}
	return tos, nil
}

func (s *memStore) FinishOutboxes(_ context.Context, settles []store.Settle) ([]store.Message, []error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs := make([]store.Message, len(settles))
	errs := make([]error, len(settles))
	for i, x := range settles {
		found := false
		for to, q := range s.queue {
			if j := slices.IndexFunc(q, func(e store.OutboxEntry) bool { return e.MsgID == x.MsgID }); j >= 0 {
				s.queue[to] = slices.Delete(q, j, j+1)
				found = true
				break
			}
		}
		if !found {
			errs[i] = store.ErrNotFound
			continue
		}
		s.settled[x.MsgID] = x.Status
		s.paths[x.MsgID] = x.Path
		msgs[i] = store.Message{ID: x.MsgID, Status: x.Status}
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return msgs, errs, nil
}

func (s *memStore) status(id store.MsgID) store.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settled[id]
}

func (s *memStore) path(id store.MsgID) store.Path {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paths[id]
}

func (s *memStore) queued(to protocol.ID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue[to])
}

// pipeStream is a network.Stream over one end of a net.Pipe; the methods
// the outbox does not use panic (the embedded nil interface).
type pipeStream struct {
	network.Stream
	c       net.Conn
	limited bool // on a relayed connection
}

// pipeConn is the connection of a pipeStream: only its Stat and IsClosed
// are used.
type pipeConn struct {
	network.Conn
	limited bool
}

func (c pipeConn) Stat() network.ConnStats {
	return network.ConnStats{Stats: network.Stats{Limited: c.limited}}
}
func (c pipeConn) IsClosed() bool { return false }

func (p *pipeStream) Conn() network.Conn { return pipeConn{limited: p.limited} }

func (p *pipeStream) Read(b []byte) (int, error)         { return p.c.Read(b) }
func (p *pipeStream) Write(b []byte) (int, error)        { return p.c.Write(b) }
func (p *pipeStream) Close() error                       { return p.c.Close() }
func (p *pipeStream) CloseWrite() error                  { return p.c.Close() }
func (p *pipeStream) Reset() error                       { return p.c.Close() }
func (p *pipeStream) SetReadDeadline(t time.Time) error  { return p.c.SetReadDeadline(t) }
func (p *pipeStream) SetWriteDeadline(t time.Time) error { return p.c.SetWriteDeadline(t) }

// receiver plays the recipient: stream i (from 0) is answered by
// scripts[i] (the last script for any later stream). A script gets the
// stream's frames one by one and returns the acks to write after it (in
// order), and whether to close the stream after them.
type receiver struct {
	scripts []func(n int, id store.MsgID) (acks []protocol.Ack, hangUp bool)
	// limited, if set, says whether the next stream runs on a relayed
	// connection.
	limited func() bool

	mu      sync.Mutex
	streams [][]store.MsgID // the frames each stream carried, in order
	wg      sync.WaitGroup
}

func (r *receiver) open(context.Context, protocol.ID) (network.Stream, error) {
	mine, theirs := net.Pipe()
	r.mu.Lock()
	i := len(r.streams)
	r.streams = append(r.streams, nil)
	script := r.scripts[min(i, len(r.scripts)-1)]
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer theirs.Close()
		br, bw := bufio.NewReader(theirs), bufio.NewWriter(theirs)
		for n := 0; ; n++ {
			d, err := protocol.ReadDelivery(br)
			if err != nil {
				return // the sender closed or reset the stream
			}
			id := store.MsgID(d.Envelope)
			r.mu.Lock()
			r.streams[i] = append(r.streams[i], id)
			r.mu.Unlock()
			acks, hangUp := script(n, id)
			for _, a := range acks {
				if err := protocol.WriteAck(bw, &a); err != nil {
					return
				}
			}
			if err := bw.Flush(); err != nil || hangUp {
				return
			}
		}
	}()
	return &pipeStream{c: mine, limited: r.limited != nil && r.limited()}, nil
}

func (r *receiver) carried() [][]store.MsgID {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]store.MsgID, len(r.streams))
	for i, s := range r.streams {
		out[i] = slices.Clone(s)
	}
	return out
}

// ackAll acknowledges every frame at once.
func ackAll(_ int, id store.MsgID) ([]protocol.Ack, bool) {
	return []protocol.Ack{{MsgID: id, Code: protocol.AckOK}}, false
}

// holdThenAck takes total frames without answering, then acknowledges the
// first acked of them and hangs up (a receiver that dies with the rest
// stored nowhere), or answers the frame after them with code and keeps
// the stream.
func holdThenAck(total, acked int, code protocol.AckCode, ids []store.OutboxEntry) func(int, store.MsgID) ([]protocol.Ack, bool) {
	return func(n int, _ store.MsgID) ([]protocol.Ack, bool) {
		if n < total-1 {
			return nil, false
		}
		var acks []protocol.Ack
		for _, e := range ids[:acked] {
			acks = append(acks, protocol.Ack{MsgID: e.MsgID, Code: protocol.AckOK})
		}
		if code == protocol.AckOK {
			return acks, true
		}
		return append(acks, protocol.Ack{MsgID: ids[acked].MsgID, Code: code}), false
	}
}

func frame(e store.OutboxEntry) (*protocol.Delivery, error) {
	return &protocol.Delivery{Envelope: e.Envelope}, nil
}

// testConfig is an outbox on st delivering to r, with short retries.
func testConfig(st Store, r *receiver) Config {
	return Config{
		Store: st, Open: r.open, Frame: frame,
		RetryMin: 5 * time.Millisecond, RetryMax: time.Minute, AckTimeout: 5 * time.Second,
	}
}

// run serves an outbox on cfg (delivering to r) until stop, which the
// test's end calls too; stop returns what Serve returned. ended is
// closed when Serve returns on its own or after stop.
func run(t *testing.T, cfg Config, r *receiver) (o *Outbox, stop func() error, ended <-chan struct{}) {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var serveErr error
	go func() {
		serveErr = o.Serve(ctx)
		close(done)
	}()
	stop = sync.OnceValue(func() error {
		cancel()
		<-done
		r.wg.Wait()
		return serveErr
	})
	t.Cleanup(func() { stop() })
	return o, stop, done
}

// serve runs an outbox on st and r until the test ends, when Serve must
// return no error.
func serve(t *testing.T, st *memStore, r *receiver, reg prometheus.Registerer) *Outbox {
	t.Helper()
	cfg := testConfig(st, r)
	cfg.Metrics = reg
	o, stop, _ := run(t, cfg, r)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return o
}

// waitDrained waits until nothing is queued for to.
func waitDrained(t *testing.T, st *memStore, to protocol.ID) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for st.queued(to) > 0 {
		select {
		case <-st.changed:
		case <-deadline.C:
			t.Fatalf("%d entries still queued after 10 s", st.queued(to))
		}
	}
}

func ids(es []store.OutboxEntry) []store.MsgID {
	out := make([]store.MsgID, len(es))
	for i, e := range es {
		out[i] = e.MsgID
	}
	return out
}

// TestRewindResendsUnacked breaks the stream with some of the frames in
// flight acknowledged: the next stream carries exactly the others, in
// order, and the counters say so.
func TestRewindResendsUnacked(t *testing.T) {
	const total = 10
	for _, tc := range []struct {
		name  string
		acked int
		code  protocol.AckCode // the answer to the frame after the acked ones; ok: hang up instead
	}{
		{"receiver hangs up", 4, protocol.AckOK},
		{"receiver hangs up before any ack", 0, protocol.AckOK},
		{"receiver defers", 3, protocol.AckUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := protocol.ID{1}
			st := newMemStore()
			es := st.add(to, total)
			r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){
				holdThenAck(total, tc.acked, tc.code, es), ackAll,
			}}
			reg := prometheus.NewRegistry()
			o := serve(t, st, r, reg)
			waitDrained(t, st, to)

			carried := r.carried()
			if len(carried) != 2 {
				t.Fatalf("%d streams, want 2", len(carried))
			}
			if !slices.Equal(carried[0], ids(es)) {
				t.Errorf("first stream carried %x, want all %d", carried[0], total)
			}
			unacked := total - tc.acked
			if want := ids(es[tc.acked:]); !slices.Equal(carried[1], want) {
				t.Errorf("second stream carried %d frames, want the %d unacknowledged ones in order:\ngot  %x\nwant %x",
					len(carried[1]), unacked, carried[1], want)
			}
			for _, e := range es {
				if s := st.status(e.MsgID); s != store.StatusDelivered {
					t.Errorf("entry %d settled %q, want delivered", e.Seq, s)
				}
			}
			want := Stats{Sent: uint64(total + unacked), Resent: uint64(unacked), Breaks: 1, UnackedAtBreak: uint64(unacked)}
			if got := o.Stats(); got != want {
				t.Errorf("Stats = %+v, want %+v", got, want)
			}
			wantProm := map[string]float64{
				"parley_outbox_frames_sent_total":      float64(want.Sent),
				"parley_outbox_frames_resent_total":    float64(want.Resent),
				"parley_outbox_stream_breaks_total":    float64(want.Breaks),
				"parley_outbox_unacked_at_break_total": float64(want.UnackedAtBreak),
				"parley_outbox_deposited_total":        0,
			}
			if got := gather(t, reg); !maps.Equal(got, wantProm) {
				t.Errorf("metrics = %v, want %v", got, wantProm)
			}
		})
	}
}

// TestNoBreakNoResend delivers on one stream: nothing is sent twice.
func TestNoBreakNoResend(t *testing.T) {
	to := protocol.ID{2}
	st := newMemStore()
	st.add(to, 50) // more than a window
	r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
	o := serve(t, st, r, nil)
	waitDrained(t, st, to)
	if got, want := o.Stats(), (Stats{Sent: 50}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if n := len(r.carried()); n != 1 {
		t.Errorf("%d streams, want 1", n)
	}
}

// TestMetricsRegisteredTwice builds two outboxes on one registry (a node
// that unlocks again): the second shares the first one's counters.
func TestMetricsRegisteredTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := range 2 {
		to := protocol.ID{byte(3 + i)}
		st := newMemStore()
		st.add(to, 5)
		r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll}}
		o := serve(t, st, r, reg)
		waitDrained(t, st, to)
		if got, want := o.Stats(), (Stats{Sent: 5}); got != want {
			t.Errorf("outbox %d: Stats = %+v, want %+v (its own counts)", i, got, want)
		}
	}
	if got := gather(t, reg)["parley_outbox_frames_sent_total"]; got != 10 {
		t.Errorf("parley_outbox_frames_sent_total = %v, want 10 (both outboxes)", got)
	}
}

// gather returns the registry's counters by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				out[mf.GetName()] += c.GetValue()
			}
		}
	}
	return out
}
