package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The fake's groups: in memory, with the node's rules on who may change
// members (the fake user, alice-id, is the admin of groups it creates).

type fakeGroups struct {
	groups   []Group
	messages map[string][]GroupMessage // by group ID, oldest first
	read     []string                  // groups MarkGroupRead was called for
}

func (f *fakeNode) fg() *fakeGroups {
	if f.grp == nil {
		f.grp = &fakeGroups{messages: map[string][]GroupMessage{}}
	}
	return f.grp
}

func (f *fakeNode) findGroup(id string) (*Group, error) {
	g := f.fg()
	i := slices.IndexFunc(g.groups, func(gr Group) bool { return gr.ID == id })
	if i < 0 {
		return nil, &Error{Code: CodeNotFound, Message: "no such group"}
	}
	return &g.groups[i], nil
}

func (f *fakeNode) adminOf(g *Group) error {
	switch i := slices.IndexFunc(g.Members, func(m GroupMember) bool { return m.UserID == f.me.UserID }); {
	case g.Removed || i < 0:
		return &Error{Code: CodeNotMember, Message: "not a member of the group"}
	case g.Members[i].Role != "admin":
		return &Error{Code: CodeNotAdmin, Message: "only an admin of the group may do this"}
	}
	return nil
}

func (f *fakeNode) CreateGroup(_ context.Context, name string, members []string) (Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("CreateGroup"); err != nil {
		return Group{}, err
	}
	g := Group{ID: fmt.Sprintf("%064x", len(f.fg().groups)+1), Name: strings.TrimSpace(name), Epoch: 1,
		Members: []GroupMember{{UserID: f.me.UserID, Name: f.me.Name, Role: "admin"}}}
	for _, m := range members {
		if !slices.ContainsFunc(f.friends, func(fr Friend) bool { return fr.UserID == m && fr.Status == "accepted" }) {
			return Group{}, &Error{Code: CodeNotFound, Message: "not an accepted friend: " + m}
		}
		g.Members = append(g.Members, GroupMember{UserID: m, Role: "member"})
	}
	f.fg().groups = append(f.fg().groups, g)
	return g, nil
}

func (f *fakeNode) Groups(context.Context) ([]Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Groups"); err != nil {
		return nil, err
	}
	return slices.Clone(f.fg().groups), nil
}

func (f *fakeNode) Group(_ context.Context, id string) (Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.findGroup(id)
	if err != nil {
		return Group{}, err
	}
	return *g, nil
}

func (f *fakeNode) AddGroupMember(_ context.Context, id, user string) (Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.findGroup(id)
	if err != nil {
		return Group{}, err
	}
	if err := f.adminOf(g); err != nil {
		return Group{}, err
	}
	g.Members = append(g.Members, GroupMember{UserID: user, Role: "member"})
	g.Epoch++
	return *g, nil
}

func (f *fakeNode) RemoveGroupMember(_ context.Context, id, user string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.findGroup(id)
	if err != nil {
		return err
	}
	if user == f.me.UserID {
		g.Removed = true
		return nil
	}
	if err := f.adminOf(g); err != nil {
		return err
	}
	i := slices.IndexFunc(g.Members, func(m GroupMember) bool { return m.UserID == user })
	if i < 0 {
		return &Error{Code: CodeNotFound, Message: "not a member"}
	}
	g.Members = slices.Delete(g.Members, i, i+1)
	g.Epoch++
	return nil
}

func (f *fakeNode) SendGroupMessage(_ context.Context, id, text string) (SendMessageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.findGroup(id)
	if err != nil {
		return SendMessageResponse{}, err
	}
	if g.Removed {
		return SendMessageResponse{}, &Error{Code: CodeNotMember, Message: "not a member of the group"}
	}
	m := GroupMessage{ID: fmt.Sprintf("%032x", len(f.fg().messages[id])+1), GroupID: id, From: f.me.UserID, Name: f.me.Name,
		Text: text, SentAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Direction: "out"}
	f.fg().messages[id] = append(f.fg().messages[id], m)
	return SendMessageResponse{ID: m.ID, Status: "sent"}, nil
}

func (f *fakeNode) GroupMessages(_ context.Context, id, before string, limit int) ([]GroupMessage, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.findGroup(id); err != nil {
		return nil, "", err
	}
	all := slices.Clone(f.fg().messages[id])
	slices.Reverse(all)
	if before != "" {
		i := slices.IndexFunc(all, func(m GroupMessage) bool { return m.ID == before })
		all = all[i+1:]
	}
	if len(all) > limit {
		return all[:limit], all[limit-1].ID, nil
	}
	return all, "", nil
}

func (f *fakeNode) MarkGroupRead(_ context.Context, id, upTo string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, err := f.findGroup(id)
	if err != nil {
		return err
	}
	g.Unread = 0
	f.fg().read = append(f.fg().read, id+"/"+upTo)
	return nil
}

func TestGroupRoutes(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob-id", Name: "bob", Status: "accepted"}, {UserID: "carol-id", Name: "carol", Status: "accepted"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	do := func(method, path, body string) answer {
		return ts.do(call{method: method, path: path, body: body, token: token})
	}

	// Create: validation, a stranger, then a group of three.
	do("POST", "/api/v1/groups", `{"name":"  ","members":["bob-id"]}`).expect(t, http.StatusBadRequest, CodeBadRequest)
	do("POST", "/api/v1/groups", `{"name":"x","members":[]}`).expect(t, http.StatusBadRequest, CodeBadRequest)
	do("POST", "/api/v1/groups", `{"name":"x","members":["bob-id"],"extra":1}`).expect(t, http.StatusBadRequest, CodeBadRequest)
	do("POST", "/api/v1/groups", `{"name":"x","members":["mallory-id"]}`).expect(t, http.StatusNotFound, CodeNotFound)
	a := do("POST", "/api/v1/groups", `{"name":"Climbing","members":["bob-id","carol-id"]}`)
	a.expect(t, http.StatusCreated, "")
	var g Group
	a.decode(t, &g)
	if g.Name != "Climbing" || g.Epoch != 1 || len(g.Members) != 3 || g.Members[0].Role != "admin" {
		t.Fatalf("created group = %+v", g)
	}
	if !strings.Contains(string(a.body), `"last_message":null`) {
		t.Errorf("an empty group's last_message is not null: %s", a.body)
	}
	base := "/api/v1/groups/" + g.ID

	var list GroupList
	do("GET", "/api/v1/groups", "").decode(t, &list)
	if len(list.Groups) != 1 || list.Groups[0].ID != g.ID {
		t.Fatalf("groups = %+v", list)
	}
	do("GET", base, "").expect(t, http.StatusOK, "")
	do("GET", "/api/v1/groups/"+strings.Repeat("0", 64), "").expect(t, http.StatusNotFound, CodeNotFound)

	// Messages: send, page newest first, validation.
	do("POST", base+"/messages", `{"text":"   "}`).expect(t, http.StatusBadRequest, CodeEmptyText)
	do("POST", base+"/messages", `{"text":"`+strings.Repeat("x", maxTextBytes+1)+`"}`).expect(t, http.StatusRequestEntityTooLarge, CodeTooLarge)
	for i := range 3 {
		a := do("POST", base+"/messages", fmt.Sprintf(`{"text":"m%d"}`, i))
		a.expect(t, http.StatusAccepted, "")
		var r SendMessageResponse
		a.decode(t, &r)
		if r.ID == "" || r.Status == "" {
			t.Fatalf("send answer = %s", a.body)
		}
	}
	var page GroupMessagesPage
	do("GET", base+"/messages?limit=2", "").decode(t, &page)
	if len(page.Messages) != 2 || page.Messages[0].Text != "m2" || page.Next == nil {
		t.Fatalf("first page = %+v", page)
	}
	page = GroupMessagesPage{}
	do("GET", base+"/messages?limit=2&before="+*page0(t, do, base), "").decode(t, &page)
	if len(page.Messages) != 1 || page.Messages[0].Text != "m0" || page.Next != nil {
		t.Fatalf("second page = %+v", page)
	}
	do("GET", base+"/messages?limit=0", "").expect(t, http.StatusBadRequest, CodeBadRequest)
	do("POST", base+"/read", `{"up_to":"x"}`).expect(t, http.StatusNoContent, "")
	do("POST", base+"/read", `{}`).expect(t, http.StatusNoContent, "")

	// Members: add (201), remove (204), unknown member (404).
	do("POST", base+"/members", `{"user_id":""}`).expect(t, http.StatusBadRequest, CodeBadRequest)
	a = do("POST", base+"/members", `{"user_id":"dave-id"}`)
	a.expect(t, http.StatusCreated, "")
	a.decode(t, &g)
	if g.Epoch != 2 || len(g.Members) != 4 {
		t.Fatalf("after adding = %+v", g)
	}
	do("DELETE", base+"/members/dave-id", "").expect(t, http.StatusNoContent, "")
	do("DELETE", base+"/members/nobody", "").expect(t, http.StatusNotFound, CodeNotFound)

	// Not the admin: 403 not_admin. Leaving: 204, then 403 not_member.
	node.mu.Lock()
	node.fg().groups[0].Members[0].Role = "member"
	node.mu.Unlock()
	do("POST", base+"/members", `{"user_id":"dave-id"}`).expect(t, http.StatusForbidden, CodeNotAdmin)
	do("DELETE", base+"/members/bob-id", "").expect(t, http.StatusForbidden, CodeNotAdmin)
	do("DELETE", base+"/members/alice-id", "").expect(t, http.StatusNoContent, "")
	do("POST", base+"/messages", `{"text":"hi"}`).expect(t, http.StatusForbidden, CodeNotMember)
	do("GET", base, "").decode(t, &g)
	if !g.Removed {
		t.Fatalf("after leaving = %+v", g)
	}

	// Without a token: 401.
	ts.do(call{method: "GET", path: "/api/v1/groups"}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
}

// page0 returns the cursor after the first page of two.
func page0(t *testing.T, do func(method, path, body string) answer, base string) *string {
	t.Helper()
	var p GroupMessagesPage
	do("GET", base+"/messages?limit=2", "").decode(t, &p)
	return p.Next
}
