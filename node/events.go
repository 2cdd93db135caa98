package node

import (
	"context"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// EventType names a node event.
type EventType string

// Events.
const (
	EventMessage          EventType = "message"            // Message arrived
	EventMessageStatus    EventType = "message_status"     // Message's status changed
	EventMessageDeleted   EventType = "message_deleted"    // Message was deleted locally (msgedit.go)
	EventFriendRequest    EventType = "friend_request"     // Friend asked to be friends
	EventFriendAccepted   EventType = "friend_accepted"    // Friend became accepted
	EventFriendRemoved    EventType = "friend_removed"     // Friend was removed or blocked
	EventFriendKeyRotated EventType = "friend_key_rotated" // Friend moved to a new key by a signed rotation
	EventFriendKeyChanged EventType = "friend_key_changed" // Friend's key changed without one: sending is held
	EventKeyFork          EventType = "key_fork"           // Friend's key signed two histories: sending is held (forks.go)
	EventPeerOnline       EventType = "peer_online"        // a device of User connected
	EventPeerOffline      EventType = "peer_offline"       // User's last device went away
	EventOverflow         EventType = "overflow"           // the subscriber lost events
	EventGroupMessage     EventType = "group_message"      // GroupMessage arrived in Group (group_node.go)
	EventGroupUpdated     EventType = "group_updated"      // Group's members, epoch or name changed
	EventGroupRemoved     EventType = "group_removed"      // this user was removed from Group, or left it
	// EventEnvelopeRefused: an envelope from Peer (sender User, when
	// known) was refused with Code. For the audit log, not the UI.
	EventEnvelopeRefused EventType = "envelope_refused"
)

// Event is one thing that happened, for the UI. It never leaves the
// process except through the local API.
type Event struct {
	Type    EventType
	Message store.Message // EventMessage, EventMessageStatus, EventMessageDeleted
	Friend  Friend        // friend events
	User    protocol.ID   // presence events
	Peer    peer.ID       // presence events, EventEnvelopeRefused
	Code    string        // EventEnvelopeRefused: the refusal's ack code
	// Group is the group of a group event, as GroupInfo shows it.
	Group        GroupInfo
	GroupMessage store.GroupMessage // EventGroupMessage
}

// subscriberBuffer is how many events a subscriber may fall behind.
const subscriberBuffer = 256

// bus fans events out to subscribers. A subscriber that falls behind loses
// events and gets one EventOverflow when it has room again; publishing
// never blocks.
type bus struct {
	// observe, if set, sees every event first (the node's metrics); it
	// must not block. Set before the node runs, never changed.
	observe func(Event)

	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch   chan Event
	lost bool // events were dropped since the last overflow notice
}

func newBus() *bus { return &bus{subs: make(map[*subscriber]struct{})} }

func (b *bus) publish(e Event) {
	if b.observe != nil {
		b.observe(e)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.lost {
			select {
			case s.ch <- Event{Type: EventOverflow}:
				s.lost = false
			default:
				continue
			}
		}
		select {
		case s.ch <- e:
		default:
			s.lost = true
		}
	}
}

// Subscribe streams events until ctx ends or cancel is called; the
// channel is closed then.
func (n *Node) Subscribe(ctx context.Context) (<-chan Event, func()) {
	b := n.events
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			close(s.ch)
			b.mu.Unlock()
		})
	}
	stop := context.AfterFunc(ctx, cancel)
	return s.ch, func() { stop(); cancel() }
}

func (b *bus) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
