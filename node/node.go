package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// State is a node's lifecycle state.
type State string

// States, in the order a node goes through them. Only Node.to changes a
// node's state.
const (
	// StateNew: no identity in the data directory; only Register works.
	StateNew State = "new"
	// StateLocked: an identity on disk, the passphrase not given; the
	// host is not running.
	StateLocked State = "locked"
	// StateUnlocked: the store is open and the parts run.
	StateUnlocked State = "unlocked"
	// StateClosing: Close (or a failed part) is stopping the parts.
	StateClosing State = "closing"
	// StateClosed: everything is stopped and the store synced and closed.
	StateClosed State = "closed"
)

// Node is one Parley node. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	events *bus
	lock   *os.File // the data directory's lock, held until Close

	// loginMu serialises Register and Unlock, so that concurrent wrong
	// passphrases cannot slip past the throttle.
	loginMu sync.Mutex

	// mu guards the lifecycle: state, and u (non-nil exactly while
	// unlocked or closing from unlocked).
	mu    sync.Mutex
	state State
	u     *unlocked
	// done is closed when the node reaches StateClosed; err is why, if
	// a part failed.
	done chan struct{}
	err  error
}

// New prepares a node on cfg.DataDir. It opens nothing: the node starts
// new (no identity in the directory) or locked.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(cfg.DataDir); err != nil {
		return nil, err
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := checkListen(cfg.Listen); err != nil {
		lock.Close()
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, events: newBus(), state: StateNew, lock: lock, done: make(chan struct{})}
	if cfg.Metrics != nil {
		n.events.observe = newNodeMetrics(cfg.Metrics, n).observe
	}
	if store.Exists(cfg.DataDir) {
		n.state = StateLocked
	}
	return n, nil
}

// State reports the node's state.
// Owner says whose node it is, in any state: the name and user ID of its
// identity, as last unlocked (both empty before the first unlock).
func (n *Node) Owner() (name, userID string) {
	ns, err := readState(n.cfg.DataDir)
	if err != nil {
		return "", ""
	}
	return ns.Name, ns.UserID
}

func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// DataDir is the node's data directory.
func (n *Node) DataDir() string { return n.cfg.DataDir }

// Register creates the identity (an RSA key, the store sealed with
// passphrase, a host key and a signed prekey) and unlocks the node.
func (n *Node) Register(ctx context.Context, name string, passphrase []byte) error {
	if err := protocol.CheckName(name); err != nil {
		return fail(ErrInvalid, "name: %v", err)
	}
	if utf8.RuneCount(passphrase) < minPassphrase {
		return fail(ErrWeakPassphrase, "at least %d characters", minPassphrase)
	}
	n.loginMu.Lock()
	defer n.loginMu.Unlock()
	if err := n.checkState(StateNew); err != nil {
		if errors.Is(err, ErrWrongState) {
			return ErrExists
		}
		return err
	}
	key, err := n.cfg.NewKey(n.cfg.KeyBits)
	if err != nil {
		return fmt.Errorf("node: generate identity key: %w", err)
	}
	// From here on the identity exists on disk: finish even if the caller
	// gives up (a browser reload), or the node would be neither new nor
	// usable until it restarts.
	ctx = context.WithoutCancel(ctx)
	st, err := store.Create(n.cfg.DataDir, passphrase, key, n.storeOptions())
	releaseKDFMemory()
	if errors.Is(err, store.ErrExists) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("node: create store: %w", err)
	}
	if _, err := st.PutProfile(ctx, store.Profile{Name: name}); err != nil {
		st.Close()
		n.relock() // the identity exists: logging in can still start it
		return fmt.Errorf("node: save profile: %w", err)
	}
	n.log.Info("identity created", "user", st.UserID().String(), "bits", key.Public().Bits())
	if err := n.startUnlocked(ctx, st); err != nil {
		n.relock()
		return err
	}
	return nil
}

// Unlock opens the identity with passphrase and starts the node. On an
// unlocked node it checks the passphrase again (a second login). Wrong
// passphrases are counted, and after a few of them every try waits longer
// (ErrThrottled, with RetryAfter), across restarts.
func (n *Node) Unlock(ctx context.Context, passphrase []byte) error {
	n.loginMu.Lock()
	defer n.loginMu.Unlock()
	state := n.State()
	switch state {
	case StateNew:
		return fail(ErrWrongState, "no identity yet; register first")
	case StateClosing, StateClosed:
		return ErrClosed
	}
	ns, err := readState(n.cfg.DataDir)
	if err != nil {
		return err
	}
	now := n.cfg.Now()
	if wait := time.UnixMilli(ns.LoginNotBefore).Sub(now); ns.LoginNotBefore != 0 && wait > 0 {
		return throttledError(wait)
	}
	var st *store.Store
	if state == StateUnlocked {
		err = store.CheckPassphrase(n.cfg.DataDir, passphrase)
	} else {
		st, err = store.Open(n.cfg.DataDir, passphrase, n.storeOptions())
	}
	releaseKDFMemory()
	if errors.Is(err, store.ErrBadPassphrase) {
		ns.LoginFailures++
		ns.LoginNotBefore = 0
		if w := throttleWait(ns.LoginFailures, n.cfg.LoginBackoff); w > 0 {
			ns.LoginNotBefore = now.Add(w).UnixMilli()
		}
		if werr := writeState(n.cfg.DataDir, ns); werr != nil {
			return werr
		}
		n.log.Warn("wrong passphrase", "failures", ns.LoginFailures)
		return ErrBadPassphrase
	}
	if err != nil {
		return fmt.Errorf("node: open store: %w", err)
	}
	if ns.LoginFailures != 0 || ns.LoginNotBefore != 0 {
		ns.LoginFailures, ns.LoginNotBefore = 0, 0
		if err := writeState(n.cfg.DataDir, ns); err != nil {
			if st != nil {
				st.Close()
			}
			return err
		}
	}
	if st == nil {
		return nil // already unlocked; the passphrase was right
	}
	// The store is open: start even if the caller gave up meanwhile.
	return n.startUnlocked(context.WithoutCancel(ctx), st)
}

// Close stops the parts (workers, host, store) and makes the node
// unusable. Nothing acknowledged or queued is lost: the store is synced.
// It returns once the node is closed.
func (n *Node) Close() error {
	n.mu.Lock()
	switch n.state {
	case StateClosing, StateClosed:
		n.mu.Unlock()
		<-n.done
		return nil
	}
	u := n.u
	n.state = StateClosing
	n.mu.Unlock()
	return n.finish(u, nil)
}

// finish closes u (if any) and the data directory's lock, records cause
// and moves the node to StateClosed. The caller has moved it to
// StateClosing.
func (n *Node) finish(u *unlocked, cause error) error {
	var err error
	if u != nil {
		err = u.close()
	}
	err = errors.Join(err, n.lock.Close())
	n.mu.Lock()
	n.u = nil
	n.state = StateClosed
	n.err = cause
	n.mu.Unlock()
	close(n.done)
	return err
}

// fail closes the node because one of u's parts failed with err (u's
// start logged it). Close or a second failure may have come first.
func (n *Node) fail(u *unlocked, err error) {
	n.mu.Lock()
	if n.u != u || n.state != StateUnlocked {
		n.mu.Unlock()
		return
	}
	n.state = StateClosing
	n.mu.Unlock()
	if cerr := n.finish(u, err); cerr != nil {
		n.log.Error("closing after a failure", "err", cerr)
	}
}

// Done is closed once the node is closed, by Close or because a part
// failed (Err says why).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is why the node closed itself: a part that failed; nil while it
// runs or after Close.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// relock moves a node whose start failed to locked (its identity is on
// disk), unless it is closing.
func (n *Node) relock() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != StateClosing && n.state != StateClosed {
		n.state, n.u = StateLocked, nil
	}
}

func (n *Node) checkState(want State) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.state == StateClosing || n.state == StateClosed:
		return ErrClosed
	case n.state != want:
		return fail(ErrWrongState, "node is %s", n.state)
	}
	return nil
}

// running returns the unlocked part, or ErrWrongState when locked.
func (n *Node) running() (*unlocked, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.state {
	case StateUnlocked:
		return n.u, nil
	case StateClosing, StateClosed:
		return nil, ErrClosed
	}
	return nil, fail(ErrWrongState, "node is %s", n.state)
}

func (n *Node) storeOptions() store.Options {
	return store.Options{KDF: n.cfg.KDF, Now: n.cfg.Now, Logger: n.log}
}

// startUnlocked builds the unlocked part on st, makes the node unlocked
// and starts the parts.
func (n *Node) startUnlocked(ctx context.Context, st *store.Store) error {
	u, err := newUnlocked(ctx, n, st)
	if err != nil {
		st.Close()
		return err
	}
	n.mu.Lock()
	if n.state == StateClosing || n.state == StateClosed {
		n.mu.Unlock()
		return errors.Join(ErrClosed, u.close())
	}
	n.state, n.u = StateUnlocked, u
	u.start() // under mu: Close cannot come between the state and start
	n.mu.Unlock()
	return nil
}

// releaseKDFMemory gives back to the OS the memory the passphrase's KDF
// (Argon2id: 64 MiB by default) used, now garbage. Without it an idle
// node holds it for minutes, until the runtime's periodic collection and
// scavenging return it.
func releaseKDFMemory() { debug.FreeOSMemory() }
