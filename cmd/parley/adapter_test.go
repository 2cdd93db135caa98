package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/api/conformance"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestAPIError: a node error reaches the API with the node's code and
// message; anything else passes through, for a 500 without its text.
func TestAPIError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", node.ErrBadPassphrase)
	var ae *api.Error
	if !errors.As(apiError(err), &ae) || ae.Code != api.CodeBadPassphrase || ae.Message != node.ErrBadPassphrase.Message || !errors.Is(ae, node.ErrBadPassphrase) {
		t.Errorf("apiError(%v) = %#v", err, ae)
	}
	for _, err := range []error{nil, errors.New("disk on fire"), context.Canceled} {
		if got := apiError(err); got != err {
			t.Errorf("apiError(%v) = %v, want it unchanged", err, got)
		}
	}
	// Every code of the node is one the API answers with (else a 500).
	for _, e := range []*node.Error{node.ErrWrongState, node.ErrExists, node.ErrBadPassphrase, node.ErrWeakPassphrase,
		node.ErrInvalid, node.ErrNotFound, node.ErrNotFriend, node.ErrTooLarge, node.ErrUnavailable, node.ErrKeyChanged,
		node.ErrKeyFork, node.ErrSafetyNumber, node.ErrClosed, node.ErrThrottled} {
		if !slices.Contains(api.Codes(), api.Code(e.Code)) || api.Code(e.Code).Status() == http.StatusInternalServerError {
			t.Errorf("node code %q of %v is not a client error code of the API", e.Code, e)
		}
	}
}

func TestAdapterLifecycle(t *testing.T) {
	ctx := context.Background()
	a := newNodeAPI(newTestNode(t, "alice-2048"))
	if a.State() != api.StateNew {
		t.Fatalf("state %s, want new", a.State())
	}
	_, err := a.Me(ctx)
	conformance.WantCode(t, "Me while new", err, api.CodeWrongState)
	_, err = a.Unlock(ctx, []byte(testPass))
	conformance.WantCode(t, "Unlock while new", err, api.CodeWrongState)
	_, err = a.Register(ctx, "Alice", []byte("short"))
	conformance.WantCode(t, "weak passphrase", err, api.CodeBadRequest)

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
	conformance.WantCode(t, "second Register", err, api.CodeConflict)

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
		conformance.WantCode(t, "wrong passphrase", err, api.CodeBadPassphrase)
	}
	_, err = a.Unlock(ctx, []byte(testPass))
	conformance.WantCode(t, "after five wrong passphrases", err, api.CodeThrottled)
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
		conformance.WantCode(t, "AddFriendByID "+bad, err, api.CodeBadRequest)
		_, err = a.LookupUser(ctx, bad)
		conformance.WantCode(t, "LookupUser "+bad, err, api.CodeBadRequest)
		conformance.WantCode(t, "RemoveFriend "+bad, a.RemoveFriend(ctx, bad), api.CodeBadRequest)
		conformance.WantCode(t, "VerifyFriend "+bad, a.VerifyFriend(ctx, bad), api.CodeBadRequest)
		_, err = a.Send(ctx, bad, "hi")
		conformance.WantCode(t, "Send "+bad, err, api.CodeBadRequest)
		_, _, err = a.Messages(ctx, bad, "", 10)
		conformance.WantCode(t, "Messages "+bad, err, api.CodeBadRequest)
		conformance.WantCode(t, "MarkRead "+bad, a.MarkRead(ctx, bad, ""), api.CodeBadRequest)
	}
	conformance.WantCode(t, "MarkRead bad up_to", a.MarkRead(ctx, stranger, "xyz"), api.CodeBadRequest)
	conformance.WantCode(t, "MarkRead unknown up_to", a.MarkRead(ctx, stranger, strings.Repeat("ab", 16)), api.CodeNotFound)
	_, _, err := a.Messages(ctx, stranger, "!!bad cursor!!", 10)
	conformance.WantCode(t, "Messages bad cursor", err, api.CodeBadRequest)
	_, err = a.Send(ctx, stranger, "hi")
	conformance.WantCode(t, "Send to a stranger", err, api.CodeNotFound)
	_, err = a.AddFriendByID(ctx, stranger)
	conformance.WantCode(t, "AddFriendByID a stranger without a directory record", err, api.CodeNotFound)
	conformance.WantCode(t, "RemoveFriend a stranger", a.RemoveFriend(ctx, stranger), api.CodeNotFound)
	_, err = a.AddFriend(ctx, "parley:nonsense")
	conformance.WantCode(t, "AddFriend bad invite", err, api.CodeBadInvite)
	_, err = a.AddFriend(ctx, "parley:invite/AAAA")
	conformance.WantCode(t, "AddFriend bad short invite", err, api.CodeBadInvite)
	for _, bad := range []string{"", "xyz", strings.Repeat("ab", 17)} {
		_, err = a.RetryMessage(ctx, bad)
		conformance.WantCode(t, "RetryMessage "+bad, err, api.CodeBadRequest)
		conformance.WantCode(t, "DeleteMessage "+bad, a.DeleteMessage(ctx, bad), api.CodeBadRequest)
	}
	_, err = a.RetryMessage(ctx, strings.Repeat("ab", 16))
	conformance.WantCode(t, "RetryMessage unknown", err, api.CodeNotFound)
	conformance.WantCode(t, "DeleteMessage unknown", a.DeleteMessage(ctx, strings.Repeat("ab", 16)), api.CodeNotFound)
	_, err = a.Send(ctx, stranger, " \t ")
	conformance.WantCode(t, "Send white space", err, api.CodeEmptyText)
	me, _ := a.Me(ctx)
	_, err = a.AddFriend(ctx, me.Invite)
	conformance.WantCode(t, "AddFriend own invite", err, api.CodeBadRequest)
	conformance.WantCode(t, "Connect bad addr", a.Connect(ctx, "/not/a/multiaddr"), api.CodeBadRequest)
	ms, next, err := a.Messages(ctx, stranger, "", 10)
	if err != nil || len(ms) != 0 || next != "" {
		t.Errorf("Messages with a stranger = %v, %q, %v; want none", ms, next, err)
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
