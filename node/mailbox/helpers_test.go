package mailbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/node/mailbox/pb"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/protocoltest"
)

// clock is the tests' clock: the wall clock plus an offset that Advance
// moves (stream deadlines keep working).
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// newKey makes an Ed25519 host key.
func newKey(tb testing.TB) crypto.PrivKey {
	tb.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// newHost starts a libp2p host with key on 127.0.0.1 (TCP, noise).
func newHost(tb testing.TB, key crypto.PrivKey) host.Host {
	tb.Helper()
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		tb.Fatalf("host: %v", err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// fakeDirectory serves real signed records from a map, counting lookups.
type fakeDirectory struct {
	mu      sync.Mutex
	recs    map[protocol.ID]*directory.Record
	lookups atomic.Int64
}

func (d *fakeDirectory) Lookup(_ context.Context, user protocol.ID) (*directory.Record, error) {
	d.lookups.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.recs[user]
	if !ok {
		return nil, fmt.Errorf("%w: %s", directory.ErrNotFound, user)
	}
	return r, nil
}

// user is a Parley user with one or more device hosts.
type user struct {
	key     *protocol.PrivateKey
	id      protocol.ID
	devices []host.Host
}

// publish signs a record of u listing its devices' peer IDs (plus
// extra device keys) and gives it to dir, as the DHT would.
func (d *fakeDirectory) publish(tb testing.TB, u *user, seq uint64, now time.Time, devKeys []crypto.PrivKey) {
	tb.Helper()
	var devs []directory.Device
	for _, k := range devKeys {
		dev, err := directory.SignDevice(k, u.id)
		if err != nil {
			tb.Fatal(err)
		}
		devs = append(devs, dev)
	}
	rec, err := directory.NewRecord(u.key, directory.RecordInput{Name: "user", Devices: devs, Seq: seq, Lifetime: 24 * time.Hour}, now)
	if err != nil {
		tb.Fatalf("NewRecord: %v", err)
	}
	if _, err := directory.VerifyRecord(rec.Marshal(), now); err != nil {
		tb.Fatalf("record does not verify: %v", err)
	}
	d.mu.Lock()
	d.recs[u.id] = rec
	d.mu.Unlock()
}

// world is a relay with its mailbox server, a directory and a clock.
type world struct {
	tb    testing.TB
	clock *clock
	dir   *fakeDirectory
	cfg   Config
	key   crypto.PrivKey
	relay host.Host
	srv   *Server
	reg   *prometheus.Registry
	stop  func()
}

// newWorld starts a relay serving the mailbox with limits lim.
func newWorld(tb testing.TB, lim Limits) *world {
	tb.Helper()
	w := &world{tb: tb, clock: &clock{}, dir: &fakeDirectory{recs: map[protocol.ID]*directory.Record{}}, key: newKey(tb)}
	w.cfg = Config{Dir: tb.TempDir(), Directory: w.dir, Limits: lim, Now: w.clock.Now}
	w.start()
	tb.Cleanup(func() { w.stop() })
	return w
}

func (w *world) start() {
	w.tb.Helper()
	w.relay = newHost(w.tb, w.key)
	w.reg = prometheus.NewRegistry()
	cfg := w.cfg
	cfg.Metrics = w.reg
	srv, err := NewServer(w.relay, cfg)
	if err != nil {
		w.tb.Fatalf("NewServer: %v", err)
	}
	w.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	w.waitFor("the mailbox handler", func() bool {
		for _, p := range w.relay.Mux().Protocols() {
			if p == ID {
				return true
			}
		}
		return false
	})
	w.stop = func() {
		cancel()
		if err := <-done; err != nil {
			w.tb.Errorf("Serve: %v", err)
		}
		if err := srv.Close(); err != nil {
			w.tb.Errorf("Close: %v", err)
		}
		w.relay.Close()
		w.stop = func() {}
	}
}

// restart stops the relay (host, server, database) and starts it again
// on the same data directory and key, at a new port.
func (w *world) restart() {
	w.tb.Helper()
	w.stop()
	w.start()
}

// user makes a user with n device hosts connected to the relay, listed
// in a record the directory serves.
func (w *world) user(name string, n int) *user {
	w.tb.Helper()
	u := &user{key: protocoltest.Key(w.tb, name)}
	u.id = u.key.ID()
	var keys []crypto.PrivKey
	for range n {
		k := newKey(w.tb)
		keys = append(keys, k)
		u.devices = append(u.devices, newHost(w.tb, k))
	}
	w.dir.publish(w.tb, u, 1, w.clock.Now(), keys)
	return u
}

// peer returns a host that is no one's device.
func (w *world) peer() host.Host {
	w.tb.Helper()
	return newHost(w.tb, newKey(w.tb))
}

// client returns a mailbox client on h that knows the relay's address.
func (w *world) client(h host.Host) *Client {
	w.tb.Helper()
	h.Peerstore().AddAddrs(w.relay.ID(), w.relay.Addrs(), time.Hour)
	return NewClient(h)
}

func (w *world) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	w.tb.Cleanup(cancel)
	return ctx
}

// register registers u's first device with the relay.
func (w *world) register(u *user) {
	w.tb.Helper()
	if err := w.client(u.devices[0]).Register(w.ctx(), w.relay.ID(), u.id); err != nil {
		w.tb.Fatalf("Register: %v", err)
	}
}

// deposit deposits env for to from h, failing the test on error.
func (w *world) deposit(h host.Host, to *user, env []byte) {
	w.tb.Helper()
	if err := w.client(h).Deposit(w.ctx(), w.relay.ID(), to.id, env); err != nil {
		w.tb.Fatalf("Deposit: %v", err)
	}
}

// fetchAll fetches u's mail from device i and returns the envelopes.
func (w *world) fetchAll(u *user, i int) ([][]byte, error) {
	w.tb.Helper()
	var got [][]byte
	_, err := w.client(u.devices[i]).Fetch(w.ctx(), w.relay.ID(), u.id, func(_ context.Context, env []byte) error {
		got = append(got, env)
		return nil
	})
	return got, err
}

func (w *world) held() int {
	n, _ := w.srv.Held()
	return n
}

// waitFor waits for cond with a deadline.
func (w *world) waitFor(what string, cond func() bool) {
	w.tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// raw opens a mailbox stream from h to the relay, for hand-made frames.
func (w *world) raw(h host.Host) (network.Stream, *bufio.Reader) {
	w.tb.Helper()
	h.Peerstore().AddAddrs(w.relay.ID(), w.relay.Addrs(), time.Hour)
	st, err := h.NewStream(w.ctx(), w.relay.ID(), ID)
	if err != nil {
		w.tb.Fatalf("NewStream: %v", err)
	}
	w.tb.Cleanup(func() { st.Reset() })
	return st, bufio.NewReader(st)
}

// readResult reads one Result frame.
func readResult(tb testing.TB, r *bufio.Reader) error {
	tb.Helper()
	var f pb.ServerFrame
	if err := readFrame(r, &f, maxServerFrame); err != nil {
		tb.Fatalf("reading result: %v", err)
	}
	if f.GetResult() == nil {
		tb.Fatalf("got %v, want a result", &f)
	}
	return refusal(f.GetResult())
}

// wantRefused checks that err is a refusal with code and its sentinel.
func wantRefused(tb testing.TB, what string, err error, code Code, sentinel error) {
	tb.Helper()
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != code || !errors.Is(err, sentinel) {
		tb.Fatalf("%s: got %v, want refusal %s", what, err, code)
	}
}

func env(i int) []byte { return fmt.Appendf(nil, "opaque envelope %04d", i) }

// metric returns the value of the counter or gauge name (with result
// label result, if not empty) in the relay's registry, 0 if absent.
func (w *world) metric(name, result string) float64 {
	w.tb.Helper()
	mfs, err := w.reg.Gather()
	if err != nil {
		w.tb.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := result == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// put holds envelope for user if lim allows, durably, and returns its ID:
// one deposit through the relay's path (reserve, then a synced write).
func (d *db) put(user protocol.ID, dep peer.ID, envelope []byte, now time.Time, lim Limits) (uint64, error) {
	id, err := d.reserve(user, dep, int64(len(envelope)), lim)
	if err != nil {
		return 0, err
	}
	return id, d.putAll(dep, []heldDeposit{{user: user, id: id, envelope: envelope}}, now, lim)
}
