package mailbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/node/mailbox/pb"
)

func fetchFrame(u *user, subscribe bool) *pb.ClientFrame {
	return &pb.ClientFrame{Kind: &pb.ClientFrame_Fetch{Fetch: &pb.Fetch{Recipient: u.id[:], Subscribe: subscribe}}}
}

func ackFrame(ids ...uint64) *pb.ClientFrame {
	return &pb.ClientFrame{Kind: &pb.ClientFrame_Ack{Ack: &pb.Ack{Ids: ids}}}
}

func depositFrame(recipient, envelope []byte) *pb.ClientFrame {
	return &pb.ClientFrame{Kind: &pb.ClientFrame_Deposit{Deposit: &pb.Deposit{Recipient: recipient, Envelope: envelope}}}
}

// A depositor over its quota for Bob is refused; another depositor still
// deposits, and Bob's other mail is untouched.
func TestDepositorQuota(t *testing.T) {
	w := newWorld(t, Limits{MaxPerDepositor: 5})
	alice, bob, carol := w.user("alice-2048", 1), w.user("bob-2048", 1), w.user("carol-2048", 1)
	w.register(bob)
	w.register(carol)
	for i := range 5 {
		w.deposit(alice.devices[0], bob, env(i))
	}
	err := w.client(alice.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, env(5))
	wantRefused(t, "sixth deposit", err, CodeSenderQuota, ErrSenderQuota)
	w.deposit(carol.devices[0], bob, env(100))   // another sender, same recipient
	w.deposit(alice.devices[0], carol, env(200)) // same sender, another recipient
	if got := w.metric("parley_mailbox_deposits_total", "sender-quota"); got != 1 {
		t.Errorf("deposits_total{result=sender-quota} = %v, want 1", got)
	}
	// Once Bob fetches, Alice's quota is free again.
	got, err := w.fetchAll(bob, 0)
	if err != nil || len(got) != 6 {
		t.Fatalf("fetch: %d, %v", len(got), err)
	}
	w.waitFor("acks", func() bool { return w.held() == 1 })
	w.deposit(alice.devices[0], bob, env(6))
}

func TestRecipientEnvelopeLimit(t *testing.T) {
	w := newWorld(t, Limits{MaxEnvelopes: 4})
	alice, bob, carol := w.user("alice-2048", 1), w.user("bob-2048", 1), w.user("carol-2048", 1)
	w.register(bob)
	w.register(carol)
	for i := range 4 {
		w.deposit(alice.devices[0], bob, env(i))
	}
	err := w.client(carol.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, env(4))
	wantRefused(t, "fifth envelope for Bob", err, CodeFull, ErrFull)
	w.deposit(alice.devices[0], carol, env(5)) // Carol's mailbox is not Bob's
	if w.held() != 5 {
		t.Fatalf("held %d, want 5", w.held())
	}
}

func TestRecipientByteLimit(t *testing.T) {
	w := newWorld(t, Limits{MaxBytes: 10_000})
	alice, bob, carol := w.user("alice-2048", 1), w.user("bob-2048", 1), w.user("carol-2048", 1)
	w.register(bob)
	big := bytes.Repeat([]byte{7}, 4_000)
	w.deposit(alice.devices[0], bob, big)
	w.deposit(alice.devices[0], bob, big)
	err := w.client(carol.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, big)
	wantRefused(t, "over the byte limit", err, CodeFull, ErrFull)
	w.deposit(carol.devices[0], bob, env(0)) // a small one still fits
	if _, b := w.srv.Held(); b != 8_000+int64(len(env(0))) {
		t.Fatalf("bytes held %d", b)
	}
	if got := w.metric("parley_mailbox_bytes_held", ""); got != float64(8_000+len(env(0))) {
		t.Errorf("bytes_held = %v", got)
	}
}

func TestTTLExpiry(t *testing.T) {
	w := newWorld(t, Limits{TTL: time.Hour})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	w.deposit(alice.devices[0], bob, env(0))
	w.clock.Advance(30 * time.Minute)
	w.deposit(alice.devices[0], bob, env(1))
	w.srv.Sweep()
	if w.held() != 2 {
		t.Fatalf("held %d before the TTL, want 2", w.held())
	}
	w.clock.Advance(31 * time.Minute) // the first is 61 min old, the second 31
	w.srv.Sweep()
	if w.held() != 1 {
		t.Fatalf("held %d after the first TTL, want 1", w.held())
	}
	if got := w.metric("parley_mailbox_expired_total", ""); got != 1 {
		t.Errorf("expired_total = %v, want 1", got)
	}
	// Expiry survives a restart (it is in the database, not in memory).
	w.restart()
	w.clock.Advance(30 * time.Minute)
	w.srv.Sweep()
	if w.held() != 0 {
		t.Fatalf("held %d after both TTLs, want 0", w.held())
	}
	if got, err := w.fetchAll(bob, 0); err != nil || len(got) != 0 {
		t.Fatalf("fetch after expiry: %d, %v", len(got), err)
	}
}

func TestDepositRateLimit(t *testing.T) {
	w := newWorld(t, Limits{DepositRate: 1, DepositBurst: 3})
	alice, bob, carol := w.user("alice-2048", 1), w.user("bob-2048", 1), w.user("carol-2048", 1)
	w.register(bob)
	for i := range 3 {
		w.deposit(alice.devices[0], bob, env(i))
	}
	err := w.client(alice.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, env(3))
	wantRefused(t, "fourth deposit at once", err, CodeRateLimited, ErrRateLimited)
	var re *RefusedError
	if errors.As(err, &re); re.RetryAfter <= 0 || re.RetryAfter > time.Second || !re.Temporary() {
		t.Fatalf("RetryAfter = %v, Temporary %v; want (0, 1s], true", re.RetryAfter, re.Temporary())
	}
	w.deposit(carol.devices[0], bob, env(10)) // another depositor has its own bucket
	// Registers and fetches draw on the same bucket (each may cost a lookup).
	wantRefused(t, "register by a peer out of tokens", w.client(alice.devices[0]).Register(w.ctx(), w.relay.ID(), alice.id),
		CodeRateLimited, ErrRateLimited)
	w.clock.Advance(time.Second)
	w.deposit(alice.devices[0], bob, env(3))
	if got := w.metric("parley_mailbox_deposits_total", "rate-limited"); got != 1 {
		t.Errorf("deposits_total{result=rate-limited} = %v, want 1", got)
	}
}

// Frames that are too large or do not parse get a typed refusal and
// store nothing.
func TestMalformedAndOversizedFrames(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	cases := []struct {
		name  string
		write func(io.Writer) error
		code  Code
		want  error
	}{
		{"length over the frame cap", func(wr io.Writer) error {
			_, err := wr.Write(binary.AppendUvarint(nil, maxClientFrame+1))
			return err
		}, CodeTooLarge, ErrTooLarge},
		{"length prefix overflowing 64 bits", func(wr io.Writer) error {
			_, err := wr.Write(bytes.Repeat([]byte{0xff}, 11))
			return err
		}, CodeMalformed, ErrMalformed},
		{"frame that is not protobuf", func(wr io.Writer) error {
			_, err := wr.Write([]byte{3, 0xff, 0xff, 0xff})
			return err
		}, CodeMalformed, ErrMalformed},
		{"empty frame", func(wr io.Writer) error {
			_, err := wr.Write([]byte{0})
			return err
		}, CodeMalformed, ErrMalformed},
		{"ack first", func(wr io.Writer) error { return writeFrame(wr, ackFrame(1), maxClientFrame) }, CodeMalformed, ErrMalformed},
		{"short recipient", func(wr io.Writer) error {
			return writeFrame(wr, depositFrame(bob.id[:31], env(0)), maxClientFrame)
		}, CodeMalformed, ErrMalformed},
		{"empty envelope", func(wr io.Writer) error {
			return writeFrame(wr, depositFrame(bob.id[:], nil), maxClientFrame)
		}, CodeMalformed, ErrMalformed},
		{"envelope over MaxEnvelopeSize", func(wr io.Writer) error {
			return writeFrame(wr, depositFrame(bob.id[:], make([]byte, MaxEnvelopeSize+1)), maxClientFrame)
		}, CodeTooLarge, ErrTooLarge},
		{"fetch with a bad recipient", func(wr io.Writer) error {
			return writeFrame(wr, &pb.ClientFrame{Kind: &pb.ClientFrame_Fetch{Fetch: &pb.Fetch{Recipient: []byte("bob")}}}, maxClientFrame)
		}, CodeMalformed, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, r := w.raw(alice.devices[0])
			if err := c.write(st); err != nil {
				t.Fatal(err)
			}
			wantRefused(t, c.name, readResult(t, r), c.code, c.want)
		})
	}
	if w.held() != 0 {
		t.Fatalf("held %d after bad frames", w.held())
	}
	// A refused deposit ends its pipeline: the next is not read, nor held.
	st, r := w.raw(alice.devices[0])
	for _, f := range []*pb.ClientFrame{depositFrame(bob.id[:], nil), depositFrame(bob.id[:], env(1))} {
		if err := writeFrame(st, f, maxClientFrame); err != nil {
			t.Fatal(err)
		}
	}
	wantRefused(t, "first of pipeline", readResult(t, r), CodeMalformed, ErrMalformed)
	wantEnded(t, r)
	w.deposit(alice.devices[0], bob, env(1)) // a new stream deposits it
	// The client refuses an oversized envelope before sending it.
	err := w.client(alice.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, make([]byte, MaxEnvelopeSize+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("client oversized deposit: %v", err)
	}
	if w.held() != 1 {
		t.Fatalf("held %d, want 1", w.held())
	}
}

// A fetch stream that sends something other than acks, or an ack of too
// many IDs, is cut off and deletes nothing.
func TestBadAcksCutTheFetch(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	w.deposit(alice.devices[0], bob, env(0))
	for _, bad := range []*pb.ClientFrame{depositFrame(bob.id[:], env(1)), ackFrame(make([]uint64, maxAckIDs+1)...)} {
		st, r := w.raw(bob.devices[0])
		if err := writeFrame(st, fetchFrame(bob, false), maxClientFrame); err != nil {
			t.Fatal(err)
		}
		if err := readResult(t, r); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if err := writeFrame(st, bad, maxClientFrame); err != nil {
			t.Fatal(err)
		}
		// The relay sends the item and caught-up, then resets the stream.
		for {
			var f pb.ServerFrame
			if err := readFrame(r, &f, maxServerFrame); err != nil {
				if errors.Is(err, io.EOF) {
					t.Fatal("stream closed cleanly; want a reset")
				}
				break
			}
		}
		if w.held() != 1 {
			t.Fatalf("held %d, want 1", w.held())
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	l, err := Limits{}.withDefaults()
	if err != nil || l != DefaultLimits() {
		t.Fatalf("zero limits → %+v, %v; want the defaults", l, err)
	}
	if l.MaxEnvelopes != 10_000 || l.MaxBytes != 50<<20 || l.MaxPerDepositor != 1_000 || l.TTL != 14*24*time.Hour {
		t.Fatalf("defaults %+v", l)
	}
	if _, err := (Limits{TTL: -time.Second}).withDefaults(); err == nil {
		t.Fatal("negative TTL accepted")
	}
}

// Depositors racing for the last places of a mailbox never overshoot its
// limit: exactly MaxEnvelopes are held, the rest refused as full.
func TestConcurrentDepositsRespectLimit(t *testing.T) {
	const limit, depositors, each = 30, 6, 10
	w := newWorld(t, Limits{MaxEnvelopes: limit})
	bob := w.user("bob-2048", 1)
	w.register(bob)
	var clients []*Client
	for range depositors {
		clients = append(clients, w.client(w.peer()))
	}
	var mu sync.Mutex
	ok, full := 0, 0
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for i := range each {
				err := c.Deposit(w.ctx(), w.relay.ID(), bob.id, env(i))
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrFull):
					full++
				default:
					t.Errorf("deposit: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != limit || full != depositors*each-limit || w.held() != limit {
		t.Fatalf("%d accepted, %d refused as full, %d held; want %d, %d, %d", ok, full, w.held(), limit, depositors*each-limit, limit)
	}
}

// A registration lapses after Limits.Registration without a register or
// fetch: deposits for the user are refused again.
func TestRegistrationLapses(t *testing.T) {
	w := newWorld(t, Limits{Registration: 2 * time.Hour})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	w.clock.Advance(time.Hour)
	w.deposit(alice.devices[0], bob, env(0))
	w.clock.Advance(time.Hour)
	w.srv.Sweep()
	err := w.client(alice.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, env(1))
	wantRefused(t, "deposit after the registration lapsed", err, CodeUnknown, ErrUnknown)
	w.restart() // the lapse is stored, not only remembered
	err = w.client(alice.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, env(1))
	wantRefused(t, "deposit after a restart", err, CodeUnknown, ErrUnknown)
	// Bob's held mail is still his to fetch, and fetching registers him again.
	if got, err := w.fetchAll(bob, 0); err != nil || len(got) != 1 {
		t.Fatalf("fetch: %d, %v", len(got), err)
	}
	w.deposit(alice.devices[0], bob, env(2))
}
