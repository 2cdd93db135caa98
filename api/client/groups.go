package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/parley-chat/parley/api"
)

// The api.Groups capability over HTTP.

var _ api.Groups = (*Client)(nil)

// groupPath is a group route's path with the group ID as one escaped
// segment.
func groupPath(groupID, suffix string) string {
	return "/api/v1/groups/" + url.PathEscape(groupID) + suffix
}

func (c *Client) CreateGroup(ctx context.Context, name string, members []string) (api.Group, error) {
	var g api.Group
	return g, c.do(ctx, http.MethodPost, "/api/v1/groups", api.CreateGroupRequest{Name: name, Members: members}, &g)
}

func (c *Client) Groups(ctx context.Context) ([]api.Group, error) {
	var out api.GroupList
	return out.Groups, c.do(ctx, http.MethodGet, "/api/v1/groups", nil, &out)
}

func (c *Client) Group(ctx context.Context, groupID string) (api.Group, error) {
	var g api.Group
	return g, c.do(ctx, http.MethodGet, groupPath(groupID, ""), nil, &g)
}

func (c *Client) AddGroupMember(ctx context.Context, groupID, userID string) (api.Group, error) {
	var g api.Group
	return g, c.do(ctx, http.MethodPost, groupPath(groupID, "/members"), api.AddGroupMemberRequest{UserID: userID}, &g)
}

func (c *Client) RemoveGroupMember(ctx context.Context, groupID, userID string) error {
	return c.do(ctx, http.MethodDelete, groupPath(groupID, "/members/"+url.PathEscape(userID)), nil, nil)
}

func (c *Client) SendGroupMessage(ctx context.Context, groupID, text string) (api.SendMessageResponse, error) {
	var out api.SendMessageResponse
	return out, c.do(ctx, http.MethodPost, groupPath(groupID, "/messages"), api.SendGroupMessageRequest{Text: text}, &out)
}

func (c *Client) GroupMessages(ctx context.Context, groupID, before string, limit int) ([]api.GroupMessage, string, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if before != "" {
		q.Set("before", before)
	}
	var page api.GroupMessagesPage
	if err := c.do(ctx, http.MethodGet, groupPath(groupID, "/messages?"+q.Encode()), nil, &page); err != nil {
		return nil, "", err
	}
	next := ""
	if page.Next != nil {
		next = *page.Next
	}
	return page.Messages, next, nil
}

func (c *Client) MarkGroupRead(ctx context.Context, groupID, upTo string) error {
	return c.do(ctx, http.MethodPost, groupPath(groupID, "/read"), api.GroupReadRequest{UpTo: upTo}, nil)
}
