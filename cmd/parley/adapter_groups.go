package main

import (
	"context"
	"unicode/utf8"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// The api.Groups capability of nodeAPI: IDs as text (group IDs in hex),
// node errors with their codes.

func (a *nodeAPI) CreateGroup(ctx context.Context, name string, members []string) (api.Group, error) {
	ids := make([]protocol.ID, 0, len(members))
	for _, m := range members {
		id, err := node.ParseUserID("members", m)
		if err != nil {
			return api.Group{}, apiError(err)
		}
		ids = append(ids, id)
	}
	g, err := a.n.CreateGroup(ctx, name, ids)
	if err != nil {
		return api.Group{}, apiError(err)
	}
	return toAPIGroup(g), nil
}

func (a *nodeAPI) Groups(ctx context.Context) ([]api.Group, error) {
	gs, err := a.n.Groups(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]api.Group, 0, len(gs))
	for _, g := range gs {
		out = append(out, toAPIGroup(g))
	}
	return out, nil
}

func (a *nodeAPI) Group(ctx context.Context, groupID string) (api.Group, error) {
	id, err := node.ParseGroupID("group_id", groupID)
	if err != nil {
		return api.Group{}, apiError(err)
	}
	g, err := a.n.Group(ctx, id)
	if err != nil {
		return api.Group{}, apiError(err)
	}
	return toAPIGroup(g), nil
}

func (a *nodeAPI) AddGroupMember(ctx context.Context, groupID, userID string) (api.Group, error) {
	id, user, err := groupAndUser(groupID, userID)
	if err != nil {
		return api.Group{}, err
	}
	g, err := a.n.AddGroupMember(ctx, id, user)
	if err != nil {
		return api.Group{}, apiError(err)
	}
	return toAPIGroup(g), nil
}

func (a *nodeAPI) RemoveGroupMember(ctx context.Context, groupID, userID string) error {
	id, user, err := groupAndUser(groupID, userID)
	if err != nil {
		return err
	}
	return apiError(a.n.RemoveGroupMember(ctx, id, user))
}

func (a *nodeAPI) SendGroupMessage(ctx context.Context, groupID, text string) (api.SendMessageResponse, error) {
	id, err := node.ParseGroupID("group_id", groupID)
	if err != nil {
		return api.SendMessageResponse{}, apiError(err)
	}
	m, pending, err := a.n.SendGroup(ctx, id, text)
	if err != nil {
		return api.SendMessageResponse{}, apiError(err)
	}
	status := string(store.StatusSent)
	if pending {
		status = string(store.StatusPending)
	}
	return api.SendMessageResponse{ID: m.ID.String(), Status: status}, nil
}

func (a *nodeAPI) GroupMessages(ctx context.Context, groupID, before string, limit int) ([]api.GroupMessage, string, error) {
	id, err := node.ParseGroupID("group_id", groupID)
	if err != nil {
		return nil, "", apiError(err)
	}
	g, err := a.n.Group(ctx, id)
	if err != nil {
		return nil, "", apiError(err)
	}
	ms, next, err := a.n.GroupMessages(ctx, id, store.Cursor(before), limit)
	if err != nil {
		return nil, "", apiError(err)
	}
	names := memberNames(g)
	out := make([]api.GroupMessage, 0, len(ms))
	for _, m := range ms {
		out = append(out, toAPIGroupMessage(m, names[m.From]))
	}
	return out, string(next), nil
}

func (a *nodeAPI) MarkGroupRead(ctx context.Context, groupID, upTo string) error {
	id, err := node.ParseGroupID("group_id", groupID)
	if err != nil {
		return apiError(err)
	}
	msgID, err := node.ParseMsgID("up_to", upTo)
	if err != nil {
		return apiError(err)
	}
	return apiError(a.n.MarkGroupRead(ctx, id, msgID))
}

func groupAndUser(groupID, userID string) (protocol.GroupID, protocol.ID, error) {
	id, err := node.ParseGroupID("group_id", groupID)
	if err != nil {
		return id, protocol.ID{}, apiError(err)
	}
	user, err := node.ParseUserID("user_id", userID)
	if err != nil {
		return id, user, apiError(err)
	}
	return id, user, nil
}

// memberNames are the names the node knows a group's members by.
func memberNames(g node.GroupInfo) map[protocol.ID]string {
	names := make(map[protocol.ID]string, len(g.Members))
	for _, m := range g.Members {
		names[m.User] = m.Name
	}
	return names
}

func toAPIGroup(g node.GroupInfo) api.Group {
	ag := api.Group{ID: g.ID.String(), Name: g.Name, Epoch: g.Epoch, Removed: g.Removed, Unread: g.Unread, Members: []api.GroupMember{}}
	for _, m := range g.Members {
		ag.Members = append(ag.Members, api.GroupMember{UserID: m.User.String(), Name: m.Name, Role: m.Role})
	}
	if m := g.Last; m != nil {
		text := store.Preview(m.Body)
		status := string(store.StatusSent)
		if m.Direction == store.In {
			status = string(store.StatusDelivered)
		}
		ag.LastMessage = &api.LastMessage{ID: m.ID.String(), Text: text, At: m.SentAt, Direction: string(m.Direction), Status: status}
	}
	return ag
}

func toAPIGroupMessage(m store.GroupMessage, name string) api.GroupMessage {
	am := api.GroupMessage{
		ID: m.ID.String(), GroupID: m.Group.String(), From: m.From.String(), Name: name,
		SentAt: m.SentAt, Direction: string(m.Direction),
	}
	if am.Direction == "" {
		am.Direction = string(store.In)
	}
	if utf8.Valid(m.Body) {
		am.Text = string(m.Body)
	}
	if m.Direction != store.Out && !m.ReceivedAt.IsZero() {
		t := m.ReceivedAt
		am.ReceivedAt = &t
	}
	return am
}
