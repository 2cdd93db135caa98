package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestAdapterKeyFork: a friend whose key signed two histories is shown
// with key_fork, the node's key_fork event reaches the API with the
// friend, and a send it holds is a 409 key_changed.
func TestAdapterKeyFork(t *testing.T) {
	f := node.Friend{Friend: store.Friend{UserID: protocol.ID{7}, Name: "Alice", Status: store.FriendAccepted, Forked: true}}
	af := toAPIFriend(f)
	if !af.KeyFork || af.Status != "accepted" {
		t.Fatalf("toAPIFriend: %+v, want key_fork and status accepted", af)
	}
	b, err := json.Marshal(af)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"key_fork":true`) {
		t.Errorf("friend JSON %s lacks \"key_fork\":true", b)
	}
	f.Forked = false
	// Omitted when false (the document has it optional).
	if b, _ := json.Marshal(toAPIFriend(f)); strings.Contains(string(b), `"key_fork"`) {
		t.Errorf("friend JSON %s has key_fork though false", b)
	}

	e := toAPIEvent(node.Event{Type: node.EventKeyFork, Friend: node.Friend{Friend: store.Friend{UserID: protocol.ID{7}, Name: "Alice", Status: store.FriendAccepted, Forked: true}}})
	if e.Type != api.EventKeyFork {
		t.Errorf("event type %q, want %q", e.Type, api.EventKeyFork)
	}
	if d, ok := e.Data.(api.Friend); !ok || !d.KeyFork || d.Name != "Alice" {
		t.Errorf("event data %#v, want the friend with key_fork", e.Data)
	}

	err = apiError(fmt.Errorf("%w: alice; compare safety numbers again", node.ErrKeyFork))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeKeyChanged || !errors.Is(err, node.ErrKeyFork) {
		t.Errorf("apiError(ErrKeyFork) = %v, want code key_changed wrapping it", err)
	}
}
