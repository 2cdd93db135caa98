package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/node/outbox"
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
	dir  *directory.DHT
	// hostPriv is the device's host key, which counter-signs the device
	// in the directory record.
	hostPriv crypto.PrivKey
	dirKick  chan struct{}
	// published is the sequence number of the last record the DHT took.
	published atomic.Uint64

	// life is the session's lifetime, cancelled by close. libp2p calls
	// stream handlers and notifiees without a context; they derive theirs
	// from it.
	life   context.Context
	cancel context.CancelFunc
	track  tracker

	outbox *outbox.Outbox
	stats  stats

	// rotateMu serialises key rotations.
	rotateMu sync.Mutex

	// friendMu serialises changes to friend records (read, change, write),
	// from the API and from contact envelopes alike.
	friendMu sync.Mutex

	mu       sync.Mutex
	name     string
	prekey   *protocol.Prekey               // the current one
	record   *directory.Record              // own record, last published
	genesis  *protocol.PublicKey            // own genesis key
	chain    []*protocol.Rotation           // own rotations, oldest first
	lookedUp map[protocol.ID]time.Time      // unknown-key lookups, by friend
	retired  map[protocol.ID]retiredKey     // old identity keys, by key ID
	sessions map[protocol.ID]*peerSess      // friends' double-ratchet sessions
	resets   map[protocol.ID]time.Time      // session resets asked, by friend
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
	key     *protocol.PublicKey    // the pinned key; nil if it does not parse
	card    *protocol.Card         // nil if none, or it does not parse
	prekey  *protocol.SignedPrekey // from the newer of card and record
	rcpt    protocol.Recipient
	infos   []peer.AddrInfo // devices, with the card's addresses if any
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
		lookedUp: make(map[protocol.ID]time.Time),
		retired:  make(map[protocol.ID]retiredKey),
		sessions: make(map[protocol.ID]*peerSess),
		resets:   make(map[protocol.ID]time.Time),
		dirKick:  make(chan struct{}, 1),
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
	s.hostPriv = hk
	if err := s.loadKeys(ctx); err != nil {
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
	boot, err := addrInfos(n.cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	var dm *directory.Metrics
	if n.cfg.Metrics != nil {
		dm = directory.NewMetrics(n.cfg.Metrics)
	}
	// The DHT is the host's peer routing: dialling a friend's device by
	// peer ID alone finds its addresses through the DHT.
	s.host, err = newHost(hostSpec{
		key: hk, listen: n.cfg.Listen, low: n.cfg.ConnLow, high: n.cfg.ConnHigh, metrics: n.cfg.Metrics,
		extra: append(natOptions(boot), libp2p.Routing(func(h host.Host) (routing.PeerRouting, error) {
			d, err := directory.NewDHT(h, directory.Config{
				Server: n.cfg.DHTServer, Bootstrap: boot, Now: n.cfg.Now, Logger: n.log,
				Metrics: dm, ManualRefresh: n.cfg.ManualDHTRefresh,
			})
			if err != nil {
				return nil, err
			}
			s.dir = d
			return d.Routing(), nil
		})),
	})
	if err != nil {
		if s.dir != nil {
			s.dir.Close()
		}
		return nil, err
	}
	ns, err := readState(n.cfg.DataDir)
	if err == nil && ns.PeerID != s.host.ID().String() {
		ns.PeerID = s.host.ID().String()
		err = writeState(n.cfg.DataDir, ns)
	}
	if err != nil {
		s.dir.Close()
		s.host.Close()
		return nil, err
	}
	s.life, s.cancel = context.WithCancel(context.Background())
	if s.outbox, err = s.newOutbox(); err != nil {
		s.dir.Close()
		s.host.Close()
		return nil, err
	}
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
	s.track.goFunc(func() { s.outbox.Serve(s.life) })
	s.track.goFunc(func() { s.prekeyLoop(s.life) })
	s.track.goFunc(func() { s.dialKnown(s.life) })
	directory.ServeRecord(s.host, s.ownRecordBytes)
	s.track.goFunc(func() { s.directoryLoop(s.life) })
	s.track.goFunc(func() { s.friendRecheckLoop(s.life) })
	if sub, err := s.host.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated)); err == nil {
		s.track.goFunc(func() { s.watchAddrs(s.life, sub) })
	}
	if sub, err := s.host.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged)); err == nil {
		s.track.goFunc(func() { s.watchReachability(s.life, sub) })
	}
	s.log.Info("node unlocked", "user", s.me.String(), "peer", s.host.ID().String(), "addrs", fmt.Sprint(s.host.Addrs()))
}

// close stops the workers and handlers, then the host, then the store.
func (s *session) close() error {
	s.cancel()
	s.host.RemoveStreamHandler(MsgProtocol)
	s.host.RemoveStreamHandler(directory.RecordProtocol)
	s.track.stop()
	derr := s.dir.Close()
	herr := s.host.Close()
	s.track.wait()
	serr := s.st.Close()
	return errors.Join(derr, herr, serr)
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

// cacheFriend records f (as stored) in the friend cache: the pinned key,
// and the devices and prekey from their card or directory record,
// whichever is newer and carries the pinned key.
func (s *session) cacheFriend(f store.Friend) *friendEntry {
	fe := &friendEntry{f: f, key: mustKey(f.PublicKey)}
	now := s.cfg.Now()
	var cardAt time.Time
	if c, err := protocol.ParseCardURI(f.Card); f.Card != "" && err == nil && c.UserID == f.UserID && c.Key.Equal(fe.key) {
		fe.card, fe.prekey, cardAt = c, c.Prekey, c.IssuedAt
		fe.infos = cardAddrInfo(c)
	}
	if rec, err := directory.ParseRecord(f.Record); len(f.Record) > 0 && err == nil && rec.UserID() == f.UserID && rec.Key().Equal(fe.key) {
		if fe.card == nil || rec.IssuedAt().After(cardAt) {
			fe.prekey = rec.Prekey()
		}
		fe.infos = mergeDevices(fe.infos, rec.DevicePeers())
	}
	if fe.key != nil {
		fe.rcpt, _ = protocol.NewRecipient(f.UserID, fe.key, nil, now)
		if fe.prekey != nil {
			if r, err := protocol.NewRecipient(f.UserID, fe.key, fe.prekey, now); err == nil {
				fe.rcpt = r
			}
		}
	}
	for _, info := range fe.infos {
		fe.devices = append(fe.devices, info.ID)
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

// mergeDevices adds the devices in ids that infos lacks, without
// addresses: peer routing finds them.
func mergeDevices(infos []peer.AddrInfo, ids []peer.ID) []peer.AddrInfo {
	for _, id := range ids {
		if !slices.ContainsFunc(infos, func(i peer.AddrInfo) bool { return i.ID == id }) {
			infos = append(infos, peer.AddrInfo{ID: id})
		}
	}
	return infos
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
// its prekey is valid, else suite 1 (no prekey) until a newer card or
// record brings a new one.
func (s *session) recipient(fe *friendEntry) protocol.Recipient {
	now := s.cfg.Now()
	if p := fe.rcpt.Prekey; p == nil || (!now.Before(p.NotBefore) && now.Before(p.NotAfter)) {
		return fe.rcpt
	}
	return protocol.Recipient{UserID: fe.f.UserID, Key: fe.key}
}

// isContact reports whether fe is a friend or someone we asked.
func (fe *friendEntry) isContact() bool {
	return fe.f.Status == store.FriendAccepted || fe.f.Status == store.FriendPendingOut
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
