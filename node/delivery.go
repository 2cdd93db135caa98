package node

import (
	"context"
	"errors"
	"slices"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/parley-chat/parley/node/outbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// newOutbox builds the delivery part (package outbox) on the store and
// the messenger's client side.
func (u *unlocked) newOutbox(events *bus) (*outbox.Outbox, error) {
	return outbox.New(outbox.Config{
		Store:  u.st,
		Open:   u.msgs.openStream,
		Frame:  u.msgs.frame,
		Reseal: u.msgs.resealSession,
		Settled: func(m store.Message) {
			events.publish(Event{Type: EventMessageStatus, Message: m})
		},
		// Nothing more goes to a friend whose key signed two histories
		// until the user verifies them again (forks.go; verify rushes).
		Allowed: func(to protocol.ID) bool {
			fe := u.friends.friend(to)
			return fe == nil || !fe.f.Forked
		},
		Retry:      u.msgs.retryRefusal,
		Better:     u.presence.direct,
		Deposit:    u.mail.deposit,
		Now:        u.cfg.Now,
		Logger:     u.log,
		RetryMin:   u.cfg.RetryMin,
		RetryMax:   u.cfg.RetryMax,
		AckTimeout: u.cfg.AckTimeout,
		Metrics:    u.cfg.Metrics,
	})
}

// frame is the delivery frame of an outbox entry: a session message, or
// an envelope (with the own card when it is a contact request or accept).
func (ms *messenger) frame(e store.OutboxEntry) (*protocol.Delivery, error) {
	if e.Session {
		return &protocol.Delivery{Session: e.Envelope}, nil
	}
	env, err := protocol.ParseEnvelope(e.Envelope)
	if err != nil {
		return nil, err
	}
	if ne, ok := ms.reanchor(e, env); ok {
		// Sealed again to the friend's current key (anchors.go); a chat
		// message still, so no card goes with it.
		e = ne
	}
	d := &protocol.Delivery{Envelope: e.Envelope}
	if env.Kind == protocol.KindContactRequest || env.Kind == protocol.KindContactAccept || (isGroupControl(env.Kind) && !ms.accepted(e.Recipient)) {
		// A group control to a member who is not a friend carries the
		// card its signature is checked against (group_roster.go).
		if card, err := ms.keys.ownCard(); err == nil {
			d.SenderCard = card.Marshal()
		}
	}
	return d, nil
}

// openStream reaches one of the recipient's devices: a connected one if
// any, else each device at the addresses on its card, or where the DHT
// says it is. A recipient who is not a friend is a roster member
// (group_roster.go), reached at the devices of their record.
func (ms *messenger) openStream(ctx context.Context, to protocol.ID) (network.Stream, error) {
	var infos []peer.AddrInfo
	roster := false
	if fe := ms.friends.reachable(to); fe != nil {
		infos = slices.Clone(fe.infos)
	} else if ms.roster != nil {
		// A roster member who is not a friend: their record's devices.
		e, err := ms.roster.get(ctx, to)
		if err != nil {
			return nil, err
		}
		infos, roster = slices.Clone(e.infos), true
	}
	if len(infos) == 0 {
		return nil, fail(ErrNotFound, "no known device of %s", to)
	}
	slices.SortStableFunc(infos, func(a, b peer.AddrInfo) int {
		ca := ms.host.Network().Connectedness(a.ID) == network.Connected
		cb := ms.host.Network().Connectedness(b.ID) == network.Connected
		switch {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		}
		return 0
	})
	var errs []error
	for _, info := range infos {
		if info.ID == ms.host.ID() {
			continue
		}
		ms.host.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.AddressTTL)
		dctx, cancel := context.WithTimeout(ctx, ms.cfg.DialTimeout)
		// A relayed (limited) connection carries chat until a hole punch
		// gives a direct one (outbox.Config.Better moves to it).
		str, err := ms.host.NewStream(network.WithAllowLimitedConn(dctx, "parley-msg"), info.ID, msgProtocol)
		cancel()
		if err == nil {
			return str, nil
		}
		errs = append(errs, err)
	}
	if roster {
		ms.roster.forget(to) // its devices may have moved: look again next time
	}
	if len(errs) == 0 {
		return nil, fail(ErrUnavailable, "%s has no reachable device", to)
	}
	joined := errors.Join(errs...)
	return nil, failWith(ErrUnavailable, joined, "%v", joined)
}

// accepted reports whether user is an accepted friend.
func (ms *messenger) accepted(user protocol.ID) bool {
	fe := ms.friends.friend(user)
	return fe != nil && fe.f.Status == store.FriendAccepted
}
