package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/parley-chat/parley/node/outbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// newOutbox builds the delivery part (package outbox) on the session's
// store, host and friends.
func (s *session) newOutbox() (*outbox.Outbox, error) {
	return outbox.New(outbox.Config{
		Store:  s.st,
		Open:   s.openStream,
		Frame:  s.frame,
		Reseal: s.resealSession,
		Settled: func(m store.Message) {
			s.n.events.publish(Event{Type: EventMessageStatus, Message: m})
		},
		Now:        s.cfg.Now,
		Logger:     s.log,
		RetryMin:   s.cfg.RetryMin,
		RetryMax:   s.cfg.RetryMax,
		AckTimeout: s.cfg.AckTimeout,
	})
}

// frame is the delivery frame of an outbox entry: a session message, or
// an envelope (with the own card when it is a contact request or accept).
func (s *session) frame(e store.OutboxEntry) (*protocol.Delivery, error) {
	if e.Session {
		return &protocol.Delivery{Session: e.Envelope}, nil
	}
	env, err := protocol.ParseEnvelope(e.Envelope)
	if err != nil {
		return nil, err
	}
	d := &protocol.Delivery{Envelope: e.Envelope}
	if env.Kind == protocol.KindContactRequest || env.Kind == protocol.KindContactAccept {
		if card, err := s.ownCard(); err == nil {
			d.SenderCard = card.Marshal()
		}
	}
	return d, nil
}

// openStream reaches one of the recipient's devices: a connected one if
// any, else each device at the addresses on its card, or where the DHT
// says it is.
func (s *session) openStream(ctx context.Context, to protocol.ID) (network.Stream, error) {
	fe := s.friend(to)
	if fe == nil || len(fe.infos) == 0 {
		return nil, fmt.Errorf("%w: no known device of %s", ErrNotFound, to)
	}
	infos := slices.Clone(fe.infos)
	slices.SortStableFunc(infos, func(a, b peer.AddrInfo) int {
		ca := s.host.Network().Connectedness(a.ID) == network.Connected
		cb := s.host.Network().Connectedness(b.ID) == network.Connected
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
		if info.ID == s.host.ID() {
			continue
		}
		s.host.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.AddressTTL)
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		str, err := s.host.NewStream(dctx, info.ID, MsgProtocol)
		cancel()
		if err == nil {
			return str, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: %s has no reachable device", ErrUnavailable, to)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}
