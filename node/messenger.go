package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/parley-chat/parley/node/outbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// messenger is the part that speaks msgProtocol: its stream handler
// opens, stores and acknowledges what friends send (service.go), and its
// client side gives the outbox the frames to send and the streams to send
// them on (delivery.go). It owns the double-ratchet sessions with friends
// (sessions.go; a peerSess per friend, whose lock serialises sealing and
// opening in that friend's sessions), the read receipts sent, and the
// counters of its hot paths. mu guards the maps below it, for short reads
// and writes only.
type messenger struct {
	st      *store.Store
	cfg     Config
	log     *slog.Logger
	me      protocol.ID
	host    host.Host
	keys    *keyring
	friends *friendBook
	outbox  *outbox.Outbox
	events  *bus
	// life and track: stream handlers run in the node's lifetime, and
	// close waits for them.
	life  context.Context
	track *tracker
	stats stats
	// group takes a group state or sender key that arrived from a friend
	// (KindGroupState, KindSenderKey; the groups part's receiveDirect),
	// in its own goroutine: it sends to other friends, which must not
	// happen under the sender's session lock.
	group func(ctx context.Context, from protocol.ID, kind protocol.Kind, body []byte) error
	// onRoster reports whether a user is on the roster of a group the
	// user is in (an admin of one, with admin): who, not being a friend,
	// may still send group controls (group_roster.go).
	onRoster func(user protocol.ID, admin bool) bool
	// roster finds roster members who are not friends, to seal group
	// controls to them and reach their devices (group_roster.go); nil
	// until the groups part is wired.
	roster *rosterBook

	resets perFriend // session resets asked, by friend
	pushes perFriend // cards sent to friends who sealed to a retired key (anchors.go)

	mu       sync.Mutex
	sessions map[protocol.ID]*peerSess      // friends' double-ratchet sessions
	receipts map[protocol.ID]protocol.MsgID // last read receipt sent
}

func newMessenger() *messenger {
	return &messenger{
		sessions: make(map[protocol.ID]*peerSess),
		receipts: make(map[protocol.ID]protocol.MsgID),
	}
}

// serve handles msgProtocol streams until ctx ends.
func (ms *messenger) serve(ctx context.Context) error {
	ms.host.SetStreamHandler(msgProtocol, ms.handleStream)
	<-ctx.Done()
	ms.host.RemoveStreamHandler(msgProtocol)
	return nil
}

// forget drops what is kept about a removed friend.
func (ms *messenger) forget(id protocol.ID) {
	ms.mu.Lock()
	delete(ms.receipts, id)
	ms.mu.Unlock()
}

// sendCard queues a contact request or accept carrying the own card.
func (ms *messenger) sendCard(ctx context.Context, fe *friendEntry, kind protocol.Kind) error {
	if fe.key == nil {
		return fail(ErrInvalid, "no key for %s", fe.f.UserID)
	}
	c, err := ms.keys.ownCard()
	if err != nil {
		return err
	}
	return ms.queueControl(ctx, fe, kind, c.Marshal())
}

// queueControl seals a control message and queues it for delivery: a
// receipt (read or delivered) in the current session when there is one,
// anything else as a single envelope.
func (ms *messenger) queueControl(ctx context.Context, fe *friendEntry, kind protocol.Kind, body []byte) error {
	var (
		ps *peerSess
		p  *protocol.PeerSessions
		t  uint64
	)
	if (kind == protocol.KindReceipt || kind == protocol.KindDelivered) && !ms.cfg.DisableSessions {
		ps = ms.peerSessOf(fe.f.UserID)
		var unlock func()
		t, unlock = ps.lockTurn()
		defer unlock()
		var err error
		if p, err = ms.state(ctx, ps, fe.f.UserID); err != nil {
			return err
		}
		if !ms.usable(p, fe, ms.cfg.Now()) {
			p = nil // a receipt does not start a session
		}
	}
	out, err := ms.sealOut(ps, fe, p, kind, protocol.MsgID{}, body)
	if err != nil {
		return fmt.Errorf("node: seal %v: %w", kind, err)
	}
	if ps != nil {
		ps.inTurn(t, out.update)
	}
	e := store.OutboxEntry{MsgID: out.id, Recipient: fe.f.UserID, Envelope: out.raw, Session: out.session}
	if err := ms.st.AddControlWith(ctx, e, out.update); err != nil {
		return fmt.Errorf("node: queue %v: %w", kind, err)
	}
	ms.outbox.Notify(fe.f.UserID)
	return nil
}

// sessionCount is the number of friends whose sessions are loaded.
func (ms *messenger) sessionCount() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.sessions)
}

// toGroups hands an opened group control to the groups part, in its own
// goroutine (see messenger.group); a refusal is logged, not answered: the
// sender's envelope was fine, the group change in it was not.
func (ms *messenger) toGroups(m *protocol.Message) {
	if ms.group == nil {
		return
	}
	from, kind, body := m.Sender, m.Kind, m.Body
	ms.track.goFunc(func() {
		if err := ms.group(ms.life, from, kind, body); err != nil {
			ms.log.Info("group control refused", "kind", kind.String(), "sender", from.String(), "err", err)
		}
	})
}
