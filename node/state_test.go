package node

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/parley-chat/parley/store"
)

func TestStateLifecycle(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "alice-2048")
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if got := n.State(); got != StateNew {
		t.Fatalf("State of an empty directory = %s, want new", got)
	}
	if _, err := ReadIdentity(cfg.DataDir); !errors.Is(err, store.ErrNoStore) {
		t.Fatalf("ReadIdentity of an empty directory: %v, want store.ErrNoStore", err)
	}
	if err := n.Unlock(ctx, []byte(testPass)); !isErr(err, ErrWrongState) {
		t.Fatalf("Unlock before Register: %v, want ErrWrongState", err)
	}
	if _, err := n.Send(ctx, fixtureKey(t, "bob-2048").ID(), "hi"); !isErr(err, ErrWrongState) {
		t.Fatalf("Send while new: %v, want ErrWrongState", err)
	}
	if err := n.Register(ctx, "Alice", []byte("too short")); !isErr(err, ErrWeakPassphrase) {
		t.Fatalf("Register with a short passphrase: %v, want ErrWeakPassphrase", err)
	}
	if err := n.Register(ctx, "", []byte(testPass)); !isErr(err, ErrInvalid) {
		t.Fatalf("Register without a name: %v, want ErrInvalid", err)
	}
	if got := n.State(); got != StateNew || store.Exists(cfg.DataDir) {
		t.Fatalf("a refused Register left state %s (store exists: %v)", got, store.Exists(cfg.DataDir))
	}
	if err := n.Register(ctx, "Alice", []byte(testPass)); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got := n.State(); got != StateUnlocked {
		t.Fatalf("State after Register = %s", got)
	}
	if err := n.Register(ctx, "Alice", []byte(testPass)); !isErr(err, ErrExists) {
		t.Fatalf("second Register: %v, want ErrExists", err)
	}
	me := meOf(t, n)
	if me.Name != "Alice" || me.UserID != fixtureKey(t, "alice-2048").ID() {
		t.Fatalf("Me = %+v", me)
	}
	id, err := ReadIdentity(cfg.DataDir)
	if err != nil || id.UserID != me.UserID || id.PeerID != me.PeerID.String() || id.Fingerprint != me.Fingerprint {
		t.Fatalf("ReadIdentity while running = %+v, %v", id, err)
	}

	// Unlock while unlocked is a second login: it checks the passphrase.
	if err := n.Unlock(ctx, []byte(testPass)); err != nil {
		t.Fatalf("Unlock while unlocked, right passphrase: %v", err)
	}
	if err := n.Unlock(ctx, []byte("wrong passphrase")); !isErr(err, ErrBadPassphrase) {
		t.Fatalf("Unlock while unlocked, wrong passphrase: %v, want ErrBadPassphrase", err)
	}
	if got := n.State(); got != StateUnlocked {
		t.Fatalf("a wrong second login changed the state to %s", got)
	}

	closeNode(t, n)
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.Me(ctx); !isErr(err, ErrClosed) {
		t.Fatalf("Me after Close: %v, want ErrClosed", err)
	}
	if err := n.Unlock(ctx, []byte(testPass)); !isErr(err, ErrClosed) {
		t.Fatalf("Unlock after Close: %v, want ErrClosed", err)
	}

	n, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if got := n.State(); got != StateLocked {
		t.Fatalf("State of a registered directory = %s, want locked", got)
	}
	if _, err := n.Me(ctx); !isErr(err, ErrWrongState) {
		t.Fatalf("Me while locked: %v, want ErrWrongState", err)
	}
	if err := n.Register(ctx, "Alice", []byte(testPass)); !isErr(err, ErrExists) {
		t.Fatalf("Register on a locked node: %v, want ErrExists", err)
	}
	if err := n.Unlock(ctx, []byte("wrong passphrase")); !isErr(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v, want ErrBadPassphrase", err)
	}
	if got := n.State(); got != StateLocked {
		t.Fatalf("State after a wrong passphrase = %s", got)
	}
	if err := n.Unlock(ctx, []byte(testPass)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if got := meOf(t, n); got.UserID != me.UserID || got.PeerID != me.PeerID || got.Name != "Alice" {
		t.Fatalf("after Unlock, Me = %+v; want the same user, device and name", got)
	}
}

// throttled checks that err is ErrThrottled with a wait, and returns the wait.
func throttled(tb testing.TB, err error) time.Duration {
	tb.Helper()
	var te *Error
	if !errors.As(err, &te) || !errors.Is(err, ErrThrottled) || te.Code != CodeThrottled || te.RetryAfter <= 0 {
		tb.Fatalf("err = %v, want ErrThrottled with RetryAfter > 0", err)
	}
	return te.RetryAfter
}

func TestLoginThrottle(t *testing.T) {
	ctx := context.Background()
	clk := newFrozenClock()
	cfg := testConfig(t, "alice-2048")
	cfg.Now = clk.Now
	closeNode(t, startNode(t, cfg, "Alice"))
	wrong := []byte("not the passphrase")

	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for i := 1; i <= freeTries; i++ {
		if err := n.Unlock(ctx, wrong); !isErr(err, ErrBadPassphrase) {
			t.Fatalf("wrong try %d: %v, want ErrBadPassphrase", i, err)
		}
	}
	wait := throttled(t, n.Unlock(ctx, []byte(testPass))) // even the right one
	if wait != DefaultLoginBackoff {
		t.Fatalf("RetryAfter = %v, want %v", wait, DefaultLoginBackoff)
	}
	if got := n.State(); got != StateLocked {
		t.Fatalf("a throttled Unlock left state %s", got)
	}
	// A throttled try is not counted and does not move the deadline.
	clk.Advance(time.Second)
	if got := throttled(t, n.Unlock(ctx, wrong)); got != wait-time.Second {
		t.Fatalf("RetryAfter a second later = %v, want %v", got, wait-time.Second)
	}

	// The throttle is on disk: a new Node on the directory (after this
	// one stopped: a running node holds the directory) is held too.
	n.Close()
	n2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	throttled(t, n2.Unlock(ctx, []byte(testPass)))

	// Each further wrong passphrase doubles the wait.
	clk.Advance(wait)
	if err := n2.Unlock(ctx, wrong); !isErr(err, ErrBadPassphrase) {
		t.Fatalf("wrong try after the wait: %v, want ErrBadPassphrase", err)
	}
	wait = throttled(t, n2.Unlock(ctx, []byte(testPass)))
	if wait != 2*DefaultLoginBackoff {
		t.Fatalf("RetryAfter after %d wrong tries = %v, want %v", freeTries+1, wait, 2*DefaultLoginBackoff)
	}

	clk.Advance(wait + time.Second)
	if err := n2.Unlock(ctx, []byte(testPass)); err != nil {
		t.Fatalf("right passphrase after the wait: %v", err)
	}
	ns, err := readState(cfg.DataDir)
	if err != nil || ns.LoginFailures != 0 || ns.LoginNotBefore != 0 {
		t.Fatalf("state after a good login = %+v, %v; want the counter reset", ns, err)
	}

	// Reset: freeTries-1 wrong ones cost nothing again. The wrong ones of
	// a second login on the running node count as well.
	for i := 1; i < freeTries; i++ {
		if err := n2.Unlock(ctx, wrong); !isErr(err, ErrBadPassphrase) {
			t.Fatalf("wrong try %d after the reset: %v", i, err)
		}
	}
	if err := n2.Unlock(ctx, []byte(testPass)); err != nil {
		t.Fatalf("right passphrase within the free tries: %v", err)
	}
	for i := 1; i <= freeTries; i++ {
		n2.Unlock(ctx, wrong)
	}
	throttled(t, n2.Unlock(ctx, []byte(testPass)))
	if got := n2.State(); got != StateUnlocked {
		t.Fatalf("throttling a second login changed the state to %s", got)
	}
}

func TestThrottleWait(t *testing.T) {
	for n := 0; n < freeTries; n++ {
		if w := throttleWait(n, DefaultLoginBackoff); w != 0 {
			t.Fatalf("throttleWait(%d) = %v, want 0", n, w)
		}
	}
	prev := time.Duration(0)
	for n := freeTries; n < freeTries+20; n++ {
		w := throttleWait(n, DefaultLoginBackoff)
		if w < prev || w > throttleMax || w <= 0 {
			t.Fatalf("throttleWait(%d) = %v after %v", n, w, prev)
		}
		prev = w
	}
	if prev != throttleMax {
		t.Fatalf("the wait tops out at %v, want %v", prev, throttleMax)
	}
}

func TestConfigRefusals(t *testing.T) {
	if _, err := New(Config{}); !isErr(err, ErrInvalid) {
		t.Fatalf("New without a data directory: %v, want ErrInvalid", err)
	}
	cfg := testConfig(t, "alice-2048")
	cfg.RetryMin, cfg.RetryMax = time.Second, time.Millisecond
	if _, err := New(cfg); !isErr(err, ErrInvalid) {
		t.Fatalf("RetryMax below RetryMin: %v, want ErrInvalid", err)
	}
	cfg = testConfig(t, "alice-2048")
	cfg.KDF = store.KDFParams{Time: 1, MemoryKiB: 1, Threads: 1}
	if _, err := New(cfg); !isErr(err, store.ErrBadParams) {
		t.Fatalf("bad KDF parameters: %v, want store.ErrBadParams", err)
	}
}

// TestRegisterOutlivesItsCaller: a caller that gives up while the identity
// is being created (a browser reload during key generation) leaves a
// usable node, not one whose store exists while it still says new.
func TestRegisterOutlivesItsCaller(t *testing.T) {
	n, err := New(testConfig(t, "alice-2048"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Register(ctx, "Alice", []byte(testPass)); err != nil {
		t.Fatalf("Register with a cancelled context: %v", err)
	}
	if got := n.State(); got != StateUnlocked {
		t.Fatalf("state %s, want unlocked", got)
	}
	if me, err := n.Me(context.Background()); err != nil || me.Name != "Alice" {
		t.Fatalf("Me = %+v, %v", me, err)
	}
}

// A second node on a data directory in use fails at once, with ErrInUse,
// and so does a node whose fixed listen port is taken; once the first
// node is closed, the directory is free again.
func TestDataDirInUse(t *testing.T) {
	cfg := testConfig(t, "alice-2048")
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); !isErr(err, ErrInUse) {
		t.Fatalf("second New on the same directory: %v, want ErrInUse", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n, err = New(cfg)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	n.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg2 := testConfig(t, "bob-2048")
	cfg2.Listen = []string{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
	if _, err := New(cfg2); !isErr(err, ErrInUse) {
		t.Fatalf("New with a busy listen port: %v, want ErrInUse", err)
	}
}
