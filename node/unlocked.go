package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/node/outbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// unlocked is the running node: the open store, the host and the DHT,
// and the parts that run on them, each with its own state and lock:
//
//	keys      keyring     identity key, rotations, prekeys, own card
//	friends   friendBook  friends, pinning, contact requests
//	msgs      messenger   msgProtocol: the stream handler and the client
//	                      side (frames, streams), ratchet sessions, receipts
//	outbox    outbox      delivery: one ordered queue per recipient
//	presence  presence    who is online, dialling friends, reachability
//	pub       publisher   the own directory record and name claim
//	invites   inviter     short invites: the card protocol (invite.go)
//	mail      mailboxes   relays' mailboxes: subscribing, depositing
//	reserver  reserver    a slot on each relay from the start (reservations.go)
//	puncher   puncher     hole punches retried where libp2p's one try missed (punch.go)
//	groups    groups      group states, sender keys, gossipsub topics (group_node.go)
//
// Parts get what they use explicitly (the store, host, config, logger,
// other parts or functions of them); none holds a pointer to unlocked or
// to the Node. The parts' serve methods run under one errgroup: the
// first that fails stops the others and closes the node (Node.fail).
type unlocked struct {
	cfg  Config
	log  *slog.Logger
	st   *store.Store
	me   protocol.ID
	host host.Host
	dir  *directory.DHT

	keys     *keyring
	friends  *friendBook
	msgs     *messenger
	outbox   *outbox.Outbox
	presence *presence
	pub      *publisher
	reserver *reserver
	puncher  *puncher // nil without relays
	invites  *inviter
	mail     *mailboxes
	groups   *groups

	// life is the running node's lifetime, cancelled by close. libp2p
	// calls stream handlers and notifiees without a context; they derive
	// theirs from it.
	life   context.Context
	cancel context.CancelFunc
	// track counts the stream handlers and background goroutines (spawn)
	// that close waits for; parts' serve methods are in served.
	track tracker
	// stopped is closed when every part's serve has returned; nil until
	// start.
	stopped chan struct{}
	// failed is called (in its own goroutine) when a part fails.
	failed func(error)
}

func newUnlocked(ctx context.Context, n *Node, st *store.Store) (*unlocked, error) {
	u := &unlocked{cfg: n.cfg, log: n.log, st: st, me: st.UserID()}
	u.failed = func(err error) { n.fail(u, err) }
	p, err := st.Profile(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("node: profile: %w", err)
	}
	hk, err := u.hostKey(ctx)
	if err != nil {
		return nil, err
	}
	if u.keys, err = newKeyring(ctx, st, n.cfg, n.log, p.Name); err != nil {
		return nil, fmt.Errorf("node: keys: %w", err)
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
	// peer ID alone finds its addresses through the DHT. It is built
	// before the host listens, and dials nobody until then (Hold).
	listening := make(chan struct{})
	u.host, err = newHost(hostSpec{
		key: hk, listen: n.cfg.Listen, low: n.cfg.ConnLow, high: n.cfg.ConnHigh, metrics: n.cfg.Metrics,
		extra: append(natOptions(boot), libp2p.Routing(func(h host.Host) (routing.PeerRouting, error) {
			d, err := directory.NewDHT(h, directory.Config{
				Server: n.cfg.DHTServer, Bootstrap: boot, Hold: listening, Now: n.cfg.Now, Logger: n.log,
				Metrics: dm, ManualRefresh: n.cfg.ManualDHTRefresh,
			})
			if err != nil {
				return nil, err
			}
			u.dir = d
			return d.Routing(), nil
		})),
	})
	if err != nil {
		if u.dir != nil {
			u.dir.Close()
		}
		return nil, err
	}
	close(listening)
	ns, err := readState(n.cfg.DataDir)
	if err == nil && (ns.PeerID != u.host.ID().String() || ns.UserID != u.me.String() || ns.Name != p.Name) {
		ns.PeerID, ns.UserID, ns.Name = u.host.ID().String(), u.me.String(), p.Name
		err = writeState(n.cfg.DataDir, ns)
	}
	if err != nil {
		u.dir.Close()
		u.host.Close()
		return nil, err
	}
	u.life, u.cancel = context.WithCancel(context.Background())
	if err := u.wire(n.events, hk, boot); err != nil {
		u.cancel()
		u.dir.Close()
		u.host.Close()
		return nil, err
	}
	return u, nil
}

// wire makes the parts and tells each what it needs of the others.
func (u *unlocked) wire(events *bus, hk crypto.PrivKey, relays []peer.AddrInfo) error {
	u.keys.host = u.host
	u.reserver = newReserver(u.host, relays, u.log, u.keys.dropCard)
	u.keys.circuits = u.reserver.addrs
	if len(relays) > 0 {
		u.puncher = newPuncher(u.host, u.log, u.friendDevices)
	}
	mailRelays, err := mailboxRelays(u.cfg, relays)
	if err != nil {
		return err
	}
	u.mail = newMailboxes(u.host, mailRelays)
	u.friends = newFriendBook()
	u.msgs = newMessenger()
	u.presence = newPresence()
	u.pub = newPublisher(u.st, u.cfg, u.log, u.keys, u.host, u.dir, hk, u.presence.connect)
	seed, err := hk.Raw()
	if err != nil {
		return fmt.Errorf("node: host key: %w", err)
	}
	u.invites = newInviter(u.cfg, u.log, u.me, u.host, u.keys, seed, &u.track)
	if u.outbox, err = u.newOutbox(events); err != nil {
		return err
	}
	spawn := func(f func(ctx context.Context)) { u.track.goFunc(func() { f(u.life) }) }

	fr := u.friends
	fr.st, fr.cfg, fr.log, fr.me, fr.keys, fr.events, fr.outbox, fr.dir = u.st, u.cfg, u.log, u.me, u.keys, events, u.outbox, u.dir
	fr.lookup, fr.sendCard, fr.sendRemoval, fr.spawn = u.lookup, u.msgs.sendCard, u.msgs.sendRemoval, spawn
	fr.online, fr.dial = u.presence.isOnline, u.presence.dialFriend
	fr.cached = u.presence.cached
	fr.forgotten = func(id protocol.ID) {
		u.presence.forget(id)
		u.msgs.forget(id)
	}

	ms := u.msgs
	ms.st, ms.cfg, ms.log, ms.me, ms.host, ms.keys, ms.friends, ms.outbox, ms.events = u.st, u.cfg, u.log, u.me, u.host, u.keys, u.friends, u.outbox, events
	ms.life, ms.track = u.life, &u.track

	mb := u.mail
	mb.log, mb.cfg, mb.me, mb.msgs, mb.friends = u.log, u.cfg, u.me, u.msgs, u.friends
	if err := u.wireGroups(events, spawn); err != nil {
		return err
	}

	pr := u.presence
	pr.cfg, pr.log, pr.host, pr.friends, pr.events, pr.rush, pr.spawn = u.cfg, u.log, u.host, u.friends, events, u.outbox.Rush, spawn

	// After a new prekey (or key rotation): friends get the new card, the
	// directory the new record.
	u.keys.changed = func(ctx context.Context) {
		u.friends.announceCard(ctx)
		u.pub.kick()
	}
	return u.friends.load(u.life)
}

// hostKey loads the device's Ed25519 key, making it on first use.
func (u *unlocked) hostKey(ctx context.Context) (crypto.PrivKey, error) {
	b, err := u.st.HostKey(ctx)
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
	if err := u.st.PutHostKey(ctx, b); err != nil {
		return nil, fmt.Errorf("node: save host key: %w", err)
	}
	return k, nil
}

// start runs the parts' serve methods under one errgroup. The first to
// fail (return an error while the node runs) stops the others, and the
// node closes (u.failed). close waits for them all. The Node calls start
// once, before close and under its lifecycle lock.
func (u *unlocked) start() {
	u.stopped = make(chan struct{})
	g, ctx := errgroup.WithContext(u.life)
	serve := func(name string, f func(context.Context) error) {
		g.Go(func() error {
			if err := f(ctx); err != nil && u.life.Err() == nil {
				u.log.Error("part failed; the node stops", "part", name, "err", err)
				return fmt.Errorf("node: %s: %w", name, err)
			}
			return nil
		})
	}
	serve("messaging", u.msgs.serve)
	serve("outbox", u.outbox.Serve)
	serve("keys", u.keys.serve)
	serve("friends", u.friends.serve)
	serve("presence", u.presence.serve)
	serve("publisher", u.pub.serve)
	serve("reserver", u.reserver.serve)
	serve("mailboxes", u.mail.serve)
	if u.puncher != nil {
		serve("puncher", u.puncher.serve)
	}
	serve("invites", u.invites.serve)
	serve("groups", u.groups.serve)
	for _, p := range u.cfg.extraParts {
		serve(p.name, p.serve)
	}
	go func() {
		err := g.Wait()
		close(u.stopped)
		if err != nil {
			u.failed(err)
		}
	}()
	u.log.Info("node unlocked", "user", u.me.String(), "peer", u.host.ID().String(), "addrs", fmt.Sprint(u.host.Addrs()))
}

// close stops the parts, the stream handlers and background work, then
// the host, then the store (which commits what is queued and syncs).
func (u *unlocked) close() error {
	u.cancel()
	u.track.stop()
	derr := u.dir.Close()
	herr := u.host.Close()
	if u.stopped != nil {
		<-u.stopped
	}
	u.track.wait()
	serr := u.st.Close()
	return errors.Join(derr, herr, serr)
}

// part is a part's name (for the log) and its serve method.
type part struct {
	name  string
	serve func(ctx context.Context) error
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

// friendDevices are the devices of accepted friends.
func (u *unlocked) friendDevices() []peer.ID {
	var ids []peer.ID
	for _, fe := range u.friends.having(func(fe *friendEntry) bool { return fe.f.Status == store.FriendAccepted }) {
		ids = append(ids, fe.devices...)
	}
	return ids
}
