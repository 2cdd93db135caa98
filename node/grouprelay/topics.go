package grouprelay

import (
	"context"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// Topics: the relay subscribes to every ticketed topic (so that it is in
// the topic's mesh and gets its traffic), validates what arrives against
// the topic's ticket and stores what passes.

// validateTimeout bounds one validation.
const validateTimeout = 2 * time.Second

// subBuffer is how many messages a topic's subscription holds for the
// storing reader before pubsub drops them.
const subBuffer = 256

// topic is a ticketed topic.
type topic struct {
	name string
	key  topicKey
	held *held
	// group is the group ID of the first message accepted on the topic
	// (bound): later messages must name the same (the ticket names no
	// group; the headers do).
	group  protocol.GroupID
	bound  bool
	joined *joined // nil while not subscribed
	from   peer.ID // who brought the topic, since the relay started
}

// joined is a subscription to a topic.
type joined struct {
	t      *pubsub.Topic
	sub    *pubsub.Subscription
	peers  *pubsub.TopicEventHandler // peers joining: each is asked what the relay missed
	cancel context.CancelFunc
}

// join subscribes to a held topic (once) and starts storing what arrives.
func (s *Server) join(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[name]
	if t == nil || t.joined != nil || s.life == nil {
		return nil
	}
	validate := func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		r := s.validate(name, from, msg)
		s.met.message(r)
		switch r {
		case pubsub.ValidationAccept:
			s.accepted.Add(1)
		case pubsub.ValidationReject:
			s.rejected.Add(1)
		default:
			s.ignored.Add(1)
		}
		return r
	}
	if err := s.ps.RegisterTopicValidator(name, validate, pubsub.WithValidatorTimeout(validateTimeout)); err != nil {
		return fmt.Errorf("grouprelay: topic validator: %w", err)
	}
	pt, err := s.ps.Join(name)
	if err != nil {
		_ = s.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("grouprelay: joining a topic: %w", err)
	}
	if s.score != nil {
		if err := pt.SetScoreParams(s.score); err != nil {
			_ = pt.Close()
			_ = s.ps.UnregisterTopicValidator(name)
			return fmt.Errorf("grouprelay: topic score: %w", err)
		}
	}
	sub, err := pt.Subscribe(pubsub.WithBufferSize(subBuffer))
	if err != nil {
		_ = pt.Close()
		_ = s.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("grouprelay: subscribing to a topic: %w", err)
	}
	peers, err := pt.EventHandler()
	if err != nil {
		sub.Cancel()
		_ = pt.Close()
		_ = s.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("grouprelay: topic events: %w", err)
	}
	ctx, cancel := context.WithCancel(s.life)
	t.joined = &joined{t: pt, sub: sub, peers: peers, cancel: cancel}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.read(ctx, t.key, sub)
	}()
	go func() {
		defer s.wg.Done()
		s.catchUp(ctx, name, peers)
	}()
	return nil
}

// leave unsubscribes from a topic; its ticket and messages stay.
func (s *Server) leave(name string) {
	s.mu.Lock()
	t := s.topics[name]
	var j *joined
	if t != nil {
		j, t.joined = t.joined, nil
	}
	s.mu.Unlock()
	if j == nil {
		return
	}
	j.cancel()
	j.sub.Cancel()
	j.peers.Cancel()
	_ = s.ps.UnregisterTopicValidator(name)
	if err := j.t.Close(); err != nil {
		s.log.Debug("group relay: topic still busy at close", "err", err)
	}
}

// validate is the topic validator: check, on a message arriving live.
func (s *Server) validate(name string, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	r, m := s.check(name, from, msg.GetData(), true)
	if r == pubsub.ValidationAccept {
		msg.ValidatorData = m
	}
	return r
}

// check admits a message on topic name only if it parses, is of the
// ticket's epoch, is signed by a chain key of the ticket, names the
// topic's group (Reject otherwise, so the forwarder's score falls).
// Three cases are ignored instead (not forwarded, not stored, nobody
// punished), as members do: a message outside the acceptance window, one
// the Admitter refuses (a chain over its rate), and one of a chain the
// ticket does not list while the ticket is not complete (it lists fewer
// keys than the epoch has members: a member's key may not have reached
// the admin yet). live is a message arriving on the topic; otherwise it
// was fetched by relay sync (catchup.go), and instead of the window and
// the Admitter it must be younger than the retention.
func (s *Server) check(name string, from peer.ID, raw []byte, live bool) (pubsub.ValidationResult, *protocol.GroupMessage) {
	return s.checkWith(name, from, len(raw), live, func() (*protocol.GroupMessage, error) { return protocol.ParseGroupMessage(raw) })
}

// checkWith is check of a message of size bytes that parse returns: the
// encoding as it arrived, parsed (check), or a message parsed already
// (relay sync, whose response was parsed as it was read).
func (s *Server) checkWith(name string, from peer.ID, size int, live bool, parse func() (*protocol.GroupMessage, error)) (pubsub.ValidationResult, *protocol.GroupMessage) {
	s.mu.Lock()
	t := s.topics[name]
	var tk *protocol.RelayTicket
	var group protocol.GroupID
	var bound bool
	var superseded time.Time
	if t != nil {
		tk, group, bound, superseded = t.held.ticket, t.group, t.bound, t.held.superseded
	}
	s.mu.Unlock()
	if tk == nil {
		return pubsub.ValidationIgnore, nil
	}
	now := s.now()
	if !superseded.IsZero() && now.After(superseded.Add(s.lim.Grace)) {
		return pubsub.ValidationIgnore, nil // past the grace, being left
	}
	m, err := parse()
	if err != nil {
		return pubsub.ValidationReject, nil
	}
	if m.Epoch != tk.Epoch || (bound && m.Group != group) {
		return pubsub.ValidationReject, nil
	}
	if _, ok := tk.Key(m.Chain); !ok {
		if !tk.Complete() {
			// Some member's key has not reached the admin yet: this may
			// be theirs. Not forwarded, not stored, nobody punished.
			return pubsub.ValidationIgnore, nil
		}
		return pubsub.ValidationReject, nil
	}
	p := protocol.ChainPublic{Group: m.Group, Epoch: m.Epoch, Sender: m.Sender, Chain: m.Chain}
	if err := p.Verify(m); err != nil {
		return pubsub.ValidationReject, nil
	}
	if live {
		if err := m.CheckTime(now, 0, 0); err != nil {
			return pubsub.ValidationIgnore, nil
		}
		if s.admit != nil && !s.admit.AdmitChain(m.Chain, size) {
			return pubsub.ValidationIgnore, nil
		}
	} else if err := m.CheckTime(now, s.lim.Retention, 0); err != nil {
		return pubsub.ValidationIgnore, nil
	}
	if !bound {
		s.mu.Lock()
		if t.bound && t.group != m.Group {
			s.mu.Unlock()
			return pubsub.ValidationReject, nil
		}
		t.group, t.bound = m.Group, true
		s.mu.Unlock()
	}
	return pubsub.ValidationAccept, m
}

// read stores what a topic's subscription delivers until ctx ends.
func (s *Server) read(ctx context.Context, k topicKey, sub *pubsub.Subscription) {
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		m, ok := msg.ValidatorData.(*protocol.GroupMessage)
		if !ok {
			continue
		}
		s.store(k, m, msg.GetData())
	}
}
