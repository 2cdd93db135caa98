package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/store"
)

// BenchmarkMailboxLatency measures, in one run, the time from Alice's
// Send to Bob's EventMessage (stored) over the direct path and over the
// mailbox path: both nodes online, but Bob's node no longer takes
// /parley/msg/1.0.0 streams, so Alice's dial fails and her outbox
// deposits at Bob's relay, which pushes to Bob's subscription. b.N
// messages on each path, one at a time (run with -benchtime=100x).
func BenchmarkMailboxLatency(b *testing.B) {
	relay := startMailRelay(b, b.TempDir(), "")
	a, bn, _ := mailPair(b, relay)
	bID := meOf(b, bn).UserID
	sa, sb := unlockedOf(b, a), unlockedOf(b, bn)
	events, cancel := bn.Subscribe(context.Background())
	b.Cleanup(cancel)
	ctx := context.Background()
	measure := func(what string) []time.Duration {
		var lat []time.Duration
		for i := range b.N {
			start := time.Now()
			if _, err := a.Send(ctx, bID, fmt.Sprintf("%s %d", what, i)); err != nil {
				b.Fatal(err)
			}
			if err := waitMessages(events, 1); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	if _, err := a.Send(ctx, bID, "warm-up"); err != nil {
		b.Fatal(err)
	}
	if err := waitMessages(events, 1); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	direct := measure("direct")

	// Direct dial impossible: Bob takes no more message streams, and the
	// stream Alice holds goes with the connection.
	sb.host.RemoveStreamHandler(msgProtocol)
	for _, d := range sb.friends.friend(meOf(b, a).UserID).devices {
		sb.host.Network().ClosePeer(d)
	}
	mailbox := measure("mailbox")
	b.StopTimer()
	// Bob may store the last one before Alice has settled it.
	waitFor(b, 10*time.Second, "the mailbox-path messages settle", func() bool {
		for _, m := range convHistory(b, a, bID)[1+b.N:] {
			if m.Path != store.PathMailbox {
				return false
			}
		}
		return true
	})
	b.ReportMetric(durationMs(percentile(direct, 50)), "direct-p50-ms")
	b.ReportMetric(durationMs(percentile(direct, 99)), "direct-p99-ms")
	b.ReportMetric(durationMs(percentile(mailbox, 50)), "mailbox-p50-ms")
	b.ReportMetric(durationMs(percentile(mailbox, 99)), "mailbox-p99-ms")
	b.ReportMetric(float64(sa.outbox.Stats().Deposited), "deposited")
}
