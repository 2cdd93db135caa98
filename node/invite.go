package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parley-chat/parley/protocol"
)

// Short invites (protocol/invite.go): the link carries the user ID, this
// device's peer ID and one or two addresses, and the device's invite
// secret; the friend's node fetches the card from this device on
// cardProtocol and checks it against the user ID. The secret is derived
// from the device's host key, so the links a device handed out stay valid
// across restarts (there is no revoking one yet: it is as long-lived as
// the card link it replaces).

// cardProtocol serves the own card to holders of a short invite.
const cardProtocol = "/parley/card/1.0.0"

// Bounds on the card protocol.
const (
	// cardTimeout bounds one exchange, on either side.
	cardTimeout = 10 * time.Second
	// cardBurst requests per cardWindow per peer are answered; more are
	// answered CardThrottled. refusedBurst refused requests per
	// cardWindow from all peers together are answered; after that every
	// request is throttled until the window ends, so guessing secrets
	// from many peers gains nothing either.
	cardBurst    = 10
	refusedBurst = 100
	cardWindow   = 10 * time.Minute
)

// Errors of adding a friend by invite.
var (
	// ErrBadInvite is an invite link that does not parse (neither form).
	// It wraps ErrInvalid.
	ErrBadInvite = &Error{Code: CodeBadInvite, Message: "not a Parley invite link", Err: ErrInvalid}
	// ErrInviteRefused is a short invite the inviter's device refused (a
	// wrong secret, or it is not that user's device), or answered with a
	// card that is not the invite's user's. It wraps ErrInvalid.
	ErrInviteRefused = &Error{Code: CodeInviteRefused, Message: "the inviter's device refused this invite", Err: ErrInvalid}
)

// errCardUnreachable is a card fetch that did not get an answer (or was
// throttled): the directory may still know the user.
var errCardUnreachable = errors.New("node: the inviter's device did not answer")

// inviter is the part that serves the own card on cardProtocol and
// fetches friends' cards for short invites. It has no lock of its own:
// its limiters have theirs.
type inviter struct {
	cfg    Config
	log    *slog.Logger
	me     protocol.ID
	host   host.Host
	keys   *keyring
	secret protocol.InviteSecret
	track  *tracker

	perPeer windowLimit[peer.ID]
	refused windowLimit[struct{}]
}

func newInviter(cfg Config, log *slog.Logger, me protocol.ID, h host.Host, keys *keyring, seed []byte, track *tracker) *inviter {
	return &inviter{
		cfg: cfg, log: log, me: me, host: h, keys: keys, track: track,
		secret:  protocol.DeriveInviteSecret(seed),
		perPeer: windowLimit[peer.ID]{burst: cardBurst, window: cardWindow},
		refused: windowLimit[struct{}]{burst: refusedBurst, window: cardWindow},
	}
}

// serve answers cardProtocol streams until ctx ends.
func (iv *inviter) serve(ctx context.Context) error {
	iv.host.SetStreamHandler(cardProtocol, iv.handle)
	<-ctx.Done()
	iv.host.RemoveStreamHandler(cardProtocol)
	return nil
}

// link is the own short invite: up to protocol.MaxInviteAddrs of the
// card's addresses (public first).
func (iv *inviter) link() (string, error) {
	var addrs [][]byte
	for _, s := range iv.keys.cardAddrs() {
		a, err := ma.NewMultiaddr(s)
		if err != nil || len(a.Bytes()) > protocol.MaxInviteAddrSize {
			continue
		}
		addrs = append(addrs, a.Bytes())
		if len(addrs) == protocol.MaxInviteAddrs {
			break
		}
	}
	inv, err := protocol.NewInvite(iv.me, iv.secret, []byte(iv.host.ID()), addrs)
	if err != nil {
		return "", fmt.Errorf("node: invite: %w", err)
	}
	return inv.URI(), nil
}

// handle answers one card request.
func (iv *inviter) handle(str network.Stream) {
	if !iv.track.enter() {
		str.Reset()
		return
	}
	defer iv.track.leave()
	defer str.Close()
	remote := str.Conn().RemotePeer()
	str.SetDeadline(time.Now().Add(cardTimeout))
	req, err := protocol.ReadCardRequest(bufio.NewReaderSize(str, 64))
	if err != nil {
		iv.log.Debug("card request does not parse", "peer", remote.String(), "err", err)
		str.Reset()
		return
	}
	now := iv.cfg.Now()
	code, card := protocol.CardThrottled, []byte(nil)
	switch {
	case !iv.perPeer.admit(remote, now), iv.refusing(now):
	case !req.Matches(iv.me, iv.secret):
		iv.refused.admit(struct{}{}, now)
		code = protocol.CardRefused
		iv.log.Info("card request refused: not this user's invite", "peer", remote.String())
	default:
		c, err := iv.keys.ownCard()
		if err != nil {
			iv.log.Error("own card", "err", err)
			str.Reset()
			return
		}
		code, card = protocol.CardOK, c.Marshal()
	}
	if err := protocol.WriteCardResponse(str, code, card); err != nil {
		str.Reset()
	}
}

// refusing reports whether the refused-request limit of all peers is
// spent: then even a right secret is throttled until the window ends.
func (iv *inviter) refusing(now time.Time) bool {
	iv.refused.mu.Lock()
	defer iv.refused.mu.Unlock()
	c := iv.refused.seen[struct{}{}]
	return c != nil && now.Sub(c.start) < cardWindow && now.Sub(c.start) >= 0 && c.n >= refusedBurst
}

// fetch asks the invite's device for its user's card and checks it: the
// card must be the invite's user's (ParseCard checked that its key is
// theirs). ErrInviteRefused when the device refuses or answers with
// another card; errCardUnreachable when it cannot be asked or is busy.
func (iv *inviter) fetch(ctx context.Context, inv *protocol.Invite) (*protocol.Card, error) {
	pid, err := peer.IDFromBytes(inv.Device)
	if err != nil {
		return nil, fmt.Errorf("%w: device: %v", ErrBadInvite, err)
	}
	if pid == iv.host.ID() {
		return nil, fmt.Errorf("%w: that is your own invite", ErrInvalid)
	}
	var addrs []ma.Multiaddr
	for _, b := range inv.Addrs {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			return nil, fmt.Errorf("%w: address: %v", ErrBadInvite, err)
		}
		addrs = append(addrs, a)
	}
	iv.host.Peerstore().AddAddrs(pid, addrs, peerstore.TempAddrTTL)
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	str, err := iv.host.NewStream(ctx, pid, cardProtocol)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCardUnreachable, err)
	}
	defer str.Close()
	if d, ok := ctx.Deadline(); ok {
		str.SetDeadline(d)
	}
	if err := protocol.WriteCardRequest(str, &protocol.CardRequest{UserID: inv.UserID, Secret: inv.Secret}); err != nil {
		str.Reset()
		return nil, fmt.Errorf("%w: %v", errCardUnreachable, err)
	}
	str.CloseWrite()
	code, raw, err := protocol.ReadCardResponse(bufio.NewReader(str))
	switch {
	case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrTooLarge):
		return nil, fmt.Errorf("%w: its answer does not parse", ErrInviteRefused)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", errCardUnreachable, err)
	case code == protocol.CardRefused:
		return nil, ErrInviteRefused
	case code == protocol.CardThrottled:
		return nil, fmt.Errorf("%w: it is busy", errCardUnreachable)
	}
	c, err := protocol.ParseCard(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: its card does not verify: %v", ErrInviteRefused, err)
	}
	if c.UserID != inv.UserID {
		return nil, fmt.Errorf("%w: it answered with the card of another user (%s)", ErrInviteRefused, c.UserID)
	}
	return c, nil
}

// addByInvite adds the user of a short invite: from the card their device
// gives, or, when it cannot be reached, from their directory record.
func (n *Node) addByInvite(ctx context.Context, s *unlocked, link string) (Friend, error) {
	inv, err := protocol.ParseInviteURI(link)
	if err != nil {
		return Friend{}, fmt.Errorf("%w: %v", ErrBadInvite, err)
	}
	if inv.UserID == s.me {
		return Friend{}, fmt.Errorf("%w: that is your own invite", ErrInvalid)
	}
	c, err := s.invites.fetch(ctx, inv)
	if errors.Is(err, errCardUnreachable) {
		s.log.Info("inviter's device did not answer; asking the directory", "user", inv.UserID.String(), "err", err)
		f, derr := n.AddFriendByID(ctx, inv.UserID)
		if derr != nil {
			return Friend{}, fmt.Errorf("%w: the inviter's device did not answer and the directory did not help: %v", ErrUnavailable, derr)
		}
		return f, nil
	}
	if err != nil {
		return Friend{}, err
	}
	return s.friends.addContact(ctx, contact{UserID: c.UserID, Name: c.Name, Key: c.Key, Genesis: c.Genesis, Card: c.URI()})
}
