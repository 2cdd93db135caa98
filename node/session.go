package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// session is an unlocked node: the open store, the identity, the running
// host and the workers. It ends with close.
type session struct {
	n    *Node
	cfg  Config
	log  *slog.Logger
	st   *store.Store
	key  *protocol.PrivateKey
	me   protocol.ID
	host host.Host

	// life is the session's lifetime, cancelled by close. libp2p calls
	// stream handlers and notifiees without a context; they derive theirs
	// from it.
	life   context.Context
	cancel context.CancelFunc
	track  tracker

	outbox *outbox
	stats  stats

	// friendMu serialises changes to friend records (read, change, write),
	// from the API and from contact envelopes alike.
	friendMu sync.Mutex

	mu       sync.Mutex
	name     string
	prekey   *protocol.Prekey               // the current one
	card     *protocol.Card                 // own card, rebuilt when stale
	friends  map[protocol.ID]*friendEntry   // every stored friend
	devices  map[peer.ID]protocol.ID        // friends' device peer IDs
	online   map[protocol.ID]bool           // friends shown online (last event sent)
	receipts map[protocol.ID]protocol.MsgID // last read receipt sent
	reach    network.Reachability           // as AutoNAT last said
}

// friendEntry caches what sending to and hearing from a friend needs.
type friendEntry struct {
	f       store.Friend
	key     *protocol.PublicKey
	card    *protocol.Card // nil if the stored card does not parse
	rcpt    protocol.Recipient
	devices []peer.ID
}

func newSession(ctx context.Context, n *Node, st *store.Store) (*session, error) {
	key, err := st.Identity()
	if err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	s := &session{
		n: n, cfg: n.cfg, log: n.log, st: st, key: key, me: st.UserID(),
		friends:  make(map[protocol.ID]*friendEntry),
		devices:  make(map[peer.ID]protocol.ID),
		online:   make(map[protocol.ID]bool),
		receipts: make(map[protocol.ID]protocol.MsgID),
	}
	p, err := st.Profile(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("node: profile: %w", err)
	}
	s.name = p.Name
	hk, err := s.hostKey(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.ensurePrekey(ctx); err != nil {
		return nil, err
	}
	friends, err := st.Friends(ctx)
	if err != nil {
		return nil, fmt.Errorf("node: friends: %w", err)
	}
	for _, f := range friends {
		s.cacheFriend(f)
	}
	if s.host, err = newHost(n.cfg, hk); err != nil {
		return nil, err
	}
	ns, err := readState(n.cfg.DataDir)
	if err == nil && ns.PeerID != s.host.ID().String() {
		ns.PeerID = s.host.ID().String()
		err = writeState(n.cfg.DataDir, ns)
	}
	if err != nil {
		s.host.Close()
		return nil, err
	}
	s.life, s.cancel = context.WithCancel(context.Background())
	s.outbox = newOutbox(s)
	return s, nil
}

// hostKey loads the device's Ed25519 key, making it on first use.
func (s *session) hostKey(ctx context.Context) (crypto.PrivKey, error) {
	b, err := s.st.HostKey(ctx)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("node: host key: %w", err)
		}
		return k, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("node: host key: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node: generate host key: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("node: host key: %w", err)
	}
	if err := s.st.PutHostKey(ctx, b); err != nil {
		return nil, fmt.Errorf("node: save host key: %w", err)
	}
	return k, nil
}

// start registers the protocol handler and starts the workers.
func (s *session) start() {
	s.host.SetStreamHandler(MsgProtocol, s.handleStream)
	s.host.Network().Notify(&network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { s.peerConnected(c.RemotePeer()) },
		DisconnectedF: func(_ network.Network, c network.Conn) { s.peerDisconnected(c.RemotePeer()) },
	})
	s.track.goFunc(func() { s.outbox.run(s.life) })
	s.track.goFunc(func() { s.prekeyLoop(s.life) })
	s.track.goFunc(func() { s.dialKnown(s.life) })
	if sub, err := s.host.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged)); err == nil {
		s.track.goFunc(func() { s.watchReachability(s.life, sub) })
	}
	s.log.Info("node unlocked", "user", s.me.String(), "peer", s.host.ID().String(), "addrs", fmt.Sprint(s.host.Addrs()))
}

// close stops the workers and handlers, then the host, then the store.
func (s *session) close() error {
	s.cancel()
	s.host.RemoveStreamHandler(MsgProtocol)
	s.track.stop()
	herr := s.host.Close()
	s.track.wait()
	serr := s.st.Close()
	return errors.Join(herr, serr)
}

// watchReachability keeps the host's reachability for Info.
func (s *session) watchReachability(ctx context.Context, sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			if r, ok := e.(event.EvtLocalReachabilityChanged); ok {
				s.mu.Lock()
				s.reach = r.Reachability
				s.mu.Unlock()
			}
		}
	}
}

// cacheFriend records f (as stored) in the friend cache.
func (s *session) cacheFriend(f store.Friend) *friendEntry {
	fe := &friendEntry{f: f}
	if k, err := protocol.ParsePublicKey(f.PublicKey); err == nil {
		fe.key = k
	}
	if f.Card != "" {
		if c, err := protocol.ParseCardURI(f.Card); err == nil && c.UserID == f.UserID {
			fe.card = c
			fe.rcpt = c.Recipient(s.cfg.Now())
			for _, d := range c.Devices {
				if id, err := peer.IDFromBytes(d); err == nil {
					fe.devices = append(fe.devices, id)
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.friends[f.UserID]; old != nil {
		for _, d := range old.devices {
			delete(s.devices, d)
		}
	}
	s.friends[f.UserID] = fe
	for _, d := range fe.devices {
		s.devices[d] = f.UserID
	}
	// A device may have connected before we knew whose it was (their
	// contact request came over that connection).
	if s.host != nil && !s.online[f.UserID] && s.anyConnected(fe.devices) {
		s.online[f.UserID] = true
	}
	return fe
}

func (s *session) forgetFriend(id protocol.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.friends[id]; old != nil {
		for _, d := range old.devices {
			delete(s.devices, d)
		}
	}
	delete(s.friends, id)
	delete(s.online, id)
	delete(s.receipts, id)
}

// recipient is what to seal to fe with now: their cached recipient while
// its prekey is valid; else the card's recipient at now, which drops an
// expired prekey (suite 1) until a new card brings a new one.
func (s *session) recipient(fe *friendEntry) protocol.Recipient {
	now := s.cfg.Now()
	if p := fe.rcpt.Prekey; p != nil && !now.Before(p.NotBefore) && now.Before(p.NotAfter) {
		return fe.rcpt
	}
	if fe.card != nil && fe.card.Prekey != nil {
		return fe.card.Recipient(now)
	}
	return fe.rcpt
}

func (s *session) friend(id protocol.ID) *friendEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.friends[id]
}

// stats are counters of the session's hot paths.
type stats struct {
	opened    atomic.Int64 // envelopes that went through Opener.Open
	openNanos atomic.Int64 // time spent in Opener.Open
	sealed    atomic.Int64 // messages that went through Seal in Send
	sealNanos atomic.Int64 // time spent in Seal in Send
}

// tracker runs goroutines (workers and stream handlers) that close waits
// for, and refuses new ones once stopping.
type tracker struct {
	mu       sync.Mutex
	stopping bool
	wg       sync.WaitGroup
}

// enter registers a running handler; false once the session is closing.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *tracker) leave() { t.wg.Done() }

func (t *tracker) goFunc(f func()) {
	if !t.enter() {
		return
	}
	go func() {
		defer t.leave()
		f()
	}()
}

func (t *tracker) stop() {
	t.mu.Lock()
	t.stopping = true
	t.mu.Unlock()
}

func (t *tracker) wait() { t.wg.Wait() }
