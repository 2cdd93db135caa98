package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Groups: group chats (issue 15). A group has a random ID (64 hex
// digits), a name, an epoch that grows with every change of members, and
// members with role admin or member. Only an admin adds and removes
// members (CodeNotAdmin otherwise); anyone removes themselves, which is
// leaving. A member who was removed, or left, keeps the group and what
// it received before (Group.Removed) but can no longer post
// (CodeNotMember).
type Groups interface {
	// CreateGroup makes a group with the user as its admin; members must
	// be accepted friends (CodeNotFound otherwise).
	CreateGroup(ctx context.Context, name string, members []string) (Group, error)
	Groups(ctx context.Context) ([]Group, error)
	Group(ctx context.Context, groupID string) (Group, error)
	// AddGroupMember adds an accepted friend (admin only).
	AddGroupMember(ctx context.Context, groupID, userID string) (Group, error)
	// RemoveGroupMember removes a member (admin only), or the user
	// themselves (leaving).
	RemoveGroupMember(ctx context.Context, groupID, userID string) error
	SendGroupMessage(ctx context.Context, groupID, text string) (SendMessageResponse, error)
	// GroupMessages returns a page of a group's messages, newest first,
	// and the cursor of the next (older) page, "" at the end.
	GroupMessages(ctx context.Context, groupID, before string, limit int) ([]GroupMessage, string, error)
	MarkGroupRead(ctx context.Context, groupID, upTo string) error
}

// Group is a group chat.
type Group struct {
	ID      string        `json:"group_id"`
	Name    string        `json:"name"`
	Epoch   uint64        `json:"epoch"`
	Members []GroupMember `json:"members"`
	// Removed: the user was removed from the group, or left it.
	Removed     bool         `json:"removed"`
	Unread      int          `json:"unread"`
	LastMessage *LastMessage `json:"last_message" jsonschema:"nullable"` // nil for an empty group
}

// GroupMember is a member of a group. Name is "" for a member who is not
// the user's friend.
type GroupMember struct {
	UserID string `json:"user_id"`
	Name   string `json:"name"`
	Role   string `json:"role" jsonschema:"enum=admin,enum=member"`
}

// GroupMessage is one message of a group.
type GroupMessage struct {
	ID         string     `json:"msg_id"`
	GroupID    string     `json:"group_id"`
	From       string     `json:"from"`
	Name       string     `json:"name"` // the sender's name as the node knows it; "" if not a friend
	Text       string     `json:"text"`
	SentAt     time.Time  `json:"sent_at"`
	ReceivedAt *time.Time `json:"received_at" jsonschema:"nullable"` // nil for outgoing messages
	Direction  string     `json:"direction" jsonschema:"enum=in,enum=out"`
}

// CreateGroupRequest is the body of POST /api/v1/groups: a name of 1 to
// 64 characters and the user IDs of the members besides the user.
type CreateGroupRequest struct {
	Name    string   `json:"name" jsonschema:"minLength=1,maxLength=64"`
	Members []string `json:"members" jsonschema:"minItems=1"`
}

// GroupList is the answer of GET /api/v1/groups.
type GroupList struct {
	Groups []Group `json:"groups"`
}

// AddGroupMemberRequest is the body of POST /api/v1/groups/{group_id}/members.
type AddGroupMemberRequest struct {
	UserID string `json:"user_id" jsonschema:"minLength=1"`
}

// SendGroupMessageRequest is the body of POST
// /api/v1/groups/{group_id}/messages: 1 to 32 KiB of UTF-8.
type SendGroupMessageRequest struct {
	Text string `json:"text" jsonschema:"minLength=1,maxLength=32768"`
}

// GroupMessagesQuery is the query of GET /api/v1/groups/{group_id}/messages.
type GroupMessagesQuery struct {
	Before string `query:"before"` // the cursor of the page, from next
	Limit  int    `query:"limit"`  // 1 to 200, default 50
}

// GroupMessagesPage is a page of a group's messages, newest first; Next
// is the cursor of the next (older) page, null on the last.
type GroupMessagesPage struct {
	Messages []GroupMessage `json:"messages"`
	Next     *string        `json:"next" jsonschema:"nullable"`
}

// GroupReadRequest is the body of POST /api/v1/groups/{group_id}/read.
type GroupReadRequest struct {
	UpTo string `json:"up_to,omitempty"`
}

// groupRoutes are the rows of the route table for groups.
func (s *Server) groupRoutes() []route {
	return []route{
		{method: "POST", pattern: "/api/v1/groups", body: bodyJSON, handle: s.createGroup,
			op: "createGroup", summary: "Create a group of friends, with the user as its admin", in: CreateGroupRequest{}, out: Group{}, status: 201},
		{method: "GET", pattern: "/api/v1/groups", handle: s.groups,
			op: "groups", summary: "The groups", out: GroupList{}, status: 200},
		{method: "GET", pattern: "/api/v1/groups/{group_id}", handle: s.group,
			op: "group", summary: "One group", out: Group{}, status: 200},
		{method: "POST", pattern: "/api/v1/groups/{group_id}/members", body: bodyJSON, handle: s.addGroupMember,
			op: "addGroupMember", summary: "Add a friend to a group (admin only)", in: AddGroupMemberRequest{}, out: Group{}, status: 201},
		{method: "DELETE", pattern: "/api/v1/groups/{group_id}/members/{user_id}", body: bodyEmpty, handle: s.removeGroupMember,
			op: "removeGroupMember", summary: "Remove a member (admin only), or leave (the user's own ID)", status: 204},
		{method: "POST", pattern: "/api/v1/groups/{group_id}/messages", body: bodyJSON, handle: s.sendGroupMessage,
			op: "sendGroupMessage", summary: "Post a message to a group", in: SendGroupMessageRequest{}, out: SendMessageResponse{}, status: 202},
		{method: "GET", pattern: "/api/v1/groups/{group_id}/messages", handle: s.groupMessages,
			op: "groupMessages", summary: "A page of a group's messages, newest first", query: GroupMessagesQuery{}, out: GroupMessagesPage{}, status: 200},
		{method: "POST", pattern: "/api/v1/groups/{group_id}/read", body: bodyJSON, handle: s.markGroupRead,
			op: "markGroupRead", summary: "Mark a group read", in: GroupReadRequest{}, status: 204},
	}
}

func (s *Server) createGroup(q *request) error {
	var req CreateGroupRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	switch name := strings.TrimSpace(req.Name); {
	case name == "":
		return apiError(CodeBadRequest, "name is required")
	case utf8.RuneCountInString(name) > 64:
		return apiError(CodeBadRequest, "name is longer than 64 characters")
	case len(req.Members) == 0:
		return apiError(CodeBadRequest, "members must list at least one friend")
	}
	g, err := s.node.CreateGroup(q.r.Context(), req.Name, req.Members)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusCreated, groupOut(g))
	return nil
}

func (s *Server) groups(q *request) error {
	gs, err := s.node.Groups(q.r.Context())
	if err != nil {
		return err
	}
	for i := range gs {
		gs[i] = groupOut(gs[i])
	}
	writeJSON(q.w, http.StatusOK, GroupList{Groups: nonNil(gs)})
	return nil
}

func (s *Server) group(q *request) error {
	g, err := s.node.Group(q.r.Context(), q.param("group_id"))
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, groupOut(g))
	return nil
}

func (s *Server) addGroupMember(q *request) error {
	var req AddGroupMemberRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	if req.UserID == "" {
		return apiError(CodeBadRequest, "user_id is required")
	}
	g, err := s.node.AddGroupMember(q.r.Context(), q.param("group_id"), req.UserID)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusCreated, groupOut(g))
	return nil
}

func (s *Server) removeGroupMember(q *request) error {
	if err := s.node.RemoveGroupMember(q.r.Context(), q.param("group_id"), q.param("user_id")); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) sendGroupMessage(q *request) error {
	var req SendGroupMessageRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(req.Text) == "":
		return apiError(CodeEmptyText, "text is empty or only white space")
	case len(req.Text) > maxTextBytes:
		return apiError(CodeTooLarge, "text is longer than %d bytes", maxTextBytes)
	case !utf8.ValidString(req.Text):
		return apiError(CodeBadRequest, "text is not valid UTF-8")
	}
	r, err := s.node.SendGroupMessage(q.r.Context(), q.param("group_id"), req.Text)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusAccepted, r)
	return nil
}

func (s *Server) groupMessages(q *request) error {
	query, err := url.ParseQuery(q.r.URL.RawQuery)
	if err != nil {
		return apiError(CodeBadRequest, "malformed query string")
	}
	limit, err := pageLimit(query, defaultPageSize, maxPageSize)
	if err != nil {
		return err
	}
	msgs, next, err := s.node.GroupMessages(q.r.Context(), q.param("group_id"), query.Get("before"), limit)
	if err != nil {
		return err
	}
	page := GroupMessagesPage{Messages: nonNil(msgs)}
	if next != "" {
		page.Next = &next
	}
	writeJSON(q.w, http.StatusOK, page)
	return nil
}

func (s *Server) markGroupRead(q *request) error {
	var req GroupReadRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	if err := s.node.MarkGroupRead(q.r.Context(), q.param("group_id"), req.UpTo); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// groupOut answers members as a list, never null.
func groupOut(g Group) Group {
	g.Members = nonNil(g.Members)
	return g
}
