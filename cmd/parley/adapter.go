package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// nodeAPI adapts a *node.Node to api.Node: it parses the IDs the API
// speaks, converts node and store types to the API's, and maps the node's
// sentinel errors to *api.Error codes.
type nodeAPI struct {
	n *node.Node
}

var _ api.Node = (*nodeAPI)(nil)

func newNodeAPI(n *node.Node) *nodeAPI { return &nodeAPI{n: n} }

// State maps the node's state to the API's; a node closing or closed
// serves nothing more, as a locked one does not.
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
	id, err := parseUserID("user_id", userID)
	if err != nil {
		return api.Friend{}, err
	}
	f, err := a.n.AddFriendByID(ctx, id)
	if err != nil {
		return api.Friend{}, apiError(err)
	}
	return toAPIFriend(f), nil
}

func (a *nodeAPI) RemoveFriend(ctx context.Context, userID string) error {
	id, err := parseUserID("user_id", userID)
	if err != nil {
		return err
	}
	return apiError(a.n.RemoveFriend(ctx, id))
}

func (a *nodeAPI) VerifyFriend(ctx context.Context, userID string, safetyNumber ...string) error {
	id, err := parseUserID("user_id", userID)
	if err != nil {
		return err
	}
	if len(safetyNumber) > 1 {
		return &api.Error{Code: api.CodeBadRequest, Message: "give at most one safety number"}
	}
	// The number as the API shows it, in groups of five: the node takes
	// the digits alone.
	var number []string
	for _, n := range safetyNumber {
		number = append(number, strings.Join(strings.Fields(n), ""))
	}
	err = a.n.VerifyFriend(ctx, id, number...)
	if errors.Is(err, node.ErrSafetyNumber) {
		return &api.Error{
			Code:    api.CodeConflict,
			Message: "that is not the current safety number: compare the number shown now, then confirm it",
			Err:     err,
		}
	}
	return apiError(err)
}

func (a *nodeAPI) BlockFriend(ctx context.Context, userID string) (api.Friend, error) {
	id, err := parseUserID("user_id", userID)
	if err != nil {
		return api.Friend{}, err
	}
	f, err := a.n.BlockFriend(ctx, id)
	if err != nil {
		return api.Friend{}, apiError(err)
	}
	return toAPIFriend(f), nil
}

func (a *nodeAPI) Send(ctx context.Context, to, text string) (api.Message, error) {
	id, err := parseUserID("to", to)
	if err != nil {
		return api.Message{}, err
	}
	m, err := a.n.Send(ctx, id, text)
	if err != nil {
		return api.Message{}, apiError(err)
	}
	return toAPIMessage(m), nil
}

func (a *nodeAPI) Messages(ctx context.Context, with, before string, limit int) ([]api.Message, string, error) {
	id, err := parseUserID("with", with)
	if err != nil {
		return nil, "", err
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
	id, err := parseUserID("with", with)
	if err != nil {
		return err
	}
	var msgID protocol.MsgID
	if upTo != "" {
		if msgID, err = protocol.ParseMsgID(upTo); err != nil {
			return &api.Error{Code: api.CodeBadRequest, Message: "up_to is not a message ID (32 hex digits)", Err: err}
		}
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

// parseMsgID parses a message ID the client gave in field; a malformed one
// is a bad request.
func parseMsgID(field, s string) (protocol.MsgID, error) {
	id, err := protocol.ParseMsgID(s)
	if err != nil {
		return id, &api.Error{Code: api.CodeBadRequest, Message: field + " is not a message ID (32 hex digits)", Err: err}
	}
	return id, nil
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
	status := string(f.Status)
	if f.ChangedKey != nil {
		status = "key_changed"
	}
	return api.Friend{
		UserID:       f.UserID.String(),
		Name:         f.Name,
		Status:       status,
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

// parseUserID parses a user ID the client gave in field; a malformed one
// is a bad request.
func parseUserID(field, s string) (protocol.ID, error) {
	id, err := protocol.ParseID(s)
	if err != nil {
		return id, &api.Error{Code: api.CodeBadRequest, Message: field + " is not a user ID (52 base32 characters)", Err: err}
	}
	return id, nil
}

// apiError maps the node's sentinel errors to *api.Error; other errors
// (nil included) pass through, and the API answers them 500 without
// their text.
func apiError(err error) error {
	if err == nil {
		return nil
	}
	var te *node.ThrottledError
	code := api.Code("")
	msg := ""
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &te):
		return &api.Error{
			Code:       api.CodeThrottled,
			Message:    fmt.Sprintf("too many wrong passphrases: try again in %d s", api.RetryAfterSeconds(te.RetryAfter)),
			RetryAfter: te.RetryAfter,
			Err:        err,
		}
	case errors.Is(err, node.ErrClosed):
		code, msg = api.CodeUnavailable, "the node is shutting down"
	case errors.Is(err, node.ErrBadPassphrase):
		code, msg = api.CodeBadPassphrase, "wrong passphrase"
	case errors.Is(err, node.ErrExists):
		code, msg = api.CodeConflict, "an identity already exists on this node"
	case errors.Is(err, node.ErrWrongState):
		code = api.CodeWrongState
	case errors.Is(err, node.ErrEmptyMessage):
		code, msg = api.CodeEmptyMessage, "the message is empty or only white space"
	case errors.Is(err, node.ErrBadInvite):
		code = api.CodeBadInvite
	case errors.Is(err, node.ErrInviteRefused):
		code = api.CodeInviteRefused
	case errors.Is(err, node.ErrNotRetryable):
		code = api.CodeNotRetryable
	case errors.Is(err, node.ErrRemovedByPeer):
		code = api.CodeRemovedByPeer
	case errors.Is(err, node.ErrWeakPassphrase), errors.Is(err, node.ErrInvalid):
		code = api.CodeBadRequest
	case errors.Is(err, node.ErrNotFound), errors.Is(err, node.ErrNotFriend):
		code = api.CodeNotFound
	case errors.Is(err, node.ErrTooLarge):
		code = api.CodeTooLarge
	case errors.Is(err, node.ErrKeyChanged), errors.Is(err, node.ErrKeyFork):
		code = api.CodeKeyChanged
	case errors.Is(err, node.ErrUnavailable):
		code = api.CodeUnavailable
	default:
		return err
	}
	if msg == "" {
		msg = userMessage(err)
	}
	return &api.Error{Code: code, Message: msg, Err: err}
}

// maxMessage bounds an error message shown to the user.
const maxMessage = 300

// userMessage is the text of a node error for the user: without the
// package prefixes, on one line, not too long. The node's errors name
// IDs, sizes and network causes, never content, keys or passphrases.
func userMessage(err error) string {
	s := strings.ReplaceAll(err.Error(), "node: ", "")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
