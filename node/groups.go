package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// The groups part: group states, sender keys and group messages over
// gossipsub (issue 15). One topic per group and epoch
// (protocol.Topic); every member's node subscribes to its groups' current
// topics and so carries their traffic. A topic validator admits only
// messages that verify (the sender's chain is known for the topic's group
// and epoch, and its Ed25519 signature holds), so nothing else is
// forwarded. States and sender keys travel inside 1:1 sessions: the part
// sends them with direct and receives them in receiveDirect (the
// messenger hands it session messages of kinds KindGroupState and
// KindSenderKey).
//
// Pubsub signing. The gossipsub router runs with StrictNoSign and a
// content-hash message ID: every group message is already signed by its
// sender's chain key (anchored in the sender's RSA identity through the
// 1:1 session that carried the key) and checked in the validator, so a
// pubsub signature by the publishing host would add an Ed25519
// signature per publish and a verification per hop, and put the author's
// peer ID in every message, which lets every node carrying the topic tie
// a member's posts to their device (and its addresses). Without it, a
// forwarder sees only the peer it got the message from. Every node on a
// group's topics, relays included, must use the same policy.

const (
	// groupSubBuffer is how many messages a topic subscription holds for
	// a slow reader before pubsub drops them.
	groupSubBuffer = 256
	// maxPendingKeys bounds the sender keys kept for states not yet
	// arrived. In a rekey of a large group most members' keys may come
	// before the admin's state (the admin hands out to everyone, each
	// member only its key), so it holds a whole group's worth, twice.
	maxPendingKeys = 2 * protocol.MaxGroupMembers
	// groupValidateTimeout bounds one validation.
	groupValidateTimeout = 2 * time.Second
	// groupReadyTimeout bounds the wait for a topic's mesh before a publish.
	groupReadyTimeout = 3 * time.Second
)

// newGroupPubSub starts the gossipsub router the groups part uses, for
// the lifetime of ctx (pubsub has no Close). sign turns pubsub's own
// signatures on (StrictSign), for comparison only. guard's rates and
// groupguard's scoring and bounds apply (guard nil: scoring and bounds
// only, for benchmarks of the router). extra options follow ours.
func newGroupPubSub(ctx context.Context, h host.Host, sign bool, guard *groupguard.Guard, extra ...pubsub.Option) (*pubsub.PubSub, error) {
	policy := pubsub.StrictNoSign
	if sign {
		policy = pubsub.StrictSign
	}
	opts := []pubsub.Option{
		pubsub.WithMessageSignaturePolicy(policy),
		// Every group message carries a random msg_id, so a hash of the
		// content names it (StrictNoSign has no sender and seqno to use).
		pubsub.WithMessageIdFn(func(m *pb.Message) string { s := sha256.Sum256(m.Data); return string(s[:]) }),
		pubsub.WithFloodPublish(true),
		pubsub.WithMaxMessageSize(protocol.MaxGroupMessageSize + 4<<10),
	}
	opts = append(opts, groupguard.PubSubOptions(guard)...)
	ps, err := pubsub.NewGossipSub(ctx, h, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("node: gossipsub: %w", err)
	}
	return ps, nil
}

// groups is the part. Its fields up to mu are set at wiring and never
// change; mu guards topics, locks and pending, and is held only for
// short reads and writes of them. A group's lock (lockGroup) serialises
// the work that moves its chains, state and topic: sealing, opening and
// storing a message, storing a state, joining and leaving its topic.
// Nothing is sent to a peer or published under it.
type groups struct {
	st       *store.Store
	log      *slog.Logger
	me       protocol.ID
	host     host.Host
	ps       *pubsub.PubSub
	guard    *groupguard.Guard // rate limits (nil: none)
	now      func() time.Time
	identity func() (*protocol.PrivateKey, error)
	// keyOf returns user's RSA public key with the given key ID (pinned
	// friends, the directory, or cards).
	keyOf func(ctx context.Context, user, key protocol.ID) (*protocol.PublicKey, error)
	// direct sends body of kind to user inside the 1:1 session with them.
	direct func(ctx context.Context, to protocol.ID, kind protocol.Kind, body []byte) error
	// spawn runs f in a goroutine the node waits for, with the node's
	// lifetime as its context.
	spawn func(f func(ctx context.Context))
	// onMessage and onUpdate tell the UI (nil: nobody listens).
	onMessage func(m store.GroupMessage)
	onUpdate  func(g *store.Group)
	// relays issues relay tickets (group_relays.go); nil: no relays.
	relays *groupRelays

	mu      sync.Mutex
	topics  map[protocol.GroupID]*groupTopic
	locks   map[protocol.GroupID]*sync.Mutex
	pending []pendingKey
	// known is the public part of every sender chain of the joined
	// epochs, so that the validator verifies without reading the store.
	known map[protocol.ChainID]protocol.ChainPublic

	ho handoutWork // hand-outs of new epochs (group_handout.go)
}

// groupTopic is the joined topic of a group's current epoch.
type groupTopic struct {
	group protocol.GroupID
	epoch uint64
	state *protocol.GroupState // the epoch's roster
	name  string
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	peers *pubsub.TopicEventHandler // peers joining: each is asked for what we missed
}

func newGroups() *groups {
	g := &groups{
		topics: map[protocol.GroupID]*groupTopic{}, locks: map[protocol.GroupID]*sync.Mutex{},
		known: map[protocol.ChainID]protocol.ChainPublic{},
		ho:    handoutWork{signal: make(chan struct{}, 1)},
	}
	g.ho.kicks.Store(1) // the start owes a pass (jobs left by the last run)
	return g
}

// lockGroup takes the group's lock and returns its unlock.
func (g *groups) lockGroup(id protocol.GroupID) func() {
	g.mu.Lock()
	l, ok := g.locks[id]
	if !ok {
		l = &sync.Mutex{}
		g.locks[id] = l
	}
	g.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// serve joins the topics of the stored groups this user is a member of,
// and leaves every topic when ctx ends.
func (g *groups) serve(ctx context.Context) error {
	// The early keys are taken up before the groups are read: a state
	// stored meanwhile (it may come as soon as the messenger serves) is
	// then either in the groups read here or applies them itself.
	if err := g.loadPending(ctx); err != nil {
		return err
	}
	all, err := g.st.Groups(ctx)
	if err != nil {
		return fmt.Errorf("node: groups: %w", err)
	}
	for _, gr := range all {
		if !gr.Removed {
			if err := g.join(gr.State); err != nil {
				return err
			}
			g.relayTicket(gr.ID())
			g.applyPending(ctx, gr.State)
		}
	}
	g.spawn(g.runHandouts)
	g.host.SetStreamHandler(groupSyncProtocol, g.handleSync)
	defer g.host.RemoveStreamHandler(groupSyncProtocol)
	g.host.SetStreamHandler(groupRelaySyncProtocol, g.handleRelaySync)
	defer g.host.RemoveStreamHandler(groupRelaySyncProtocol)
	<-ctx.Done()
	g.mu.Lock()
	joined := make([]*groupTopic, 0, len(g.topics))
	for id, t := range g.topics {
		joined = append(joined, t)
		delete(g.topics, id)
	}
	g.mu.Unlock()
	for _, t := range joined {
		g.close(t)
	}
	return nil
}

// join subscribes to the topic of a group's epoch, leaving the topic of
// an earlier epoch; a later epoch already joined stays. It takes the
// group's lock, so joins and leaves of one group do not interleave.
func (g *groups) join(st *protocol.GroupState) error {
	id, epoch := st.Group, st.Epoch
	unlock := g.lockGroup(id)
	defer unlock()
	if t := g.topic(id); t != nil && t.epoch >= epoch {
		return nil
	}
	name := protocol.Topic(st)
	validate := func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		return g.validate(ctx, id, epoch, from, msg)
	}
	if err := g.ps.RegisterTopicValidator(name, validate, pubsub.WithValidatorTimeout(groupValidateTimeout)); err != nil {
		return fmt.Errorf("node: group topic validator: %w", err)
	}
	t, err := g.ps.Join(name)
	if err != nil {
		_ = g.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("node: joining a group topic: %w", err)
	}
	if err := t.SetScoreParams(groupguard.TopicScoreParams()); err != nil {
		_ = t.Close()
		_ = g.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("node: group topic scores: %w", err)
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(groupSubBuffer))
	if err != nil {
		_ = t.Close()
		_ = g.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("node: subscribing to a group topic: %w", err)
	}
	peers, err := t.EventHandler()
	if err != nil {
		sub.Cancel()
		_ = t.Close()
		_ = g.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("node: group topic events: %w", err)
	}
	gt := &groupTopic{group: id, epoch: epoch, state: st, name: name, topic: t, sub: sub, peers: peers}
	chains, err := g.st.SenderChains(context.Background(), id, epoch)
	if err != nil {
		g.log.Warn("group sender keys unreadable", "group", id.String(), "err", err)
	}
	g.mu.Lock()
	old := g.topics[id]
	g.topics[id] = gt
	for k, p := range g.known {
		if p.Group == id && p.Epoch < epoch {
			delete(g.known, k)
		}
	}
	for _, c := range chains {
		g.known[c.ID()] = c.Public()
	}
	g.mu.Unlock()
	g.spawn(func(ctx context.Context) { g.read(ctx, gt) })
	g.spawn(func(ctx context.Context) { g.catchUp(ctx, gt) })
	if old != nil {
		g.close(old)
	}
	return nil
}

// onRoster reports whether user is on the roster of a group whose topic
// this node is on (as an admin, when admin is set): the rosters joined,
// held in memory, so that a control from a member who is not a friend
// reads no group from the store.
func (g *groups) onRoster(user protocol.ID, admin bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.topics {
		if (admin && t.state.IsAdmin(user)) || (!admin && t.state.IsMember(user)) {
			return true
		}
	}
	return false
}

// leave leaves a group's topic (after a removal).
func (g *groups) leave(id protocol.GroupID) {
	unlock := g.lockGroup(id)
	defer unlock()
	g.mu.Lock()
	t := g.topics[id]
	delete(g.topics, id)
	for k, p := range g.known {
		if p.Group == id {
			delete(g.known, k)
		}
	}
	g.mu.Unlock()
	if t != nil {
		g.close(t)
	}
}

// learn adds a stored chain's public part to what the validator knows.
func (g *groups) learn(c *protocol.SenderChain) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.known[c.ID()] = c.Public()
}

// chain returns the public part of a known chain: from memory, else from
// the store (a key stored while its topic was being joined).
func (g *groups) chain(ctx context.Context, m *protocol.GroupMessage) (protocol.ChainPublic, bool) {
	return g.chainOf(ctx, m.Group, m.Epoch, m.Sender, m.Chain)
}

// chainOf is the public part of sender's chain of a group's epoch: from
// the chains of the joined epochs held in memory, else from the store.
func (g *groups) chainOf(ctx context.Context, id protocol.GroupID, epoch uint64, sender protocol.ID, chain protocol.ChainID) (protocol.ChainPublic, bool) {
	g.mu.Lock()
	p, ok := g.known[chain]
	g.mu.Unlock()
	if ok && p.Group == id && p.Epoch == epoch && p.Sender == sender {
		return p, true
	}
	c, err := g.st.SenderChain(ctx, id, epoch, sender, chain)
	if err != nil {
		return protocol.ChainPublic{}, false
	}
	p = c.Public()
	g.mu.Lock()
	if t := g.topics[id]; t != nil && t.epoch == epoch {
		g.known[chain] = p // known holds the joined epochs' chains only
	}
	g.mu.Unlock()
	return p, true
}

func (g *groups) close(t *groupTopic) {
	t.peers.Cancel()
	t.sub.Cancel()
	_ = g.ps.UnregisterTopicValidator(t.name)
	// Close fails while pubsub has not yet processed the cancel; the
	// topic handle is then left to the router, which drops it with the
	// subscription.
	if err := t.topic.Close(); err != nil {
		g.log.Debug("group topic still busy at close", "err", err)
	}
}

// topic returns the joined topic of a group.
func (g *groups) topic(id protocol.GroupID) *groupTopic {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.topics[id]
}

// validate is the validator of the topic of group id's epoch: it admits
// a message only if it parses, belongs to that group and epoch, is
// inside the acceptance window, verifies with a sender chain this node
// holds, and is within that chain's rate. What does not parse or verify
// is rejected (the forwarder's score falls). A message whose chain is
// not known (yet) is ignored: not forwarded, but its forwarder is not
// penalised, since its key may still be on its way. A verified message
// over its chain's rate is ignored too: its forwarder may be honest
// (groupguard's doc says why); the per-peer rate, applied before
// validation, catches a flooding peer.
func (g *groups) validate(ctx context.Context, id protocol.GroupID, epoch uint64, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	m, err := protocol.ParseGroupMessage(msg.GetData())
	if err != nil {
		return pubsub.ValidationReject
	}
	if m.Group != id || m.Epoch != epoch {
		return pubsub.ValidationReject
	}
	if err := m.CheckTime(g.now(), 0, 0); err != nil {
		return pubsub.ValidationIgnore
	}
	c, ok := g.chain(ctx, m)
	if !ok {
		return pubsub.ValidationIgnore
	}
	v, err := c.Check(m)
	if err != nil {
		g.log.Debug("group message refused", "group", m.Group.String(), "from", from.String(), "err", err)
		return pubsub.ValidationReject
	}
	if g.guard != nil && !g.guard.AdmitChain(m.Chain, len(msg.GetData())) {
		g.log.Debug("group message over its sender's rate", "group", m.Group.String(), "from", from.String())
		return pubsub.ValidationIgnore
	}
	msg.ValidatorData = verifiedArrival{v: v, raw: msg.GetData()}
	return pubsub.ValidationAccept
}

// verifiedArrival is what the topic validator hands the topic's reader
// (pubsub's ValidatorData): the message as the validator verified it
// (protocol's proof, so that opening it needs no second signature check)
// and its bytes as received, which ParseGroupMessage checked are its
// canonical encoding (what is stored for members catching up). Only the
// validator makes one; a message from anywhere else (group sync) is
// opened with receive, which verifies it in full.
type verifiedArrival struct {
	v   *protocol.VerifiedGroupMessage
	raw []byte
}

// read stores what arrives on a topic until the subscription ends.
func (g *groups) read(ctx context.Context, t *groupTopic) {
	for {
		msg, err := t.sub.Next(ctx)
		if err != nil {
			return // cancelled, or the node stopping
		}
		if msg.ReceivedFrom == g.host.ID() {
			continue // our own, stored when sent
		}
		a, ok := msg.ValidatorData.(verifiedArrival)
		if !ok {
			continue
		}
		if _, err := g.receiveVerified(ctx, a); err != nil && !errors.Is(err, store.ErrDuplicate) && !errors.Is(err, protocol.ErrGroupReplay) {
			g.log.Debug("group message not stored", "group", a.v.Header().Group.String(), "err", err)
		}
	}
}

// receive opens a message that did not pass this node's topic validator
// (group sync) with its sender's chain, verifying it in full, and stores
// it with the chain's next state, once.
func (g *groups) receive(ctx context.Context, m *protocol.GroupMessage) (store.GroupMessage, error) {
	return g.openStore(ctx, m.GroupHeader, m.Marshal(), func(c *protocol.SenderChain) (*protocol.GroupPlain, *protocol.SenderChain, error) {
		return c.Open(m)
	})
}

// receiveVerified is receive for a message the topic validator verified:
// OpenVerified checks its signature again only if the stored chain is not
// the one that verified it.
func (g *groups) receiveVerified(ctx context.Context, a verifiedArrival) (store.GroupMessage, error) {
	return g.openStore(ctx, a.v.Header(), a.raw, func(c *protocol.SenderChain) (*protocol.GroupPlain, *protocol.SenderChain, error) {
		return c.OpenVerified(a.v)
	})
}

// openStore opens the message of header h (raw: its encoding) with open on
// its sender's stored chain, under the group's lock, and stores it with
// the chain's next state, once.
func (g *groups) openStore(ctx context.Context, h protocol.GroupHeader, raw []byte,
	open func(c *protocol.SenderChain) (*protocol.GroupPlain, *protocol.SenderChain, error)) (store.GroupMessage, error) {
	unlock := g.lockGroup(h.Group)
	c, err := g.st.SenderChain(ctx, h.Group, h.Epoch, h.Sender, h.Chain)
	if err != nil {
		unlock()
		return store.GroupMessage{}, err
	}
	p, next, err := open(c)
	if err != nil {
		unlock()
		return store.GroupMessage{}, err
	}
	stored, err := g.st.StoreGroupMessage(ctx, store.GroupMessage{
		Group: h.Group, ID: h.MsgID, Epoch: h.Epoch, From: h.Sender, Chain: h.Chain, Iteration: h.Iteration,
		Kind: groupKindName(h.Kind), Body: p.Body, Raw: raw, SentAt: h.Time(),
	}, next)
	unlock()
	if err != nil {
		return store.GroupMessage{}, err
	}
	if g.onMessage != nil {
		g.onMessage(stored)
	}
	return stored, nil
}

func groupKindName(k protocol.Kind) string {
	if k == protocol.KindText {
		return "text"
	}
	return fmt.Sprintf("kind-%d", uint16(k))
}

// sendGroup seals text as this user's next message in a group, stores it
// (durable before it reaches the wire) and publishes it on the group's
// topic. A message published while no peer is on the topic stays stored
// for members who catch up later.
func (g *groups) sendGroup(ctx context.Context, id protocol.GroupID, text string) (store.GroupMessage, error) {
	if len(text) > protocol.MaxBodySize {
		return store.GroupMessage{}, ErrTooLarge
	}
	gr, err := g.st.Group(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.GroupMessage{}, fmt.Errorf("%w: group %s", ErrNotFound, id)
	}
	if err != nil {
		return store.GroupMessage{}, err
	}
	if gr.Removed {
		return store.GroupMessage{}, fmt.Errorf("%w: %s", ErrNotMember, id)
	}
	epoch := gr.State.Epoch
	unlock := g.lockGroup(id)
	own, err := g.st.OwnChain(ctx, id, epoch)
	if err != nil {
		unlock()
		return store.GroupMessage{}, fmt.Errorf("node: own sender key: %w", err)
	}
	m, next, err := own.Seal(protocol.KindText, []byte(text), g.now())
	if err != nil {
		unlock()
		return store.GroupMessage{}, err
	}
	raw := m.Marshal()
	stored, err := g.st.StoreGroupMessage(ctx, store.GroupMessage{
		Group: id, ID: m.MsgID, Epoch: epoch, From: g.me, Chain: m.Chain, Iteration: m.Iteration,
		Kind: "text", Body: []byte(text), Raw: raw, Direction: store.Out, SentAt: m.Time(),
	}, next)
	unlock()
	if err != nil {
		return store.GroupMessage{}, err
	}
	t := g.topic(id)
	if t == nil || t.epoch != epoch {
		return stored, fmt.Errorf("%w: group %s epoch %d has no joined topic", ErrUnavailable, id, epoch)
	}
	if err := g.publish(ctx, t, raw); err != nil {
		return stored, fmt.Errorf("%w: publishing: %v", ErrUnavailable, err)
	}
	return stored, nil
}

// publish sends raw on t. When peers are on the topic, it first waits (up
// to groupReadyTimeout) for the router's mesh to hold one, since a
// message published before the mesh forms reaches direct neighbours only
// (LIBP2P.md §3); then, or with nobody there, it publishes as it can.
func (g *groups) publish(ctx context.Context, t *groupTopic, raw []byte) error {
	if len(t.topic.ListPeers()) > 0 {
		rctx, cancel := context.WithTimeout(ctx, groupReadyTimeout)
		err := t.topic.Publish(rctx, raw, pubsub.WithReadiness(pubsub.MinTopicSize(1)))
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return t.topic.Publish(ctx, raw)
}
