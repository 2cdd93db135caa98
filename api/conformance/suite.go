// Package conformance is the suite every implementation of the API's
// capabilities passes (Run), in the way of kubo's coreiface tests: the
// node in process (cmd/parley's adapter) and api/client over HTTP against
// a real node. Nothing but tests imports it.
package conformance

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
)

// Impl is what the shared suite drives: every capability of the API but
// Lifecycle. cmd/parley's adapter of the node implements it in process,
// and api/client over HTTP.
type Impl interface {
	api.Auth
	api.Account
	api.Peers
	api.Friends
	api.Messages
	api.Directory
	api.Events
}

// Setup gives the suite two real nodes in state new, on 127.0.0.1, that
// can reach each other, each through an Impl. It cleans up with t.
type Setup func(t *testing.T) (alice, bob Impl)

// Passphrase is the passphrase the suite registers with.
const Passphrase = "correct horse battery staple"

// wait bounds every wait of the suite.
const wait = 20 * time.Second

// Run is the suite every implementation of the API passes, in the way of
// kubo's coreiface tests: register and login, friends (add, accept,
// verify, remove), send and history, conversations and read receipts,
// directory lookups, events, and the error code of each refusal. It asserts
// only what both implementations must give the same.
func Run(t *testing.T, setup Setup) {
	ctx := context.Background()
	a, b := setup(t)

	// Register and login.
	ma, err := a.Register(ctx, "Alice", []byte(Passphrase))
	if err != nil {
		t.Fatalf("Register Alice: %v", err)
	}
	mb, err := b.Register(ctx, "Bob", []byte(Passphrase))
	if err != nil {
		t.Fatalf("Register Bob: %v", err)
	}
	if len(ma.UserID) != 52 || ma.Name != "Alice" || ma.PeerID == "" || !strings.HasPrefix(ma.Invite, "parley:") || ma.Fingerprint == "" || len(ma.Addrs) == 0 {
		t.Errorf("Register = %+v", ma)
	}
	_, err = a.Register(ctx, "Alice", []byte(Passphrase))
	WantCode(t, "a second Register", err, api.CodeConflict)
	_, err = a.Unlock(ctx, []byte("not the passphrase"))
	WantCode(t, "login with a wrong passphrase", err, api.CodeBadPassphrase)
	if me, err := a.Unlock(ctx, []byte(Passphrase)); err != nil || !sameUser(me, ma) {
		t.Errorf("login = %+v, %v; want %+v", me, err, ma)
	}
	if me, err := a.Me(ctx); err != nil || !sameUser(me, ma) {
		t.Errorf("Me = %+v, %v; want %+v", me, err, ma)
	}
	info, err := a.NodeInfo(ctx)
	if err != nil || info.PeerID != ma.PeerID || len(info.Addrs) == 0 || !slices.Contains([]string{"unknown", "public", "private"}, info.Reachability) {
		t.Errorf("NodeInfo = %+v, %v", info, err)
	}
	WantCode(t, "Connect to a bad address", a.Connect(ctx, "/not/a/multiaddr"), api.CodeBadRequest)

	aEvents, aCancel := a.Subscribe(ctx)
	defer aCancel()
	bEvents, bCancel := b.Subscribe(ctx)
	defer bCancel()

	// Friends: a request by invite, accepted by user ID.
	f, err := a.AddFriend(ctx, mb.Invite)
	if err != nil || f.UserID != mb.UserID || f.Name != "Bob" || f.Status != "pending_out" {
		t.Fatalf("AddFriend = %+v, %v", f, err)
	}
	if rf, _ := NextEvent(t, bEvents, api.EventFriendRequest).Data.(api.Friend); rf.UserID != ma.UserID || rf.Name != "Alice" || rf.Status != "pending_in" {
		t.Errorf("friend_request data = %+v", rf)
	}
	if f, err = b.AddFriendByID(ctx, ma.UserID); err != nil || f.Status != "accepted" {
		t.Fatalf("accepting by AddFriendByID = %+v, %v", f, err)
	}
	if af, _ := NextEvent(t, aEvents, api.EventFriendAccepted).Data.(api.Friend); af.UserID != mb.UserID || af.Status != "accepted" {
		t.Errorf("friend_accepted data = %+v", af)
	}
	fa, err := a.Friends(ctx)
	if err != nil || len(fa) != 1 || fa[0].UserID != mb.UserID || fa[0].Status != "accepted" || fa[0].Verified {
		t.Fatalf("Friends = %+v, %v", fa, err)
	}
	fb, err := b.Friends(ctx)
	if err != nil || len(fb) != 1 || fb[0].SafetyNumber != fa[0].SafetyNumber || !safetyNumber.MatchString(fa[0].SafetyNumber) {
		t.Errorf("Bob's friends %+v, %v: want the same safety number as Alice's, in twelve groups of five", fb, err)
	}
	WantCode(t, "VerifyFriend with another number", a.VerifyFriend(ctx, mb.UserID, "00000 00000"), api.CodeConflict)
	if err := a.VerifyFriend(ctx, mb.UserID, fa[0].SafetyNumber); err != nil {
		t.Errorf("VerifyFriend with the number shown: %v", err)
	}
	if fa, _ = a.Friends(ctx); len(fa) != 1 || !fa[0].Verified {
		t.Errorf("after VerifyFriend: %+v", fa)
	}

	// Send, history, conversations, read.
	sent, err := a.Send(ctx, mb.UserID, "hello, Bob")
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(sent.ID) != 32 || sent.From != ma.UserID || sent.To != mb.UserID || sent.Text != "hello, Bob" || sent.Direction != "out" || sent.ReceivedAt != nil {
		t.Errorf("sent = %+v", sent)
	}
	got, _ := NextEvent(t, bEvents, api.EventMessage).Data.(api.Message)
	if got.ID != sent.ID || got.From != ma.UserID || got.To != mb.UserID || got.Text != "hello, Bob" || got.Direction != "in" ||
		got.ReceivedAt == nil || got.Path != "direct" || !got.SentAt.Equal(sent.SentAt) {
		t.Errorf("message event = %+v", got)
	}
	if st := waitStatus(t, aEvents, sent.ID, "delivered"); st.With != mb.UserID || st.Path != "direct" {
		t.Errorf("status event = %+v", st)
	}
	ms, next, err := a.Messages(ctx, mb.UserID, "", 10)
	if err != nil || len(ms) != 1 || next != "" || ms[0].ID != sent.ID || ms[0].Status != "delivered" {
		t.Errorf("Alice's history = %+v, %q, %v", ms, next, err)
	}
	cs, err := b.Conversations(ctx)
	if err != nil || len(cs) != 1 || cs[0].With != ma.UserID || cs[0].Name != "Alice" || cs[0].Unread != 1 ||
		cs[0].LastMessage == nil || cs[0].LastMessage.ID != sent.ID || cs[0].LastMessage.Direction != "in" ||
		cs[0].LastMessage.Text != "hello, Bob" || cs[0].LastMessage.At.IsZero() {
		t.Fatalf("Bob's conversations = %+v, %v", cs, err)
	}
	if err := b.MarkRead(ctx, ma.UserID, got.ID); err != nil {
		t.Fatalf("MarkRead: %v", err)
	}
	waitStatus(t, aEvents, sent.ID, "read")
	if cs, _ = b.Conversations(ctx); len(cs) != 1 || cs[0].Unread != 0 {
		t.Errorf("after MarkRead: %+v", cs)
	}
	if info, err := a.NodeInfo(ctx); err != nil || !slices.Contains(info.ConnectedPeers, mb.PeerID) {
		t.Errorf("connected peers %+v, %v: want %s", info, err, mb.PeerID)
	}

	// Directory: a malformed ID is refused; Bob's signed record is found
	// and verified, by user ID and by name (once the DHT has it).
	_, err = a.LookupUser(ctx, "not-a-user-id")
	WantCode(t, "LookupUser of a malformed ID", err, api.CodeBadRequest)
	var entry api.DirectoryEntry
	eventually(t, "Bob's directory record", func() bool {
		entry, err = a.LookupUser(ctx, mb.UserID)
		return err == nil
	})
	if entry.UserID != mb.UserID || entry.Name != "Bob" || entry.Fingerprint != mb.Fingerprint || !slices.Contains(entry.Devices, mb.PeerID) || entry.Seq == 0 {
		t.Errorf("LookupUser = %+v", entry)
	}
	eventually(t, "Bob found by name", func() bool {
		rs, err := a.SearchDirectory(ctx, "Bob")
		return err == nil && slices.ContainsFunc(rs, func(r api.SearchResult) bool {
			return r.UserID == mb.UserID && r.Name == "Bob" && r.Fingerprint == mb.Fingerprint && r.Friend
		})
	})

	// Refusals, with the same code through either implementation.
	stranger := strings.Repeat("a", 52)
	_, err = a.Send(ctx, "not-a-user-id", "hi")
	WantCode(t, "Send to a malformed ID", err, api.CodeBadRequest)
	_, err = a.Send(ctx, stranger, "hi")
	WantCode(t, "Send to a stranger", err, api.CodeNotFound, api.CodeBadRequest)
	_, _, err = a.Messages(ctx, "not-a-user-id", "", 10)
	WantCode(t, "Messages of a malformed ID", err, api.CodeBadRequest)
	_, err = a.AddFriend(ctx, "parley:nonsense")
	WantCode(t, "AddFriend with a bad invite", err, api.CodeBadInvite)
	_, err = a.AddFriend(ctx, ma.Invite)
	WantCode(t, "AddFriend with one's own invite", err, api.CodeBadRequest)

	// Remove.
	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatalf("RemoveFriend: %v", err)
	}
	if rf, _ := NextEvent(t, aEvents, api.EventFriendRemoved).Data.(api.Friend); rf.UserID != mb.UserID {
		t.Errorf("friend_removed data = %+v", rf)
	}
	if fa, err = a.Friends(ctx); err != nil || slices.ContainsFunc(fa, func(f api.Friend) bool { return f.UserID == mb.UserID && f.Status == "accepted" }) {
		t.Errorf("after RemoveFriend: %+v, %v", fa, err)
	}
	WantCode(t, "RemoveFriend again", a.RemoveFriend(ctx, mb.UserID), api.CodeNotFound)

	// Cancel ends a stream, and so does the end of its context.
	aCancel()
	Drained(t, aEvents)
	cctx, end := context.WithCancel(ctx)
	cEvents, cCancel := b.Subscribe(cctx)
	defer cCancel()
	end()
	Drained(t, cEvents)
}

// safetyNumber is a safety number as the API shows it.
var safetyNumber = regexp.MustCompile(`^[0-9]{5}( [0-9]{5}){11}$`)

// sameUser reports whether two answers name the same user and device.
func sameUser(x, y api.Me) bool {
	return x.UserID == y.UserID && x.Name == y.Name && x.PeerID == y.PeerID && x.Fingerprint == y.Fingerprint && x.Invite != ""
}

// eventually polls cond until it holds, failing t when wait passes first.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", wait, what)
		}
		<-tick.C
	}
}

// WantCode fails unless err is an *api.Error with one of codes.
func WantCode(t testing.TB, what string, err error, codes ...api.Code) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || !slices.Contains(codes, ae.Code) {
		t.Errorf("%s: err = %v, want code %v", what, err, codes)
	}
}

// NextEvent returns the next event of type typ, skipping others.
func NextEvent(t testing.TB, ch <-chan api.Event, typ api.EventType) api.Event {
	t.Helper()
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream closed while waiting for %s", typ)
			}
			if ev.Type == typ {
				return ev
			}
		case <-timeout.C:
			t.Fatalf("no %s event within %v", typ, wait)
		}
	}
}

// waitStatus waits for the message_status event that says id is status,
// and returns it.
func waitStatus(t testing.TB, ch <-chan api.Event, id, status string) api.StatusChange {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if st, _ := NextEvent(t, ch, api.EventMessageStatus).Data.(api.StatusChange); st.ID == id && st.Status == status {
			return st
		}
	}
	t.Fatalf("message %s never %s", id, status)
	return api.StatusChange{}
}

// Drained reads ch until it is closed.
func Drained(t testing.TB, ch <-chan api.Event) {
	t.Helper()
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout.C:
			t.Fatal("event stream not closed")
		}
	}
}
