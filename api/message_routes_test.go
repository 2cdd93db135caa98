package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// The fake's RetryMessage and DeleteMessage work on its message list, as
// the node does on its store.

func (f *fakeNode) RetryMessage(_ context.Context, msgID string) (Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("RetryMessage"); err != nil {
		return Message{}, err
	}
	i := slices.IndexFunc(f.messages, func(m Message) bool { return m.ID == msgID })
	switch {
	case i < 0:
		return Message{}, &Error{Code: CodeNotFound, Message: "no such message"}
	case f.messages[i].Direction != "out" || f.messages[i].Status != "failed":
		return Message{}, &Error{Code: CodeNotRetryable, Message: "only a failed outgoing message can be sent again"}
	}
	f.messages[i].Status, f.messages[i].Error = "pending", ""
	return f.messages[i], nil
}

func (f *fakeNode) DeleteMessage(_ context.Context, msgID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("DeleteMessage"); err != nil {
		return err
	}
	i := slices.IndexFunc(f.messages, func(m Message) bool { return m.ID == msgID })
	if i < 0 {
		return &Error{Code: CodeNotFound, Message: "no such message"}
	}
	f.messages = slices.Delete(f.messages, i, i+1)
	return nil
}

func TestRetryMessage(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.messages = []Message{
		{ID: "aa", Direction: "out", Status: "failed", Error: "refused by the recipient: not-a-friend"},
		{ID: "bb", Direction: "out", Status: "delivered"},
		{ID: "cc", Direction: "in", Status: "delivered"},
	}
	ts := startServer(t, node, Options{})
	token := ts.login()
	retry := func(id string) answer {
		return ts.do(call{method: "POST", path: "/api/v1/messages/" + id + "/retry", token: token})
	}
	a := retry("aa")
	a.expect(t, http.StatusAccepted, "")
	var out map[string]string
	a.decode(t, &out)
	if out["msg_id"] != "aa" || out["status"] != "pending" || len(out) != 2 {
		t.Fatalf("retry answer %v", out)
	}
	retry("aa").expect(t, http.StatusConflict, CodeNotRetryable)
	retry("bb").expect(t, http.StatusConflict, CodeNotRetryable)
	retry("cc").expect(t, http.StatusConflict, CodeNotRetryable)
	retry("dd").expect(t, http.StatusNotFound, CodeNotFound)
	node.setErr("RetryMessage", &Error{Code: CodeRemovedByPeer, Message: "this friend removed you"})
	retry("aa").expect(t, http.StatusConflict, CodeRemovedByPeer)
	node.setErr("RetryMessage", nil)

	// No token, a body, the wrong method.
	ts.do(call{method: "POST", path: "/api/v1/messages/aa/retry"}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	ts.do(call{method: "POST", path: "/api/v1/messages/aa/retry", token: token, body: `{}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "GET", path: "/api/v1/messages/aa/retry", token: token}).expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	// The ID reaches the node unescaped, and a slash is no ID.
	ts.do(call{method: "POST", path: "/api/v1/messages/a%2Fa/retry", token: token}).expect(t, http.StatusNotFound, CodeNotFound)
}

func TestDeleteMessage(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.messages = []Message{{ID: "aa", Direction: "out", Status: "pending"}, {ID: "bb", Direction: "in", Status: "delivered"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	del := func(id string) answer {
		return ts.do(call{method: "DELETE", path: "/api/v1/messages/" + id, token: token})
	}
	a := del("aa")
	a.expect(t, http.StatusNoContent, "")
	if len(a.body) != 0 {
		t.Fatalf("204 with a body: %q", a.body)
	}
	del("aa").expect(t, http.StatusNotFound, CodeNotFound)
	del("bb").expect(t, http.StatusNoContent, "")
	node.locked(func() {
		if len(node.messages) != 0 {
			t.Errorf("messages left: %+v", node.messages)
		}
	})
	ts.do(call{method: "DELETE", path: "/api/v1/messages/aa"}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
	ts.do(call{method: "DELETE", path: "/api/v1/messages/aa", token: token, body: `{"x":1}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "PUT", path: "/api/v1/messages/aa", token: token}).expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
}

// TestNewErrorCodes: each code of this change has its status, and the
// events of this change go out as the document says.
func TestNewErrorCodes(t *testing.T) {
	for code, status := range map[Code]int{
		CodeEmptyText: 400, CodeBadInvite: 400, CodeInviteRefused: 400, CodeNotRetryable: 409, CodeRemovedByPeer: 409,
	} {
		if got := code.Status(); got != status {
			t.Errorf("%s: status %d, want %d", code, got, status)
		}
		if !strings.Contains(string(openAPIDocument), `"`+string(code)+`"`) {
			t.Errorf("the OpenAPI document does not list %s", code)
		}
	}
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Status: "accepted"}}
	node.setErr("Send", &Error{Code: CodeEmptyText, Message: "the message is empty or only white space"})
	ts := startServer(t, node, Options{})
	token := ts.login()
	ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: `{"to":"bob","text":" \n "}`}).expect(t, http.StatusBadRequest, CodeEmptyText)

	c := ts.mustDial(token)
	waitFor(t, "a subscriber", func() bool { return node.subscribers() == 1 })
	node.emit(Event{Type: EventMessageDeleted, Data: MessageDeleted{ID: "aa", With: "bob"}})
	node.emit(Event{Type: EventFriendRemoved, Data: Friend{UserID: "bob", Name: "Bob", Status: "removed_by_peer"}})
	expectMessage(t, c, `{"type":"message_deleted","data":{"msg_id":"aa","with":"bob"}}`)
	expectMessage(t, c, `{"type":"friend_removed","data":{"user_id":"bob","name":"Bob","status":"removed_by_peer","verified":false,"online":false,"safety_number":""}}`)
}
