package main

import (
	"context"
	"errors"
	"sync"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/node/audit"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// nodeAPI adapts a *node.Node to api.Node: it converts between the text
// forms the API speaks and the node's and store's types, and nothing
// more. The rules are the node's: which errors exist and their codes and
// messages (node.Error), a friend's shown status (Friend.ShownStatus),
// what a valid ID is (node.ParseUserID).
type nodeAPI struct {
	n     *node.Node
	audit *audit.Log // the audit log AuditLog reads (audit.go); nil: none
}

var _ api.Node = (*nodeAPI)(nil)

func newNodeAPI(n *node.Node) *nodeAPI { return &nodeAPI{n: n} }

// State maps the node's state to the API's; a node closing or closed
// serves nothing more, as a locked one does not.
func (a *nodeAPI) Owner() (name, userID string) { return a.n.Owner() }

func (a *nodeAPI) State() api.State {
	switch st := a.n.State(); st {
	case node.StateClosing, node.StateClosed:
		return api.StateLocked
	default:
		return api.State(st)
	}
}

func (a *nodeAPI) Register(ctx context.Context, name string, passphrase []byte) (api.Me, error) {
	if err := a.n.Register(ctx, name, passphrase); err != nil {
		return api.Me{}, apiError(err)
	}
	return a.Me(ctx)
}

func (a *nodeAPI) Unlock(ctx context.Context, passphrase []byte) (api.Me, error) {
	if err := a.n.Unlock(ctx, passphrase); err != nil {
		return api.Me{}, apiError(err)
	}
	return a.Me(ctx)
}

func (a *nodeAPI) Me(ctx context.Context) (api.Me, error) {
	me, err := a.n.Me(ctx)
	if err != nil {
		return api.Me{}, apiError(err)
	}
	return api.Me{
		UserID:      me.UserID.String(),
		Name:        me.Name,
		PeerID:      me.PeerID.String(),
		Addrs:       me.Addrs,
		Invite:      me.Invite,
		ShortInvite: me.ShortInvite,
		Fingerprint: me.Fingerprint,
	}, nil
}

func (a *nodeAPI) NodeInfo(ctx context.Context) (api.NodeInfo, error) {
	info, err := a.n.Info(ctx)
	if err != nil {
		return api.NodeInfo{}, apiError(err)
	}
	peers := make([]string, 0, len(info.ConnectedPeers))
	for _, p := range info.ConnectedPeers {
		peers = append(peers, p.String())
	}
	return api.NodeInfo{
		PeerID:         info.PeerID.String(),
		Addrs:          info.Addrs,
		ConnectedPeers: peers,
		Reachability:   reachability(info.Reachability),
	}, nil
}

// reachability names a libp2p reachability as the API does.
func reachability(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	default:
		return "unknown"
	}
}

func (a *nodeAPI) Connect(ctx context.Context, addr string) error {
	return apiError(a.n.Connect(ctx, addr))
}

func (a *nodeAPI) Friends(ctx context.Context) ([]api.Friend, error) {
	fs, err := a.n.Friends(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]api.Friend, 0, len(fs))
	for _, f := range fs {
		out = append(out, toAPIFriend(f))
	}
	return out, nil
}

func (a *nodeAPI) AddFriend(ctx context.Context, invite string) (api.Friend, error) {
	f, err := a.n.AddFriend(ctx, invite)
	if err != nil {
		return api.Friend{}, apiError(err)
	}
	return toAPIFriend(f), nil
}

func (a *nodeAPI) AddFriendByID(ctx context.Context, userID string) (api.Friend, error) {
	id, err := node.ParseUserID("user_id", userID)
	if err != nil {
		return api.Friend{}, apiError(err)
	}
	f, err := a.n.AddFriendByID(ctx, id)
	if err != nil {
		return api.Friend{}, apiError(err)
	}
	return toAPIFriend(f), nil
}

func (a *nodeAPI) RemoveFriend(ctx context.Context, userID string) error {
	id, err := node.ParseUserID("user_id", userID)
	if err != nil {
		return apiError(err)
	}
	return apiError(a.n.RemoveFriend(ctx, id))
}

func (a *nodeAPI) VerifyFriend(ctx context.Context, userID string, safetyNumber ...string) error {
	id, err := node.ParseUserID("user_id", userID)
	if err != nil {
		return apiError(err)
	}
	return apiError(a.n.VerifyFriend(ctx, id, safetyNumber...))
}

func (a *nodeAPI) BlockFriend(ctx context.Context, userID string) (api.Friend, error) {
	id, err := node.ParseUserID("user_id", userID)
	if err != nil {
		return api.Friend{}, apiError(err)
	}
	f, err := a.n.BlockFriend(ctx, id)
	if err != nil {
		return api.Friend{}, apiError(err)
	}
	return toAPIFriend(f), nil
}

func (a *nodeAPI) Send(ctx context.Context, to, text string) (api.Message, error) {
	id, err := node.ParseUserID("to", to)
	if err != nil {
		return api.Message{}, apiError(err)
	}
	m, err := a.n.Send(ctx, id, text)
	if err != nil {
		return api.Message{}, apiError(err)
	}
	return toAPIMessage(m), nil
}

func (a *nodeAPI) Messages(ctx context.Context, with, before string, limit int) ([]api.Message, string, error) {
	id, err := node.ParseUserID("with", with)
	if err != nil {
		return nil, "", apiError(err)
	}
	ms, next, err := a.n.Messages(ctx, id, store.Cursor(before), limit)
	if err != nil {
		return nil, "", apiError(err)
	}
	out := make([]api.Message, 0, len(ms))
	for _, m := range ms {
		out = append(out, toAPIMessage(m))
	}
	return out, string(next), nil
}

func (a *nodeAPI) Conversations(ctx context.Context) ([]api.Conversation, error) {
	cs, err := a.n.Conversations(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]api.Conversation, 0, len(cs))
	for _, c := range cs {
		out = append(out, toAPIConversation(c))
	}
	return out, nil
}

func (a *nodeAPI) MarkRead(ctx context.Context, with, upTo string) error {
	id, err := node.ParseUserID("with", with)
	if err != nil {
		return apiError(err)
	}
	msgID, err := node.ParseMsgID("up_to", upTo)
	if err != nil {
		return apiError(err)
	}
	return apiError(a.n.MarkRead(ctx, id, msgID))
}

func (a *nodeAPI) RetryMessage(ctx context.Context, msgID string) (api.Message, error) {
	id, err := parseMsgID("msg_id", msgID)
	if err != nil {
		return api.Message{}, err
	}
	m, err := a.n.RetryMessage(ctx, id)
	if err != nil {
		return api.Message{}, apiError(err)
	}
	return toAPIMessage(m), nil
}

func (a *nodeAPI) DeleteMessage(ctx context.Context, msgID string) error {
	id, err := parseMsgID("msg_id", msgID)
	if err != nil {
		return err
	}
	return apiError(a.n.DeleteMessage(ctx, id))
}

// parseMsgID parses the message ID of a message route, which names one
// message: "" is a bad request too (node.ParseMsgID reads it as none).
func parseMsgID(field, s string) (protocol.MsgID, error) {
	if s == "" {
		return protocol.MsgID{}, &api.Error{Code: api.CodeBadRequest, Message: field + " is required"}
	}
	id, err := node.ParseMsgID(field, s)
	return id, apiError(err)
}

// eventBuffer is how many converted events wait for a slow reader; behind
// it, the node's own buffer fills and the node reports an overflow.
const eventBuffer = 16

// Subscribe converts the node's events in a goroutine. It ends, and
// closes the channel, when the node closes its own (ctx ended or cancel
// was called), or at once on cancel or ctx's end while it waits for a
// reader that stopped reading; it never outlives the subscription.
func (a *nodeAPI) Subscribe(ctx context.Context) (<-chan api.Event, func()) {
	in, stop := a.n.Subscribe(ctx)
	out := make(chan api.Event, eventBuffer)
	done := make(chan struct{})
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			close(done)
			stop()
		})
	}
	go func() {
		defer close(out)
		for ev := range in {
			if ev.Type == node.EventEnvelopeRefused {
				continue // for the audit log, not the UI
			}
			select {
			case out <- toAPIEvent(ev):
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, cancel
}

// toAPIEvent converts one node event.
func toAPIEvent(ev node.Event) api.Event {
	e := api.Event{Type: api.EventType(ev.Type)}
	switch ev.Type {
	case node.EventMessage:
		e.Data = toAPIMessage(ev.Message)
	case node.EventMessageStatus:
		m := ev.Message
		e.Data = api.StatusChange{
			ID:     m.ID.String(),
			With:   m.Conversation.String(),
			Status: string(m.Status),
			Path:   string(m.Path),
			Error:  m.Error,
		}
	case node.EventMessageDeleted:
		e.Data = api.MessageDeleted{ID: ev.Message.ID.String(), With: ev.Message.Conversation.String()}
	case node.EventFriendRequest, node.EventFriendAccepted, node.EventFriendRemoved,
		node.EventFriendKeyRotated, node.EventFriendKeyChanged, node.EventKeyFork:
		e.Data = toAPIFriend(ev.Friend)
	case node.EventPeerOnline, node.EventPeerOffline:
		e.Data = api.Presence{UserID: ev.User.String(), PeerID: ev.Peer.String()}
	case node.EventGroupMessage:
		e.Data = toAPIGroupMessage(ev.GroupMessage, ev.Group.NameOf(ev.GroupMessage.From))
	case node.EventGroupUpdated, node.EventGroupRemoved:
		e.Data = toAPIGroup(ev.Group)
	}
	return e
}

func toAPIMessage(m store.Message) api.Message {
	am := api.Message{
		ID:        m.ID.String(),
		From:      m.From.String(),
		SentAt:    m.SentAt,
		Status:    string(m.Status),
		Direction: string(m.Direction),
		Path:      string(m.Path),
		Error:     m.Error,
	}
	if !m.To.IsZero() {
		am.To = m.To.String()
	}
	if utf8.Valid(m.Body) {
		am.Text = string(m.Body)
	}
	if m.Direction == store.In && !m.ReceivedAt.IsZero() {
		t := m.ReceivedAt
		am.ReceivedAt = &t
	}
	return am
}

func toAPIFriend(f node.Friend) api.Friend {
	return api.Friend{
		UserID:       f.UserID.String(),
		Name:         f.Name,
		Status:       string(f.ShownStatus()),
		Verified:     f.Verified,
		Online:       f.Online,
		SafetyNumber: formatSafetyNumber(f.SafetyNumber),
		KeyRotated:   f.KeyRotated,
		KeyFork:      f.Forked,
	}
}

// formatSafetyNumber groups a safety number in fives, as the fingerprint
// is grouped; "" stays "".
func formatSafetyNumber(n string) string {
	if n == "" {
		return ""
	}
	return protocol.FormatSafetyNumber(n)
}

func toAPIConversation(c node.Conversation) api.Conversation {
	ac := api.Conversation{With: c.With.String(), Name: c.Name, Unread: c.Unread}
	// The node gives Last whenever the conversation has a message (a
	// failed lookup is an error, not a missing Last): without it the
	// answer says "last_message": null rather than half a summary.
	if c.Last != nil {
		ac.LastMessage = &api.LastMessage{
			ID:        c.Last.ID.String(),
			Text:      c.LastPreview,
			At:        c.LastAt,
			Direction: string(c.Last.Direction),
			Status:    string(c.Last.Status),
		}
	}
	return ac
}

// apiError gives the API a node error with its code and message, as the
// node set them; other errors (nil included) pass through, and the API
// answers them 500 without their text.
func apiError(err error) error {
	var ne *node.Error
	if !errors.As(err, &ne) {
		return err
	}
	return &api.Error{Code: api.Code(ne.Code), Message: ne.Message, RetryAfter: ne.RetryAfter, Err: err}
}
