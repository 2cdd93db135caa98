package mailbox

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parley-chat/parley/node/mailbox/pb"
)

func TestDepositFetchAckGone(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	for i := range 5 {
		w.deposit(alice.devices[0], bob, env(i))
	}
	if w.held() != 5 {
		t.Fatalf("held %d, want 5", w.held())
	}
	got, err := w.fetchAll(bob, 0)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(got) != 5 {
		t.Fatalf("fetched %d, want 5", len(got))
	}
	for i, e := range got {
		if !bytes.Equal(e, env(i)) {
			t.Errorf("envelope %d = %q, want %q (deposit order)", i, e, env(i))
		}
	}
	w.waitFor("acks to delete everything", func() bool { return w.held() == 0 })
	if again, err := w.fetchAll(bob, 0); err != nil || len(again) != 0 {
		t.Fatalf("second fetch: %d envelopes, %v; want none", len(again), err)
	}
	if n, b := w.srv.Held(); n != 0 || b != 0 {
		t.Fatalf("held %d envelopes, %d bytes after acks", n, b)
	}
	if got := w.metric("parley_mailbox_deposits_total", "ok"); got != 5 {
		t.Errorf("deposits_total{result=ok} = %v, want 5", got)
	}
	if got := w.metric("parley_mailbox_acked_total", ""); got != 5 {
		t.Errorf("acked_total = %v, want 5", got)
	}
}

// An envelope whose handler fails is not acknowledged: the relay keeps it
// (and those after it) for the next fetch.
func TestUnackedEnvelopeKept(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	for i := range 3 {
		w.deposit(alice.devices[0], bob, env(i))
	}
	diskFull := errors.New("disk full")
	var got [][]byte
	n, err := w.client(bob.devices[0]).Fetch(w.ctx(), w.relay.ID(), bob.id, func(_ context.Context, e []byte) error {
		if len(got) == 1 {
			return diskFull
		}
		got = append(got, e)
		return nil
	})
	if !errors.Is(err, diskFull) || n != 1 {
		t.Fatalf("Fetch = %d, %v; want 1, the handler's error", n, err)
	}
	w.waitFor("the first ack", func() bool { return w.held() == 2 })
	rest, err := w.fetchAll(bob, 0)
	if err != nil || len(rest) != 2 || !bytes.Equal(rest[0], env(1)) || !bytes.Equal(rest[1], env(2)) {
		t.Fatalf("refetch = %q, %v; want envelopes 1 and 2", rest, err)
	}
}

func TestPushToSubscriber(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	w.deposit(alice.devices[0], bob, env(0)) // held before the subscription

	got := make(chan []byte, 10)
	caught := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.client(bob.devices[0]).Subscribe(ctx, w.relay.ID(), bob.id, func(_ context.Context, e []byte) error {
			got <- e
			return nil
		}, func() { close(caught) })
	}()
	recv := func(want []byte) time.Duration {
		t.Helper()
		start := time.Now()
		select {
		case e := <-got:
			if !bytes.Equal(e, want) {
				t.Fatalf("got %q, want %q", e, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no push of %q within 10s", want)
		}
		return time.Since(start)
	}
	recv(env(0))
	select {
	case <-caught:
	case <-time.After(10 * time.Second):
		t.Fatal("not caught up within 10s")
	}
	for i := 1; i <= 3; i++ {
		start := time.Now()
		w.deposit(alice.devices[0], bob, env(i))
		recv(env(i))
		t.Logf("deposit %d → pushed to Bob in %v", i, time.Since(start))
	}
	w.waitFor("acks of the pushed envelopes", func() bool { return w.held() == 0 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe = %v, want context.Canceled", err)
	}
}

func TestRelayRestartLosesNothing(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	w.register(bob)
	const n = 50
	for i := range n {
		w.deposit(alice.devices[0], bob, env(i))
	}
	w.restart()
	if w.held() != n {
		t.Fatalf("held %d after restart, want %d", w.held(), n)
	}
	// The registration survived too: deposits still accepted.
	w.deposit(alice.devices[0], bob, env(n))
	got, err := w.fetchAll(bob, 0)
	if err != nil || len(got) != n+1 {
		t.Fatalf("fetch after restart: %d envelopes, %v; want %d", len(got), err, n+1)
	}
	for i, e := range got {
		if !bytes.Equal(e, env(i)) {
			t.Fatalf("envelope %d = %q, want %q", i, e, env(i))
		}
	}
	w.waitFor("acks", func() bool { return w.held() == 0 })
	w.restart()
	if w.held() != 0 {
		t.Fatalf("held %d after acks and a restart, want 0", w.held())
	}
}

// Only a device listed in Bob's current record may fetch, register or ack
// Bob's mail: not a stranger, not another user's device.
func TestOnlyBobsDevicesFetch(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob, carol := w.user("alice-2048", 1), w.user("bob-2048", 2), w.user("carol-2048", 1)
	w.register(bob)
	for i := range 3 {
		w.deposit(alice.devices[0], bob, env(i))
	}
	mallory := w.peer()
	for _, h := range []struct {
		name string
		c    *Client
	}{{"a stranger", w.client(mallory)}, {"Carol's device", w.client(carol.devices[0])}, {"Alice's device", w.client(alice.devices[0])}} {
		n, err := h.c.Fetch(w.ctx(), w.relay.ID(), bob.id, func(context.Context, []byte) error {
			t.Fatalf("%s got one of Bob's envelopes", h.name)
			return nil
		})
		wantRefused(t, h.name+" fetching", err, CodeNotAuthorised, ErrNotAuthorised)
		if n != 0 {
			t.Fatalf("%s fetched %d", h.name, n)
		}
		wantRefused(t, h.name+" registering", h.c.Register(w.ctx(), w.relay.ID(), bob.id), CodeNotAuthorised, ErrNotAuthorised)
	}
	// Mallory sends a fetch and then acks for every ID there could be:
	// the relay refused the fetch and reads nothing more.
	st, r := w.raw(mallory)
	if err := writeFrame(st, fetchFrame(bob, true), maxClientFrame); err != nil {
		t.Fatal(err)
	}
	for id := range uint64(5) {
		writeFrame(st, ackFrame(id, uint64(time.Now().UnixNano())-id), maxClientFrame)
	}
	wantRefused(t, "raw fetch", readResult(t, r), CodeNotAuthorised, ErrNotAuthorised)
	if w.held() != 3 {
		t.Fatalf("held %d after Mallory's acks, want 3", w.held())
	}
	// Bob's second device may.
	got, err := w.fetchAll(bob, 1)
	if err != nil || len(got) != 3 {
		t.Fatalf("Bob's second device: %d envelopes, %v", len(got), err)
	}
	if got := w.metric("parley_mailbox_fetches_total", "not-authorised"); got < 6 {
		t.Errorf("fetches_total{result=not-authorised} = %v, want ≥ 6", got)
	}
}

// A device dropped from Bob's record loses access once the relay looks
// the record up again; a fetch from a listed device costs no lookup while
// the cached record is fresh.
func TestAuthorisationFollowsRecord(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 2)
	w.register(bob)
	w.deposit(alice.devices[0], bob, env(0))
	before := w.dir.lookups.Load()
	for range 3 {
		if _, err := w.fetchAll(bob, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.dir.lookups.Load() - before; n != 0 {
		t.Errorf("%d lookups for three fetches within the cache time, want 0", n)
	}
	// Bob removes his second device.
	w.dir.publish(t, bob, 2, w.clock.Now(), []crypto.PrivKey{bob.devices[0].Peerstore().PrivKey(bob.devices[0].ID())})
	w.clock.Advance(recordFresh)
	_, err := w.fetchAll(bob, 1)
	wantRefused(t, "removed device", err, CodeNotAuthorised, ErrNotAuthorised)
	if _, err := w.fetchAll(bob, 0); err != nil {
		t.Fatalf("remaining device: %v", err)
	}
}

func TestUnregisteredRecipientRefused(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob := w.user("alice-2048", 1), w.user("bob-2048", 1)
	err := w.client(alice.devices[0]).Deposit(w.ctx(), w.relay.ID(), bob.id, env(0))
	wantRefused(t, "deposit for an unregistered user", err, CodeUnknown, ErrUnknown)
	// A user with no record in the directory cannot register.
	w.dir.mu.Lock()
	delete(w.dir.recs, alice.id)
	w.dir.mu.Unlock()
	wantRefused(t, "register without a record", w.client(alice.devices[0]).Register(w.ctx(), w.relay.ID(), alice.id), CodeUnknown, ErrUnknown)
	if w.held() != 0 {
		t.Fatalf("held %d", w.held())
	}
}

// Acks on Bob's fetch stream delete only Bob's envelopes, even when they
// name the IDs of envelopes held for Carol.
func TestAcksDeleteOnlyOwnMail(t *testing.T) {
	w := newWorld(t, Limits{})
	alice, bob, carol := w.user("alice-2048", 1), w.user("bob-2048", 1), w.user("carol-2048", 1)
	w.register(bob)
	w.register(carol)
	w.deposit(alice.devices[0], carol, env(0))
	w.deposit(alice.devices[0], carol, env(1))
	items, err := w.srv.db.scan(carol.id, 0, 10, func(uint64) bool { return false })
	if err != nil || len(items) != 2 {
		t.Fatalf("scan: %d, %v", len(items), err)
	}
	st, r := w.raw(bob.devices[0])
	if err := writeFrame(st, fetchFrame(bob, false), maxClientFrame); err != nil {
		t.Fatal(err)
	}
	if err := readResult(t, r); err != nil {
		t.Fatalf("Bob's fetch: %v", err)
	}
	if err := writeFrame(st, ackFrame(items[0].id, items[1].id), maxClientFrame); err != nil {
		t.Fatal(err)
	}
	st.CloseWrite()
	for { // caught-up, then the relay closes after reading the ack
		var f pb.ServerFrame
		if err := readFrame(r, &f, maxServerFrame); err != nil {
			break
		}
	}
	if w.held() != 2 {
		t.Fatalf("held %d after Bob acked Carol's IDs, want 2", w.held())
	}
	if got, err := w.fetchAll(carol, 0); err != nil || len(got) != 2 {
		t.Fatalf("Carol's fetch: %d, %v", len(got), err)
	}
}
