package mailbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// noLimits lets a benchmark deposit as much as it wants.
var noLimits = Limits{MaxEnvelopes: 1 << 30, MaxBytes: 1 << 50, MaxPerDepositor: 1 << 30, DepositRate: 1e9, DepositBurst: 1 << 30}

// BenchmarkDeposit measures deposits at the relay over real libp2p (one
// stream per deposit, as Client.Deposit does) into real badger with a
// synced write per deposit (badger groups concurrent ones): 1 KiB
// envelopes from 8 depositors to one recipient.
func BenchmarkDeposit(b *testing.B) {
	w := newWorld(b, noLimits)
	bob := w.user("bob-2048", 1)
	w.register(bob)
	const depositors = 8
	var clients []*Client
	for range depositors {
		clients = append(clients, w.client(w.peer()))
	}
	envelope := bytes.Repeat([]byte{0xa5}, 1024)
	var next atomic.Int64
	b.SetParallelism(depositors / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[int(next.Add(1)-1)%depositors]
		for pb.Next() {
			if err := c.Deposit(context.Background(), w.relay.ID(), bob.id, envelope); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deposits/s")
	b.StopTimer()
	if w.held() != b.N {
		b.Fatalf("held %d after %d deposits", w.held(), b.N)
	}
}

// BenchmarkDeposit100 measures what a courier's round of 100 queued
// envelopes (1 KiB) costs one depositor over real libp2p on loopback:
// one stream and one wait per envelope (Deposit in a loop, as before
// DepositAll) against one pipelined stream (DepositAll). It reports the
// time per 100 and the streams opened per 100; each deposit is still a
// synced write at the relay, one after the other, in both.
func BenchmarkDeposit100(b *testing.B) {
	envelopes := make([][]byte, 100)
	for i := range envelopes {
		envelopes[i] = bytes.Repeat([]byte{byte(i)}, 1024)
	}
	run := func(b *testing.B, deposit func(c *Client, w *world, to protocol.ID) error) {
		w := newWorld(b, noLimits)
		bob := w.user("bob-2048", 1)
		w.register(bob)
		h := &countingHost{Host: w.peer()}
		c := w.client(h)
		if err := c.Deposit(context.Background(), w.relay.ID(), bob.id, envelopes[0]); err != nil {
			b.Fatal(err) // connects, and learns the relay's protocols
		}
		h.streams.Store(0)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if err := deposit(c, w, bob.id); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/100")
		b.ReportMetric(float64(h.streams.Load())/float64(b.N), "streams/100")
		b.StopTimer()
		if w.held() != 1+100*b.N {
			b.Fatalf("held %d after %d rounds", w.held(), b.N)
		}
	}
	b.Run("one-per-stream", func(b *testing.B) {
		run(b, func(c *Client, w *world, to protocol.ID) error {
			for _, e := range envelopes {
				if err := c.Deposit(context.Background(), w.relay.ID(), to, e); err != nil {
					return err
				}
			}
			return nil
		})
	})
	b.Run("pipelined", func(b *testing.B) {
		run(b, func(c *Client, w *world, to protocol.ID) error {
			_, err := c.DepositAll(context.Background(), w.relay.ID(), to, envelopes)
			return err
		})
	})
}

// BenchmarkDepositStore is BenchmarkDeposit without the network: 8
// goroutines call the relay's store directly (a synced write each), to
// tell the disk's share from the streams'.
func BenchmarkDepositStore(b *testing.B) {
	w := newWorld(b, noLimits)
	var to protocol.ID
	envelope := bytes.Repeat([]byte{0xa5}, 1024)
	b.SetParallelism(8 / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.srv.db.put(to, "depositor", envelope, w.clock.Now(), w.srv.lim); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deposits/s")
}

// BenchmarkHold100k fills a relay's database with 100,000 envelopes of
// 1 KiB, for 100 recipients or for 100,000 (one each: the most memory the
// limits' counts take), restarts the relay on it and reports the time to
// open it (the counts are rebuilt from the index), the Go heap in use and
// the process's RSS while it holds them.
func BenchmarkHold100k(b *testing.B) {
	for _, recipients := range []int{100, 100_000} {
		b.Run(fmt.Sprintf("recipients=%d", recipients), func(b *testing.B) { benchHold(b, 100_000, recipients, 1024) })
	}
}

// benchHold is BenchmarkHold100k for one number of recipients. It runs
// once, whatever -benchtime (b.Loop): make bench runs the node's
// benchmarks with -benchtime=400x.
func benchHold(b *testing.B, total, recipients, size int) {
	w := newWorld(b, noLimits)
	rss0 := rssMiB(b)
	envelope := bytes.Repeat([]byte{0x5a}, size)
	dep := peer.ID("depositor")
	// Filled in batches: the synced writes of deposits are
	// BenchmarkDeposit's subject, not this one's.
	d := w.srv.db
	wb := d.bdb.NewWriteBatch()
	for i := range total {
		var to protocol.ID
		binary.BigEndian.PutUint32(to[:], uint32(i%recipients))
		id, err := d.reserve(to, dep, int64(size), w.srv.lim)
		if err != nil {
			b.Fatal(err)
		}
		mk, mv, ek, ev := rows(to, dep, envelope, id, w.clock.Now(), w.srv.lim.TTL)
		if err := errors.Join(wb.Set(mk, mv), wb.Set(ek, ev)); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	w.restart()
	reopen := time.Since(start)
	if n, bytes := w.srv.Held(); n != total || bytes != int64(total*size) {
		b.Fatalf("held %d envelopes, %d bytes after restart", n, bytes)
	}
	debug.FreeOSMemory() // what the fill left behind, as a fresh process would not have it
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := rssMiB(b)
	for b.Loop() {
		w.srv.Held()
	}
	b.ReportMetric(float64(reopen.Milliseconds()), "reopen-ms")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(rss-rss0, "rss-growth-MiB")
}

// rssMiB reads the process's resident set size from /proc (Linux).
func rssMiB(tb testing.TB) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	tb.Skip("no VmRSS")
	return 0
}
