package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/api/conformance"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestAdapterGroups: malformed IDs are bad requests, unknown groups not
// found, a group of a stranger refused; a group of one friend-less user
// cannot be made.
func TestAdapterGroups(t *testing.T) {
	ctx := context.Background()
	a := newNodeAPI(registeredNode(t, "alice-2048", "Alice"))
	stranger := fixtureKey(t, "carol-2048").ID().String()
	unknown := strings.Repeat("ab", 32)
	for _, bad := range []string{"", "xyz", strings.Repeat("ab", 31), unknown + "ab"} {
		_, err := a.Group(ctx, bad)
		conformance.WantCode(t, "Group "+bad, err, api.CodeBadRequest)
		_, err = a.SendGroupMessage(ctx, bad, "hi")
		conformance.WantCode(t, "SendGroupMessage "+bad, err, api.CodeBadRequest)
		conformance.WantCode(t, "RemoveGroupMember "+bad, a.RemoveGroupMember(ctx, bad, stranger), api.CodeBadRequest)
	}
	_, err := a.Group(ctx, unknown)
	conformance.WantCode(t, "Group unknown", err, api.CodeNotFound)
	_, _, err = a.GroupMessages(ctx, unknown, "", 10)
	conformance.WantCode(t, "GroupMessages unknown", err, api.CodeNotFound)
	conformance.WantCode(t, "MarkGroupRead unknown", a.MarkGroupRead(ctx, unknown, ""), api.CodeNotFound)
	_, err = a.AddGroupMember(ctx, unknown, "not-an-id")
	conformance.WantCode(t, "AddGroupMember bad user", err, api.CodeBadRequest)
	_, err = a.CreateGroup(ctx, "x", []string{"not-an-id"})
	conformance.WantCode(t, "CreateGroup bad member", err, api.CodeBadRequest)
	_, err = a.CreateGroup(ctx, "x", []string{stranger})
	conformance.WantCode(t, "CreateGroup with a stranger", err, api.CodeNotFound)
	gs, err := a.Groups(ctx)
	if err != nil || len(gs) != 0 {
		t.Fatalf("Groups = %v, %v; want none", gs, err)
	}
}

func TestToAPIGroupEvents(t *testing.T) {
	me, bob := protocol.ID{1}, protocol.ID{2}
	gid := protocol.GroupID{9}
	last := store.GroupMessage{Group: gid, ID: protocol.MsgID{3}, From: bob, Body: []byte("hello"), Direction: store.In, SentAt: time.Unix(100, 0), ReceivedAt: time.Unix(101, 0)}
	info := node.GroupInfo{ID: gid, Name: "Pals", Epoch: 2, Unread: 1, Last: &last, Members: []node.GroupMemberInfo{
		{User: me, Name: "Alice", Role: "admin"}, {User: bob, Name: "Bob", Role: "member"},
	}}
	e := toAPIEvent(node.Event{Type: node.EventGroupMessage, Group: info, GroupMessage: last})
	m, ok := e.Data.(api.GroupMessage)
	if e.Type != api.EventGroupMessage || !ok || m.Name != "Bob" || m.Text != "hello" || m.GroupID != gid.String() || m.ReceivedAt == nil {
		t.Fatalf("group_message = %+v", e)
	}
	e = toAPIEvent(node.Event{Type: node.EventGroupRemoved, Group: node.GroupInfo{ID: gid, Name: "Pals", Removed: true}})
	g, ok := e.Data.(api.Group)
	if e.Type != api.EventGroupRemoved || !ok || !g.Removed || g.Members == nil || g.LastMessage != nil {
		t.Fatalf("group_removed = %+v", e)
	}
	g = toAPIGroup(info)
	if g.LastMessage == nil || g.LastMessage.Text != "hello" || g.LastMessage.Direction != "in" || len(g.Members) != 2 || g.Members[0].Role != "admin" {
		t.Fatalf("toAPIGroup = %+v", g)
	}
}
