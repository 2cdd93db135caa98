package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	lp2p "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/parley-chat/parley/node/mailbox/pb"
)

// countingHost counts the streams a client opens.
type countingHost struct {
	host.Host
	streams atomic.Int64
}

func (h *countingHost) NewStream(ctx context.Context, p peer.ID, pids ...lp2p.ID) (network.Stream, error) {
	h.streams.Add(1)
	return h.Host.NewStream(ctx, p, pids...)
}

// depositor sets w up for deposits: bob registered with the relay, and a
// client on alice's device that counts the streams it opens.
func (w *world) depositor() (bob *user, c *Client, ch *countingHost) {
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	ch = &countingHost{Host: alice.devices[0]}
	return bob, w.client(ch), ch
}

// wantEnded checks that the relay sent nothing more on a stream and
// ended it.
func wantEnded(tb testing.TB, r *bufio.Reader) {
	tb.Helper()
	var f pb.ServerFrame
	if err := readFrame(r, &f, maxServerFrame); err == nil {
		tb.Fatalf("relay answered %v after a refusal, want the stream ended", &f)
	}
}

func envs(from, to int) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, env(i))
	}
	return out
}

// wantMail checks that u's mailbox holds exactly want, in order.
func (w *world) wantMail(u *user, want [][]byte) {
	w.tb.Helper()
	got, err := w.fetchAll(u, 0)
	if err != nil {
		w.tb.Fatalf("fetch: %v", err)
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		w.tb.Fatalf("mailbox holds %q, want %q", got, want)
	}
}

// A pipeline of deposits on one stream in which deposit k is refused
// holds exactly the first k, answers the refusal, and then ends the
// stream: nothing after the refusal is held, although it was written
// (and would now pass the limit that refused k).
func TestPipelineEndsAtRefusal(t *testing.T) {
	cases := []struct {
		name string
		lim  Limits
		code Code
		want error
	}{
		{"rate limit", Limits{DepositRate: 1e-3, DepositBurst: 3}, CodeRateLimited, ErrRateLimited},
		{"depositor quota", Limits{MaxPerDepositor: 3}, CodeSenderQuota, ErrSenderQuota},
		{"full mailbox", Limits{MaxEnvelopes: 3}, CodeFull, ErrFull},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, c.lim)
			alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
			w.register(bob)
			st, r := w.raw(alice.devices[0])
			// The fourth is refused; the fifth is malformed, the sixth
			// would be held by a relay that read on.
			frames := []*pb.ClientFrame{
				depositFrame(bob.id[:], env(0)), depositFrame(bob.id[:], env(1)), depositFrame(bob.id[:], env(2)),
				depositFrame(bob.id[:], env(3)), depositFrame(bob.id[:], nil), depositFrame(bob.id[:], env(5)),
			}
			for _, f := range frames {
				if err := writeFrame(st, f, maxClientFrame); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				if err := readResult(t, r); err != nil {
					t.Fatalf("deposit %d: %v", i, err)
				}
			}
			wantRefused(t, "fourth deposit", readResult(t, r), c.code, c.want)
			wantEnded(t, r)
			if got := w.metric("parley_mailbox_deposits_total", "ok"); got != 3 {
				t.Errorf("deposits_total{result=ok} = %v, want 3", got)
			}
			if got := w.metric("parley_mailbox_deposits_total", c.code.String()); got != 1 {
				t.Errorf("deposits_total{result=%s} = %v, want 1", c.code, got)
			}
			if got := w.metric("parley_mailbox_deposits_total", "malformed"); got != 0 {
				t.Errorf("deposits_total{result=malformed} = %v: a frame after the refusal was read", got)
			}
			w.wantMail(bob, envs(0, 3))
		})
	}
}

// DepositAll of 100 envelopes opens one stream, and the relay holds them
// all, in order.
func TestDepositAllOneStream(t *testing.T) {
	w := newWorld(t, Limits{})
	bob, c, ch := w.depositor()
	all := envs(0, 100)
	held, err := c.DepositAll(w.ctx(), w.relay.ID(), bob.id, all)
	if held != 100 || err != nil {
		t.Fatalf("DepositAll = %d, %v; want 100, nil", held, err)
	}
	if n := ch.streams.Load(); n != 1 {
		t.Errorf("%d streams opened for 100 deposits, want 1", n)
	}
	if got := w.metric("parley_mailbox_deposits_total", "ok"); got != 100 {
		t.Errorf("deposits_total{result=ok} = %v, want 100", got)
	}
	if got := w.metric("parley_mailbox_deposit_streams_total", ""); got != 1 {
		t.Errorf("deposit_streams_total = %v, want 1", got)
	}
	w.wantMail(bob, all)
}

// A relay that speaks only ID (one that may hold deposits after a refused
// one) gets one deposit per stream: DepositAll holds them all, in order.
func TestDepositAllOldRelayOnePerStream(t *testing.T) {
	w := newWorld(t, Limits{})
	w.relay.RemoveStreamHandler(IDPipelined)
	bob, c, ch := w.depositor()
	all := envs(0, 5)
	held, err := c.DepositAll(w.ctx(), w.relay.ID(), bob.id, all)
	if held != 5 || err != nil {
		t.Fatalf("DepositAll = %d, %v; want 5, nil", held, err)
	}
	if n := ch.streams.Load(); n != 5 {
		t.Errorf("%d streams opened for 5 deposits to a relay without %s, want 5", n, IDPipelined)
	}
	w.wantMail(bob, all)
}

// A refusal in the middle of DepositAll: it returns how many the relay
// holds and the typed refusal; the rest, deposited again once the limit
// allows, follows in order.
func TestDepositAllRefusedMidway(t *testing.T) {
	w := newWorld(t, Limits{DepositRate: 1e-3, DepositBurst: 5})
	bob, c, ch := w.depositor()
	all := envs(0, 12)
	held, err := c.DepositAll(w.ctx(), w.relay.ID(), bob.id, all)
	wantRefused(t, "sixth deposit", err, CodeRateLimited, ErrRateLimited)
	var re *RefusedError
	if errors.As(err, &re); re.RetryAfter <= 0 {
		t.Errorf("RetryAfter = %v, want > 0", re.RetryAfter)
	}
	if held != 5 || w.held() != 5 {
		t.Fatalf("DepositAll held %d, relay holds %d; want 5, 5", held, w.held())
	}
	w.clock.Advance(time.Hour) // the bucket refills (to its burst of 5)
	more, err := c.DepositAll(w.ctx(), w.relay.ID(), bob.id, all[held:])
	wantRefused(t, "eleventh deposit", err, CodeRateLimited, ErrRateLimited)
	held += more
	w.clock.Advance(time.Hour)
	if more, err = c.DepositAll(w.ctx(), w.relay.ID(), bob.id, all[held:]); err != nil {
		t.Fatalf("last DepositAll: %d, %v", more, err)
	}
	if held+more != 12 {
		t.Fatalf("held %d in all, want 12", held+more)
	}
	if n := ch.streams.Load(); n != 3 {
		t.Errorf("%d streams opened, want 3 (one per DepositAll)", n)
	}
	w.wantMail(bob, all)
}

// A pipeline refused at once while the client still has far more to
// write than the stream's flow-control window: DepositAll returns the
// refusal at once instead of waiting on a relay that stopped reading.
func TestDepositAllRefusedWhileWriting(t *testing.T) {
	w := newWorld(t, noLimits)
	alice, carol := w.user("alice-2048", 1), w.user("carol-2048", 1) // carol is not registered
	big := make([][]byte, 40)
	for i := range big {
		big[i] = bytes.Repeat([]byte{byte(i)}, MaxEnvelopeSize) // 40 × 80 KiB: past any window
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held, err := w.client(alice.devices[0]).DepositAll(ctx, w.relay.ID(), carol.id, big)
	if ctx.Err() != nil {
		t.Fatal("DepositAll waited for its context after a refusal")
	}
	wantRefused(t, "deposit for an unregistered recipient", err, CodeUnknown, ErrUnknown)
	if held != 0 || w.held() != 0 {
		t.Fatalf("held %d / relay %d, want 0", held, w.held())
	}
}

// A batch past MaxPipelineBytes goes over more than one stream, one after
// the other, still in order; an oversized envelope stops the batch before
// it is sent, with what precedes it held.
func TestDepositAllBounds(t *testing.T) {
	w := newWorld(t, noLimits)
	bob, c, ch := w.depositor()
	var batch [][]byte
	for i := range 60 {
		batch = append(batch, append(bytes.Repeat([]byte{0x5a}, 80_000), fmt.Sprint(i)...))
	}
	held, err := c.DepositAll(w.ctx(), w.relay.ID(), bob.id, batch)
	if held != 60 || err != nil {
		t.Fatalf("DepositAll = %d, %v; want 60, nil", held, err)
	}
	if n := ch.streams.Load(); n != 2 {
		t.Errorf("%d streams for %d bytes, want 2", n, 60*80_000)
	}
	w.wantMail(bob, batch)
	held, err = c.DepositAll(w.ctx(), w.relay.ID(), bob.id, [][]byte{env(0), make([]byte, MaxEnvelopeSize+1), env(2)})
	if held != 1 || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("DepositAll with an oversized envelope = %d, %v; want 1, ErrTooLarge", held, err)
	}
	w.wantMail(bob, [][]byte{env(0)})
}

// Deposits that arrive together are held in one synced write: 40
// deposits written to the stream at once take a few writes, not 40, and
// are all held in order. A malformed frame among them ends the pipeline
// after the deposits before it, which are held.
func TestDepositsArrivedTogetherShareAWrite(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	st, r := w.raw(alice.devices[0])
	var all bytes.Buffer
	for i := range 40 {
		if err := writeFrame(&all, depositFrame(bob.id[:], bytes.Repeat(env(i), 50)), maxClientFrame); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Write(all.Bytes()); err != nil { // one write: they arrive together
		t.Fatal(err)
	}
	for i := range 40 {
		if err := readResult(t, r); err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
	}
	writes := w.metric("parley_mailbox_deposit_writes_total", "")
	// Typically 2 to 4 (the first frames come through the stream's
	// small first buffer); one per deposit would be 40.
	if writes < 1 || writes > 20 {
		t.Errorf("40 deposits that arrived together took %v synced writes, want 1 to 20", writes)
	}
	var want [][]byte
	for i := range 40 {
		want = append(want, bytes.Repeat(env(i), 50))
	}

	// A second stream: two deposits, then a frame that is no deposit, then
	// one more, all at once.
	st2, r2 := w.raw(alice.devices[0])
	all.Reset()
	for _, f := range []*pb.ClientFrame{depositFrame(bob.id[:], env(100)), depositFrame(bob.id[:], env(101)),
		{Kind: &pb.ClientFrame_Fetch{Fetch: &pb.Fetch{}}}, depositFrame(bob.id[:], env(103))} {
		if err := writeFrame(&all, f, maxClientFrame); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st2.Write(all.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := readResult(t, r2); err != nil {
			t.Fatalf("second stream, deposit %d: %v", i, err)
		}
	}
	wantRefused(t, "the fetch frame", readResult(t, r2), CodeMalformed, ErrMalformed)
	wantEnded(t, r2)
	st.Close()
	w.wantMail(bob, append(want, env(100), env(101)))
}
