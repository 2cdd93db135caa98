package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	pp "github.com/parley-chat/parley/protocol"
)

// benchPair starts two befriended nodes with RSA-3072 fixture keys (the
// default size) on loopback TCP, and a subscription to B's events. With
// sessions, the first message has started the session already (it is not
// counted), so what is measured are session messages; without, every
// message is a single RSA envelope.
func benchPair(b *testing.B, sessions bool) (a, bn *Node, aID, bID pp.ID, events <-chan Event) {
	return benchPairWith(b, sessions, false)
}

// benchPairWith is benchPair with both nodes in --strict-rsa-signatures
// mode when strict is set.
func benchPairWith(b *testing.B, sessions, strict bool) (a, bn *Node, aID, bID pp.ID, events <-chan Event) {
	b.Helper()
	ca, cb := testConfig(b, "alice-3072"), testConfig(b, "bob-3072")
	ca.DisableSessions, cb.DisableSessions = !sessions, !sessions
	ca.StrictRSASignatures, cb.StrictRSASignatures = strict, strict
	a, bn = startNode(b, ca, "Alice"), startNode(b, cb, "Bob")
	befriend(b, a, bn)
	ma, _ := a.Me(context.Background())
	mb, _ := bn.Me(context.Background())
	ev, cancel := bn.Subscribe(context.Background())
	b.Cleanup(cancel)
	if _, err := a.Send(context.Background(), mb.UserID, "warm-up"); err != nil {
		b.Fatal(err)
	}
	if err := waitMessages(ev, 1); err != nil {
		b.Fatal(err)
	}
	return a, bn, ma.UserID, mb.UserID, ev
}

// modes runs f as two sub-benchmarks in one run: "sessions" (the default:
// session messages, Ed25519 and AES-GCM) and "rsa" (every message a
// single RSA envelope, as first contact still is).
func modes(b *testing.B, f func(b *testing.B, sessions bool)) {
	b.Run("sessions", func(b *testing.B) { f(b, true) })
	b.Run("rsa", func(b *testing.B) { f(b, false) })
}

// openCost measures, in this run, what the receiver's cryptography costs
// per message: Opener.Open (RSA-PSS verify, RSA-OAEP decrypt, X25519,
// AES-GCM) of an envelope like the ones the benchmark sends, in wall
// time.
func openCost(b *testing.B, sender, receiver *Node, size int) time.Duration {
	return measureCrypto(b, sender, receiver, size).open
}

// cryptoCosts is what one message's cryptography costs, each side timed
// alone, one at a time: in wall time (seal, open: the mean), and in this
// process's CPU time (sealCPU, openCPU: the median, which other work on
// a shared machine, and this process's own background goroutines,
// inflate least).
type cryptoCosts struct {
	seal, open       time.Duration
	sealCPU, openCPU time.Duration
}

// measureCrypto measures, in this run, what the sender's and the
// receiver's cryptography cost per message: pp.Seal (RSA-OAEP encrypt,
// RSA-PSS sign, X25519, AES-GCM) and Opener.Open of an envelope like the
// ones the benchmark sends.
func measureCrypto(b *testing.B, sender, receiver *Node, size int) cryptoCosts {
	b.Helper()
	seal, op := envelopeCrypto(sender, receiver, size)
	const rounds = 30
	var c cryptoCosts
	sealCPU, openCPU := make([]time.Duration, rounds), make([]time.Duration, rounds)
	for i := range rounds {
		start, cpu := time.Now(), processCPU(b)
		raw, err := seal()
		c.seal += time.Since(start)
		sealCPU[i] = processCPU(b) - cpu
		if err != nil {
			b.Fatal(err)
		}
		start, cpu = time.Now(), processCPU(b)
		_, err = op.Open(raw)
		c.open += time.Since(start)
		openCPU[i] = processCPU(b) - cpu
		if err != nil {
			b.Fatal(err)
		}
	}
	c.seal, c.open = c.seal/rounds, c.open/rounds
	c.sealCPU, c.openCPU = percentile(sealCPU, 50), percentile(openCPU, 50)
	return c
}

// envelopeCrypto is the cryptography of an RSA envelope of size bytes
// from sender to receiver: seal makes one (pp.Seal, encoded), op opens
// one.
func envelopeCrypto(sender, receiver *Node, size int) (seal func() ([]byte, error), op pp.Opener) {
	ss, _ := sender.running()
	rs, _ := receiver.running()
	fe := ss.friends.friend(rs.me)
	body := make([]byte, size)
	key := ss.keys.identity().Public()
	op = pp.Opener{UserID: rs.me, Key: rs.keys.identity(), Prekey: rs.keys.prekeyByID,
		SenderKey: func(pp.ID, pp.ID) (*pp.PublicKey, error) { return key, nil }}
	return func() ([]byte, error) {
		env, err := pp.Seal(ss.keys.sender(), fe.rcpt, pp.KindText, body, time.Now())
		if err != nil {
			return nil, err
		}
		return env.Marshal(), nil
	}, op
}

// waitMessages reads n EventMessage events.
func waitMessages(events <-chan Event, n int) error {
	timeout := time.NewTimer(5 * time.Minute)
	defer timeout.Stop()
	for got := 0; got < n; {
		select {
		case e, ok := <-events:
			if !ok {
				return fmt.Errorf("event stream closed after %d of %d messages", got, n)
			}
			if e.Type == EventOverflow {
				return fmt.Errorf("event subscriber overflowed after %d of %d messages", got, n)
			}
			if e.Type == EventMessage {
				got++
			}
		case <-timeout.C:
			return fmt.Errorf("only %d of %d messages arrived", got, n)
		}
	}
	return nil
}

// BenchmarkThroughput sends b.N messages A→B through Node.Send, from
// senders goroutines as concurrent API requests would, and waits until B
// has stored each. It reports messages/s and, for rsa, two crypto bounds
// measured in this run (target, issue 11: ratio ≥ 0.9):
//
//   - crypto-bound-msgs/s and ratio: 1/open, Opener.Open of an envelope
//     timed alone in wall time (the first definition, kept to compare).
//   - cpu-bound-msgs/s and cpu-ratio: P/(seal + open), P = GOMAXPROCS,
//     seal and open in CPU time. Both nodes run in this process, so each
//     message costs the processors one Seal (an RSA-PSS signature, a
//     private-key operation like the receiver's decryption) and one Open,
//     and P processors can do at most P such pairs at once. 1/open equals
//     this only when seal ≈ open and the P processors are free.
//   - par-bound-msgs/s and par-ratio: the rate at which P goroutines seal
//     and open as many envelopes with nothing else running, just before
//     and just after the run (cryptoBracket): what the processors really
//     do at once, which P/(seal + open) overstates where they share a
//     core (target, issue 11: par-ratio ≥ 0.9); par-drift and
//     par-best-ratio as cryptoBracket.report says.
//
// cpu-cores and others-cores say how many processors this process and
// everything else on the machine used meanwhile (cpu-ratio ≈ crypto-share
// × cpu-cores / P: a shortfall with others-cores well above 0 is the
// machine's, not the pipeline's); crypto-share is the part of the
// process's CPU time per message (cpu-ms/msg) that is Seal and Open.
func BenchmarkThroughput(b *testing.B) { modes(b, benchThroughput) }

func benchThroughput(b *testing.B, sessions bool) {
	const senders = 8 // concurrent API requests, as the issue measures them
	a, bn, _, bID, events := benchPair(b, sessions)
	cc := measureCrypto(b, a, bn, 64)
	open := cc.open
	rs, _ := bn.running()
	rs.msgs.stats.openNanos.Store(0)
	rs.msgs.stats.opened.Store(0)
	var par *cryptoBracket
	if !sessions {
		par = bracketCrypto(b, b.N, envelopeWork(b, a, bn, 64, true))
	}
	b.ResetTimer()
	elapsed, use := sendBurst(b, a, bID, events, senders)
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "msgs/s")
	reportCPU(b, use, b.N)
	// The same number of frames of a session message's size over a raw
	// stream: the transport's own ceiling on this machine.
	b.ReportMetric(rawRate(b, 512, max(b.N, 1000)), "raw-msgs/s")
	var cpuBound float64
	if !sessions {
		bound := float64(time.Second) / float64(open)
		b.ReportMetric(bound, "crypto-bound-msgs/s")
		b.ReportMetric(rate/bound, "ratio")
		b.ReportMetric(durationMs(cc.sealCPU), "seal-cpu-ms")
		b.ReportMetric(durationMs(cc.openCPU), "open-cpu-ms")
		cpuBound = reportCryptoCPU(b, use, b.N, rate, cc.sealCPU+cc.openCPU)
		par.report(b, rate)
	}
	// The receiver's own open times during the run (envelopes, or
	// session messages), when the sender's work shares the cores: how
	// close the pipeline runs to the receiver's cryptography.
	inRun := time.Duration(rs.msgs.stats.openNanos.Load() / max(rs.msgs.stats.opened.Load(), 1))
	b.ReportMetric(float64(inRun.Nanoseconds())/1e6, "open-in-run-ms")
	b.ReportMetric(rate*inRun.Seconds(), "ratio-in-run")
	recordThroughput(b, sessions, senders, a, bn, rate, open, inRun, cpuBound)
}

// sendBurst sends b.N messages from a to bID through Node.Send, from
// senders goroutines, and waits until events (B's) has them all. It
// returns the time that took and how the processors were used meanwhile.
func sendBurst(b *testing.B, a *Node, bID pp.ID, events <-chan Event, senders int) (time.Duration, cpuUse) {
	ctx := context.Background()
	start := time.Now()
	cpu := startCPU(b)
	arrived := make(chan error, 1)
	go func() { arrived <- waitMessages(events, b.N) }()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for range senders {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if _, err := a.Send(ctx, bID, fmt.Sprintf("benchmark message %08d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if err := <-arrived; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	return elapsed, cpu.stop(b)
}

// rawEcho is a raw libp2p stream service that echoes each length-
// delimited frame: the floor any protocol on this transport pays.
const rawEcho = protocol.ID("/parley-bench/echo/1.0.0")

func rawHosts(b *testing.B) (client, server host.Host) {
	b.Helper()
	mk := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		return h
	}
	client, server = mk(), mk()
	server.SetStreamHandler(rawEcho, func(s network.Stream) {
		defer s.Close()
		br := bufio.NewReader(s)
		buf := make([]byte, 64<<10)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				if _, err := s.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	if err := client.Connect(context.Background(), peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		b.Fatal(err)
	}
	return client, server
}

// rawRate measures how many frames of size bytes a raw libp2p stream
// carries a second between two other hosts on loopback TCP, each echoed
// back as its acknowledgement, with up to window in flight as the courier
// keeps them.
func rawRate(b *testing.B, size, n int) float64 {
	b.Helper()
	client, server := rawHosts(b)
	s, err := client.NewStream(context.Background(), server.ID(), rawEcho)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := make([]byte, size)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		back := make([]byte, size)
		for range n {
			if _, err := io.ReadFull(s, back); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range n {
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// BenchmarkLatency sends messages A→B at 100 msg/s and measures the time
// from Send to B's EventMessage, both sides durable (A's outbox write
// before the wire, B's store before its ack). It prints p50 and p99 next
// to their floors from the same run: a raw libp2p stream round trip of
// the same size, a bare fdatasync (fdatasync-ms; a message pays two, one
// per side), a synced badger write, and the crypto time (Seal on A plus
// Open on B, averaged over the same messages). Targets (issue 11): p50 ≤
// 0.5 ms, p99 ≤ 2 ms.
func BenchmarkLatency(b *testing.B) { modes(b, benchLatency) }

func benchLatency(b *testing.B, sessions bool) {
	a, bn, _, bID, events := benchPair(b, sessions)
	as0, _ := a.running()
	rs0, _ := bn.running()
	for _, st := range []*stats{&as0.msgs.stats, &rs0.msgs.stats} {
		st.sealNanos.Store(0)
		st.sealed.Store(0)
		st.openNanos.Store(0)
		st.opened.Store(0)
	}
	const size = 1500 // about what an envelope of a short message is on the wire
	rawLat := rawRoundTrips(b, size, 200)
	raw := percentile(rawLat, 50)
	var open, seal time.Duration
	ctx := context.Background()
	var lat []time.Duration
	var mu sync.Mutex
	// One message every 10 ms (100 msg/s), each timed from Send to B's
	// event; a message slower than 10 ms delays the next one. Half a pace
	// after each, one journal-like synced write (pacedSync) samples what a
	// sync costs at this pace: after an idle gap it costs about twice a
	// back-to-back one on these machines (fdatasync-ms).
	const every = 10 * time.Millisecond
	disk := newPacedSync(b, size)
	var syncs []time.Duration
	b.ResetTimer()
	next := time.Now()
	for i := range b.N {
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait) // pacing the sends, not synchronisation
		}
		next = next.Add(every)
		start := time.Now()
		if _, err := a.Send(ctx, bID, fmt.Sprintf("latency %d", i)); err != nil {
			b.Fatal(err)
		}
		if err := waitMessages(events, 1); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		lat = append(lat, time.Since(start))
		mu.Unlock()
		if wait := time.Until(start.Add(every / 2)); wait > 0 {
			time.Sleep(wait) // pacing the floor's sample, as the sends
		}
		syncs = append(syncs, disk.sample(b))
	}
	b.StopTimer()
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	// The crypto time is what Seal on A and Open on B took during this
	// run, as the nodes measured it: the machine's speed varies too much
	// between separate phases to compare against those.
	as, _ := a.running()
	rs, _ := bn.running()
	seal = time.Duration(as.msgs.stats.sealNanos.Load() / max(as.msgs.stats.sealed.Load(), 1))
	open = time.Duration(rs.msgs.stats.openNanos.Load() / max(rs.msgs.stats.opened.Load(), 1))
	budget := raw + open + seal + time.Millisecond
	paced := percentile(syncs, 50)
	// The floor: the stream's round trip (as a stand-in for one way and
	// the ack), the crypto, and the two synced writes in sequence (A's
	// before the message leaves, B's before its event), at this pace.
	floor := raw + open + seal + 2*paced
	// Each message waits for two synced writes by design: the sender's
	// outbox before Send returns, the receiver's store before it acks.
	b.ReportMetric(float64(syncCost(b, bn).Microseconds())/1000, "sync-write-ms")
	b.ReportMetric(durationMs(fdatasyncCost(b)), "fdatasync-ms")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(raw.Microseconds())/1000, "raw-rtt-ms")
	b.ReportMetric(float64((open+seal).Nanoseconds())/1e6, "crypto-ms")
	b.ReportMetric(float64(p50)/float64(budget), "p50/budget")
	b.ReportMetric(float64(p50)/float64(raw), "p50/raw-rtt")
	b.ReportMetric(durationMs(paced), "fdatasync-paced-ms")
	b.ReportMetric(float64(p50)/float64(floor), "p50/io-floor")
	recordLatency(b, sessions, size, lat, rawLat, open+seal, paced)
}

// syncCost measures one small synced store write (a seen-ID mark) on n,
// in this run: the durability each message pays twice on its way.
func syncCost(b *testing.B, n *Node) time.Duration {
	b.Helper()
	s, _ := n.running()
	const rounds = 30
	start := time.Now()
	for i := range rounds {
		var id pp.MsgID
		id[0], id[1], id[15] = 0xbe, byte(i), 0x01
		if err := s.st.MarkSeen(context.Background(), id); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / rounds
}

// BenchmarkReceive measures the receive path alone: b.N envelopes, sealed
// before the timer starts, pushed on one stream by a raw libp2p client
// (as A's second device) until B has acknowledged each, that is stored
// it. It reports messages/s and two crypto bounds measured in this run:
//
//   - crypto-bound-msgs/s and ratio: 1/Open timed alone in wall time (the
//     first definition, kept to compare); above 1 when B opens envelopes
//     on several processors, as it does.
//   - cpu-bound-msgs/s and cpu-ratio: P/open, P = GOMAXPROCS and open in
//     CPU time: B opens a stream's envelopes on P workers at once, and
//     nothing else here needs RSA.
//   - par-bound-msgs/s and par-ratio: the rate at which P goroutines
//     open as many envelopes with nothing else running, just before and
//     just after the run (cryptoBracket): the rate B's cryptography
//     allows on this machine, whose processors do not add up to P times
//     one (target, issue 11: par-ratio ≥ 0.9).
//
// cpu-cores, others-cores, cpu-ms/msg and crypto-share are as in
// BenchmarkThroughput; workers-busy is the time B's workers spent in Open
// over P × the run's time.
func BenchmarkReceive(b *testing.B) {
	a, bn, _, bID, _ := benchPair(b, false)
	cc := measureCrypto(b, a, bn, 64)
	open := cc.open
	atk := newAttacker(b, bn)
	aKey := fixtureKey(b, "alice-3072")
	bCard, err := pp.ParseCardURI(meOf(b, bn).Invite)
	if err != nil {
		b.Fatal(err)
	}
	if bCard.UserID != bID {
		b.Fatal("B's card is not B's")
	}
	toB := bCard.Recipient(time.Now())
	frames := make([][]byte, b.N)
	for i := range frames {
		env := atk.forge(b, aKey, toB, pp.KindText, fmt.Sprintf("receive %08d", i), time.Now())
		var buf bytes.Buffer
		if err := pp.WriteDelivery(&buf, &pp.Delivery{Envelope: env.Marshal()}); err != nil {
			b.Fatal(err)
		}
		frames[i] = buf.Bytes()
	}
	hs := atk.open(b)
	rs, _ := bn.running()
	par := bracketCrypto(b, b.N, envelopeWork(b, a, bn, 64, false))
	rs.msgs.stats.openNanos.Store(0)
	rs.msgs.stats.opened.Store(0)
	b.ResetTimer()
	start := time.Now()
	cpu := startCPU(b)
	go func() {
		for _, f := range frames {
			if _, err := hs.s.Write(f); err != nil {
				return
			}
		}
	}()
	for range b.N {
		hs.s.SetReadDeadline(time.Now().Add(time.Minute))
		ack, err := pp.ReadAck(hs.br)
		if err != nil {
			b.Fatal(err)
		}
		if ack.Code != pp.AckOK {
			b.Fatalf("ack %s", ack.Code)
		}
	}
	elapsed := time.Since(start)
	use := cpu.stop(b)
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	bound := float64(time.Second) / float64(open)
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(bound, "crypto-bound-msgs/s")
	b.ReportMetric(rate/bound, "ratio")
	b.ReportMetric(durationMs(cc.openCPU), "open-cpu-ms")
	reportCPU(b, use, b.N)
	cpuBound := reportCryptoCPU(b, use, b.N, rate, cc.openCPU)
	par.report(b, rate)
	b.ReportMetric(float64(rs.msgs.stats.openNanos.Load())/float64(elapsed)/float64(runtime.GOMAXPROCS(0)), "workers-busy")
	recordReceive(b, rate, bound, cpuBound)
}
