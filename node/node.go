package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// State is a node's lifecycle state.
type State string

// States.
const (
	StateNew      State = "new"
	StateLocked   State = "locked"
	StateUnlocked State = "unlocked"
)

// Node is one Parley node. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	events *bus

	// loginMu serialises Register and Unlock, so that concurrent wrong
	// passphrases cannot slip past the throttle.
	loginMu sync.Mutex

	mu     sync.Mutex
	state  State
	sess   *session // non-nil while unlocked
	closed bool
	lock   *os.File // the data directory's lock, held until Close
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
	n := &Node{cfg: cfg, log: cfg.Logger, events: newBus(), state: StateNew, lock: lock}
	if store.Exists(cfg.DataDir) {
		n.state = StateLocked
	}
	return n, nil
}

// State reports the node's state.
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
		return fmt.Errorf("%w: name: %v", ErrInvalid, err)
	}
	if utf8.RuneCount(passphrase) < MinPassphrase {
		return fmt.Errorf("%w: at least %d characters", ErrWeakPassphrase, MinPassphrase)
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
	if errors.Is(err, store.ErrExists) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("node: create store: %w", err)
	}
	if _, err := st.PutProfile(ctx, store.Profile{Name: name}); err != nil {
		st.Close()
		n.setState(StateLocked) // the identity exists: logging in can still start it
		return fmt.Errorf("node: save profile: %w", err)
	}
	n.log.Info("identity created", "user", st.UserID().String(), "bits", key.Public().Bits())
	if err := n.startSession(ctx, st); err != nil {
		n.setState(StateLocked)
		return err
	}
	return nil
}

func (n *Node) setState(s State) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state = s
}

// Unlock opens the identity with passphrase and starts the node. On an
// unlocked node it checks the passphrase again (a second login). Wrong
// passphrases are counted, and after a few of them every try waits longer
// (*ThrottledError), across restarts.
func (n *Node) Unlock(ctx context.Context, passphrase []byte) error {
	n.loginMu.Lock()
	defer n.loginMu.Unlock()
	state := n.State()
	if state == StateNew {
		return fmt.Errorf("%w: no identity yet; register first", ErrWrongState)
	}
	if n.isClosed() {
		return ErrClosed
	}
	ns, err := readState(n.cfg.DataDir)
	if err != nil {
		return err
	}
	now := n.cfg.Now()
	if wait := time.UnixMilli(ns.LoginNotBefore).Sub(now); ns.LoginNotBefore != 0 && wait > 0 {
		return &ThrottledError{RetryAfter: wait}
	}
	var st *store.Store
	if state == StateUnlocked {
		err = store.CheckPassphrase(n.cfg.DataDir, passphrase)
	} else {
		st, err = store.Open(n.cfg.DataDir, passphrase, n.storeOptions())
	}
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
	return n.startSession(context.WithoutCancel(ctx), st)
}

// Close stops the session (workers, host, store) and makes the node
// unusable. Nothing acknowledged or queued is lost: the store is synced.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	s := n.sess
	n.sess = nil
	n.mu.Unlock()
	var err error
	if s != nil {
		err = s.close()
	}
	return errors.Join(err, n.lock.Close())
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

func (n *Node) checkState(want State) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.state != want {
		return fmt.Errorf("%w: node is %s", ErrWrongState, n.state)
	}
	return nil
}

// session returns the running session, or ErrWrongState when locked.
func (n *Node) session() (*session, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if n.sess == nil {
		return nil, fmt.Errorf("%w: node is %s", ErrWrongState, n.state)
	}
	return n.sess, nil
}

func (n *Node) storeOptions() store.Options {
	return store.Options{KDF: n.cfg.KDF, Now: n.cfg.Now, Logger: n.log}
}

func (n *Node) startSession(ctx context.Context, st *store.Store) error {
	s, err := newSession(ctx, n, st)
	if err != nil {
		st.Close()
		return err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return errors.Join(ErrClosed, s.close())
	}
	n.sess = s
	n.state = StateUnlocked
	n.mu.Unlock()
	s.start()
	return nil
}
