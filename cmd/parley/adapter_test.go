package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

func TestAPIErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code api.Code
	}{
		{node.ErrWrongState, api.CodeWrongState},
		{fmt.Errorf("%w: node is locked", node.ErrWrongState), api.CodeWrongState},
		{node.ErrExists, api.CodeConflict},
		{node.ErrBadPassphrase, api.CodeBadPassphrase},
		{node.ErrWeakPassphrase, api.CodeBadRequest},
		{fmt.Errorf("%w: invite: bad", node.ErrInvalid), api.CodeBadRequest},
		{node.ErrNotFound, api.CodeNotFound},
		{fmt.Errorf("%w: someone", node.ErrNotFriend), api.CodeNotFound},
		{node.ErrTooLarge, api.CodeTooLarge},
		{fmt.Errorf("%w: dial failed", node.ErrUnavailable), api.CodeUnavailable},
		{node.ErrClosed, api.CodeUnavailable},
		{errors.Join(node.ErrClosed, errors.New("x")), api.CodeUnavailable},
		{&node.ThrottledError{RetryAfter: 1500 * time.Millisecond}, api.CodeThrottled},
		{fmt.Errorf("wrapped: %w", &node.ThrottledError{RetryAfter: time.Second}), api.CodeThrottled},
		{node.ErrEmptyMessage, api.CodeEmptyMessage},
		{fmt.Errorf("%w: x", node.ErrBadInvite), api.CodeBadInvite},
		{fmt.Errorf("%w: another user's card", node.ErrInviteRefused), api.CodeInviteRefused},
		{fmt.Errorf("%w: message x is delivered", node.ErrNotRetryable), api.CodeNotRetryable},
		{fmt.Errorf("%w: someone", node.ErrRemovedByPeer), api.CodeRemovedByPeer},
	} {
		got := apiError(tc.err)
		var ae *api.Error
		if !errors.As(got, &ae) {
			t.Errorf("apiError(%v) = %v, not an *api.Error", tc.err, got)
			continue
		}
		if ae.Code != tc.code {
			t.Errorf("apiError(%v).Code = %s, want %s", tc.err, ae.Code, tc.code)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("apiError(%v) does not wrap the cause", tc.err)
		}
		if ae.Message == "" || strings.Contains(ae.Message, "node: ") || strings.Contains(ae.Message, "\n") {
			t.Errorf("apiError(%v).Message = %q, want a clean one-line message", tc.err, ae.Message)
		}
		if tc.code == api.CodeThrottled && ae.RetryAfter <= 0 {
			t.Errorf("apiError(%v): no RetryAfter", tc.err)
		}
	}
	// Anything else passes through unchanged, for a 500 without its text.
	for _, err := range []error{nil, errors.New("disk on fire"), context.Canceled} {
		if got := apiError(err); got != err {
			t.Errorf("apiError(%v) = %v, want it unchanged", err, got)
		}
	}
	// The wait in the message agrees with the Retry-After header.
	if m := apiError(&node.ThrottledError{RetryAfter: 1500 * time.Millisecond}).(*api.Error).Message; !strings.HasSuffix(m, "try again in 2 s") {
		t.Errorf("throttled message %q, want it to end in \"try again in 2 s\"", m)
	}
	long := fmt.Errorf("%w: %s", node.ErrUnavailable, strings.Repeat("dial é ", 200))
	if m := apiError(long).(*api.Error).Message; len(m) > maxMessage+len("…") || !strings.HasSuffix(m, "…") {
		t.Errorf("long message not cut: %d bytes", len(m))
	}
}

// wantCode fails unless err is an *api.Error with code.
func wantCode(t *testing.T, what string, err error, code api.Code) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Errorf("%s: err = %v, want code %s", what, err, code)
	}
}

func TestAdapterLifecycle(t *testing.T) {
	ctx := context.Background()
	a := newNodeAPI(newTestNode(t, "alice-2048"))
	if a.State() != api.StateNew {
		t.Fatalf("state %s, want new", a.State())
	}
	_, err := a.Me(ctx)
	wantCode(t, "Me while new", err, api.CodeWrongState)
	_, err = a.Unlock(ctx, []byte(testPass))
	wantCode(t, "Unlock while new", err, api.CodeWrongState)
	_, err = a.Register(ctx, "Alice", []byte("short"))
	wantCode(t, "weak passphrase", err, api.CodeBadRequest)

	me, err := a.Register(ctx, "Alice", []byte(testPass))
	if err != nil {
		t.Fatal(err)
	}
	key := fixtureKey(t, "alice-2048")
	if me.UserID != key.ID().String() || me.Name != "Alice" || me.PeerID == "" ||
		!strings.HasPrefix(me.Invite, "parley:") || me.Fingerprint != key.ID().Fingerprint() || len(me.Addrs) == 0 {
		t.Errorf("Me after Register = %+v", me)
	}
	if a.State() != api.StateUnlocked {
		t.Errorf("state %s, want unlocked", a.State())
	}
	_, err = a.Register(ctx, "Alice", []byte(testPass))
	wantCode(t, "second Register", err, api.CodeConflict)

	me2, err := a.Unlock(ctx, []byte(testPass))
	if err != nil || me2.UserID != me.UserID {
		t.Errorf("second login: %+v, %v", me2, err)
	}
	info, err := a.NodeInfo(ctx)
	if err != nil || info.PeerID != me.PeerID || info.Reachability != "unknown" || len(info.Addrs) == 0 {
		t.Errorf("NodeInfo = %+v, %v", info, err)
	}
	for i := range 5 {
		_, err = a.Unlock(ctx, []byte("wrong passphrase "+fmt.Sprint(i)))
		wantCode(t, "wrong passphrase", err, api.CodeBadPassphrase)
	}
	_, err = a.Unlock(ctx, []byte(testPass))
	wantCode(t, "after five wrong passphrases", err, api.CodeThrottled)
	var ae *api.Error
	if errors.As(err, &ae) && (ae.RetryAfter <= 0 || ae.RetryAfter > time.Minute) {
		t.Errorf("RetryAfter = %v", ae.RetryAfter)
	}
}

func TestAdapterBadInput(t *testing.T) {
	ctx := context.Background()
	a := newNodeAPI(registeredNode(t, "alice-2048", "Alice"))
	stranger := fixtureKey(t, "carol-2048").ID().String()
	for _, bad := range []string{"", "not-an-id", strings.ToUpper(stranger[:51]) + "!", stranger + "a"} {
		_, err := a.AddFriendByID(ctx, bad)
		wantCode(t, "AddFriendByID "+bad, err, api.CodeBadRequest)
		_, err = a.LookupUser(ctx, bad)
		wantCode(t, "LookupUser "+bad, err, api.CodeBadRequest)
		wantCode(t, "RemoveFriend "+bad, a.RemoveFriend(ctx, bad), api.CodeBadRequest)
		wantCode(t, "VerifyFriend "+bad, a.VerifyFriend(ctx, bad), api.CodeBadRequest)
		_, err = a.Send(ctx, bad, "hi")
		wantCode(t, "Send "+bad, err, api.CodeBadRequest)
		_, _, err = a.Messages(ctx, bad, "", 10)
		wantCode(t, "Messages "+bad, err, api.CodeBadRequest)
		wantCode(t, "MarkRead "+bad, a.MarkRead(ctx, bad, ""), api.CodeBadRequest)
	}
	wantCode(t, "MarkRead bad up_to", a.MarkRead(ctx, stranger, "xyz"), api.CodeBadRequest)
	wantCode(t, "MarkRead unknown up_to", a.MarkRead(ctx, stranger, strings.Repeat("ab", 16)), api.CodeNotFound)
	_, _, err := a.Messages(ctx, stranger, "!!bad cursor!!", 10)
	wantCode(t, "Messages bad cursor", err, api.CodeBadRequest)
	_, err = a.Send(ctx, stranger, "hi")
	wantCode(t, "Send to a stranger", err, api.CodeNotFound)
	_, err = a.AddFriendByID(ctx, stranger)
	wantCode(t, "AddFriendByID a stranger without a directory record", err, api.CodeNotFound)
	wantCode(t, "RemoveFriend a stranger", a.RemoveFriend(ctx, stranger), api.CodeNotFound)
	_, err = a.AddFriend(ctx, "parley:nonsense")
	wantCode(t, "AddFriend bad invite", err, api.CodeBadInvite)
	_, err = a.AddFriend(ctx, "parley:invite/AAAA")
	wantCode(t, "AddFriend bad short invite", err, api.CodeBadInvite)
	for _, bad := range []string{"", "xyz", strings.Repeat("ab", 17)} {
		_, err = a.RetryMessage(ctx, bad)
		wantCode(t, "RetryMessage "+bad, err, api.CodeBadRequest)
		wantCode(t, "DeleteMessage "+bad, a.DeleteMessage(ctx, bad), api.CodeBadRequest)
	}
	_, err = a.RetryMessage(ctx, strings.Repeat("ab", 16))
	wantCode(t, "RetryMessage unknown", err, api.CodeNotFound)
	wantCode(t, "DeleteMessage unknown", a.DeleteMessage(ctx, strings.Repeat("ab", 16)), api.CodeNotFound)
	_, err = a.Send(ctx, stranger, " \t ")
	wantCode(t, "Send white space", err, api.CodeEmptyMessage)
	me, _ := a.Me(ctx)
	_, err = a.AddFriend(ctx, me.Invite)
	wantCode(t, "AddFriend own invite", err, api.CodeBadRequest)
	wantCode(t, "Connect bad addr", a.Connect(ctx, "/not/a/multiaddr"), api.CodeBadRequest)
	ms, next, err := a.Messages(ctx, stranger, "", 10)
	if err != nil || len(ms) != 0 || next != "" {
		t.Errorf("Messages with a stranger = %v, %q, %v; want none", ms, next, err)
	}
}

var safetyNumber = regexp.MustCompile(`^[0-9]{5}( [0-9]{5}){11}$`)

// TestAdapterTwoNodes befriends two nodes through the adapter and checks
// the conversions of friends, messages, conversations and events.
func TestAdapterTwoNodes(t *testing.T) {
	ctx := context.Background()
	a := newNodeAPI(registeredNode(t, "alice-2048", "Alice"))
	b := newNodeAPI(registeredNode(t, "bob-2048", "Bob"))
	ma, _ := a.Me(ctx)
	mb, _ := b.Me(ctx)

	evCtx, evCancel := context.WithCancel(ctx)
	defer evCancel()
	bEvents, bCancel := b.Subscribe(evCtx)
	aEvents, aCancel := a.Subscribe(evCtx)

	if !strings.HasPrefix(mb.ShortInvite, "parley:invite/") {
		t.Fatalf("short invite %q", mb.ShortInvite)
	}
	f, err := a.AddFriend(ctx, mb.ShortInvite) // the card comes from B's node
	if err != nil || f.UserID != mb.UserID || f.Name != "Bob" || f.Status != "pending_out" {
		t.Fatalf("AddFriend = %+v, %v", f, err)
	}
	req := nextEvent(t, bEvents, api.EventFriendRequest)
	if rf := req.Data.(api.Friend); rf.UserID != ma.UserID || rf.Status != "pending_in" || rf.Name != "Alice" {
		t.Errorf("friend_request data = %+v", rf)
	}
	f, err = b.AddFriendByID(ctx, ma.UserID)
	if err != nil || f.Status != "accepted" {
		t.Fatalf("AcceptFriend = %+v, %v", f, err)
	}
	nextEvent(t, aEvents, api.EventFriendAccepted)

	fa, err := a.Friends(ctx)
	if err != nil || len(fa) != 1 {
		t.Fatalf("Friends = %v, %v", fa, err)
	}
	fb, _ := b.Friends(ctx)
	if !safetyNumber.MatchString(fa[0].SafetyNumber) || fa[0].SafetyNumber != fb[0].SafetyNumber {
		t.Errorf("safety numbers %q and %q, want the same, in twelve groups of five", fa[0].SafetyNumber, fb[0].SafetyNumber)
	}
	// The number as shown (groups of five) verifies; another is a conflict.
	wantCode(t, "VerifyFriend with another number", a.VerifyFriend(ctx, mb.UserID, "00000 00000"), api.CodeConflict)
	if err := a.VerifyFriend(ctx, mb.UserID, fa[0].SafetyNumber); err != nil {
		t.Fatal(err)
	}
	if fa, _ = a.Friends(ctx); !fa[0].Verified {
		t.Error("friend not verified after VerifyFriend")
	}

	sent, err := a.Send(ctx, mb.UserID, "hello, Bob")
	if err != nil {
		t.Fatal(err)
	}
	if sent.From != ma.UserID || sent.To != mb.UserID || sent.Text != "hello, Bob" || sent.Direction != "out" ||
		sent.Status != "pending" || sent.ReceivedAt != nil || sent.SentAt.IsZero() || len(sent.ID) != 32 {
		t.Errorf("sent = %+v", sent)
	}
	got := nextEvent(t, bEvents, api.EventMessage).Data.(api.Message)
	if got.ID != sent.ID || got.From != ma.UserID || got.To != mb.UserID || got.Text != "hello, Bob" ||
		got.Direction != "in" || got.ReceivedAt == nil || got.Path != "direct" || !got.SentAt.Equal(sent.SentAt) {
		t.Errorf("message event = %+v", got)
	}
	st := nextEvent(t, aEvents, api.EventMessageStatus).Data.(api.StatusChange)
	if st.ID != sent.ID || st.With != mb.UserID || st.Status != "delivered" || st.Path != "direct" {
		t.Errorf("status event = %+v", st)
	}

	ms, next, err := a.Messages(ctx, mb.UserID, "", 10)
	if err != nil || len(ms) != 1 || next != "" || ms[0].Status != "delivered" || ms[0].ReceivedAt != nil {
		t.Errorf("sender's Messages = %+v, %q, %v", ms, next, err)
	}
	cs, err := b.Conversations(ctx)
	if err != nil || len(cs) != 1 {
		t.Fatalf("Conversations = %+v, %v", cs, err)
	}
	c := cs[0]
	if c.With != ma.UserID || c.Name != "Alice" || c.Unread != 1 || c.LastMessage == nil ||
		c.LastMessage.ID != sent.ID || c.LastMessage.Text != "hello, Bob" || c.LastMessage.Direction != "in" || c.LastMessage.At.IsZero() {
		t.Errorf("conversation = %+v, last %+v", c, c.LastMessage)
	}
	if err := b.MarkRead(ctx, ma.UserID, got.ID); err != nil {
		t.Fatal(err)
	}
	if st := nextEvent(t, aEvents, api.EventMessageStatus).Data.(api.StatusChange); st.Status != "read" {
		t.Errorf("status after read = %+v", st)
	}
	if cs, _ = b.Conversations(ctx); cs[0].Unread != 0 {
		t.Errorf("unread %d after MarkRead", cs[0].Unread)
	}
	info, _ := a.NodeInfo(ctx)
	if len(info.ConnectedPeers) == 0 || info.ConnectedPeers[0] != mb.PeerID {
		t.Errorf("connected peers %v, want %s", info.ConnectedPeers, mb.PeerID)
	}

	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	if rf := nextEvent(t, aEvents, api.EventFriendRemoved).Data.(api.Friend); rf.UserID != mb.UserID {
		t.Errorf("friend_removed data = %+v", rf)
	}
	// B learns it from A's notice, and may not send to A any more.
	if rf := nextEvent(t, bEvents, api.EventFriendRemoved).Data.(api.Friend); rf.UserID != ma.UserID || rf.Status != "removed_by_peer" {
		t.Errorf("B's friend_removed data = %+v", rf)
	}
	_, err = b.Send(ctx, ma.UserID, "still there?")
	wantCode(t, "Send to a friend who removed us", err, api.CodeRemovedByPeer)
	if err := a.DeleteMessage(ctx, sent.ID); err != nil {
		t.Fatal(err)
	}
	if d := nextEvent(t, aEvents, api.EventMessageDeleted).Data.(api.MessageDeleted); d.ID != sent.ID || d.With != mb.UserID {
		t.Errorf("message_deleted data = %+v", d)
	}

	// Both subscriptions end: by cancel, and by the context.
	aCancel()
	drained(t, aEvents)
	evCancel()
	drained(t, bEvents)
	bCancel()
}

// nextEvent returns the next event of type typ, skipping others (presence).
func nextEvent(t *testing.T, ch <-chan api.Event, typ api.EventType) api.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream closed while waiting for %s", typ)
			}
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", typ)
		}
	}
}

// drained reads ch until it is closed.
func drained(t *testing.T, ch <-chan api.Event) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("event stream not closed")
		}
	}
}

// TestAdapterSubscribeStalledReader checks that cancel ends the
// converting goroutine even when nobody reads and events keep coming.
func TestAdapterSubscribeStalledReader(t *testing.T) {
	ctx := context.Background()
	an := registeredNode(t, "alice-2048", "Alice")
	bn := registeredNode(t, "bob-2048", "Bob")
	a, b := newNodeAPI(an), newNodeAPI(bn)
	events, cancel := b.Subscribe(ctx)
	mb, _ := b.Me(ctx)
	ma, _ := a.Me(ctx)
	if _, err := a.AddFriend(ctx, mb.Invite); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the request", func() bool {
		fs, _ := b.Friends(ctx)
		return len(fs) == 1
	})
	if _, err := b.AddFriendByID(ctx, ma.UserID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "accepted", func() bool {
		fs, _ := a.Friends(ctx)
		return len(fs) == 1 && fs[0].Status == "accepted"
	})
	for i := range eventBuffer + 8 {
		if _, err := a.Send(ctx, mb.UserID, fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 15*time.Second, "all delivered", func() bool {
		ms, _, _ := b.Messages(ctx, ma.UserID, "", 100)
		return len(ms) == eventBuffer+8
	})
	cancel()
	n := 0
	timeout := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-events:
			n++
		case <-timeout:
			t.Fatal("event stream not closed after cancel")
		}
	}
	if n > eventBuffer+1 {
		t.Errorf("read %d events after cancel, want at most the buffer", n)
	}
}

// TestToAPIConversation checks the conversation summary: the newest
// message from Last, and "last_message": null without it (never a
// summary with an empty direction and status).
func TestToAPIConversation(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	sc := store.Conversation{LastMessage: protocol.MsgID{1}, LastPreview: "hello", LastAt: at, Unread: 2}
	c := toAPIConversation(node.Conversation{Conversation: sc, Name: "Bob"})
	if c.LastMessage != nil {
		t.Errorf("without Last: last message %+v, want nil", c.LastMessage)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"last_message":null`) {
		t.Errorf("without Last: %s, want \"last_message\":null", b)
	}

	last := &store.Message{ID: protocol.MsgID{1}, Direction: store.Out, Status: store.StatusDelivered}
	c = toAPIConversation(node.Conversation{Conversation: sc, Name: "Bob", Last: last})
	want := api.LastMessage{ID: last.ID.String(), Text: "hello", At: at, Direction: "out", Status: "delivered"}
	if c.LastMessage == nil || *c.LastMessage != want || c.Unread != 2 || c.Name != "Bob" {
		t.Errorf("with Last: %+v, last %+v; want last %+v", c, c.LastMessage, want)
	}
}
