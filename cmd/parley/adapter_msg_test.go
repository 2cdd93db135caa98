package main

import (
	"context"
	"strings"
	"testing"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/api/conformance"
)

// TestAdapterRemovalAndDelete befriends two nodes through the adapter by
// the short invite, then: A deletes a message (message_deleted), A
// removes B, B learns it from A's signed notice (friend_removed with
// status removed_by_peer) and may no longer send to A.
func TestAdapterRemovalAndDelete(t *testing.T) {
	ctx := context.Background()
	a := newNodeAPI(registeredNode(t, "alice-2048", "Alice"))
	b := newNodeAPI(registeredNode(t, "bob-2048", "Bob"))
	ma, _ := a.Me(ctx)
	mb, _ := b.Me(ctx)
	evCtx, evCancel := context.WithCancel(ctx)
	defer evCancel()
	bEvents, bCancel := b.Subscribe(evCtx)
	defer bCancel()
	aEvents, aCancel := a.Subscribe(evCtx)
	defer aCancel()

	if !strings.HasPrefix(mb.ShortInvite, "parley:invite/") || len(mb.ShortInvite) >= len(mb.Invite) {
		t.Fatalf("short invite %q (card link %d characters)", mb.ShortInvite, len(mb.Invite))
	}
	f, err := a.AddFriend(ctx, mb.ShortInvite) // the card comes from B's node
	if err != nil || f.UserID != mb.UserID || f.Name != "Bob" || f.Status != "pending_out" {
		t.Fatalf("AddFriend by short invite = %+v, %v", f, err)
	}
	conformance.NextEvent(t, bEvents, api.EventFriendRequest)
	if _, err := b.AddFriendByID(ctx, ma.UserID); err != nil {
		t.Fatal(err)
	}
	conformance.NextEvent(t, aEvents, api.EventFriendAccepted)

	sent, err := a.Send(ctx, mb.UserID, "hello, Bob")
	if err != nil {
		t.Fatal(err)
	}
	conformance.NextEvent(t, bEvents, api.EventMessage)
	if err := a.DeleteMessage(ctx, sent.ID); err != nil {
		t.Fatal(err)
	}
	if d := conformance.NextEvent(t, aEvents, api.EventMessageDeleted).Data.(api.MessageDeleted); d.ID != sent.ID || d.With != mb.UserID {
		t.Errorf("message_deleted data = %+v", d)
	}
	if ms, _, _ := a.Messages(ctx, mb.UserID, "", 10); len(ms) != 0 {
		t.Errorf("A's history after the delete: %+v", ms)
	}

	if err := a.RemoveFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	if rf := conformance.NextEvent(t, bEvents, api.EventFriendRemoved).Data.(api.Friend); rf.UserID != ma.UserID || rf.Status != "removed_by_peer" {
		t.Errorf("B's friend_removed data = %+v", rf)
	}
	_, err = b.Send(ctx, ma.UserID, "still there?")
	conformance.WantCode(t, "Send to a friend who removed us", err, api.CodeRemovedByPeer)
}
