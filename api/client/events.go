package client

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/api"
)

// eventBuffer is how many decoded events wait for a slow reader.
const eventBuffer = 16

// wireEvent is an event as the socket sends it, before its data is
// decoded by type.
type wireEvent struct {
	Type api.EventType   `json:"type"`
	Data json.RawMessage `json:"data"`
}

// Subscribe opens the events WebSocket with the token in the upgrade's
// Authorization header and returns once the server said "ready", so that
// no event of what the caller does next is missed. Data is decoded into
// api.Message, api.StatusChange, api.Friend or api.Presence by the
// event's type. The channel closes when ctx ends, cancel is called, or
// the socket closes (the node stopped, the token ended, or an error:
// the API's Subscribe has no error to return, and an empty, closed
// channel says that it failed).
func (c *Client) Subscribe(ctx context.Context) (<-chan api.Event, func()) {
	out := make(chan api.Event, eventBuffer)
	ctx, stop := context.WithCancel(ctx)
	var once sync.Once
	cancel := func() { once.Do(stop) }
	conn, err := c.dialEvents(ctx)
	if err != nil {
		cancel()
		close(out)
		return out, cancel
	}
	go func() {
		defer close(out)
		defer conn.CloseNow()
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var w wireEvent
			if err := json.Unmarshal(b, &w); err != nil {
				return
			}
			ev := api.Event{Type: w.Type}
			if ev.Data, err = decodeData(w); err != nil {
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, cancel
}

// dialEvents opens the socket and waits for "ready".
func (c *Client) dialEvents(ctx context.Context) (*websocket.Conn, error) {
	token := c.Token()
	if token == "" {
		return nil, errNoToken
	}
	wsURL := "ws" + strings.TrimPrefix(c.base, "http") + "/api/v1/events"
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set("Origin", c.base) // the server takes its own origin only
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: h})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	_, b, err := conn.Read(ctx)
	if err != nil {
		conn.CloseNow()
		return nil, err
	}
	var ready wireEvent
	if err := json.Unmarshal(b, &ready); err != nil || ready.Type != "ready" {
		conn.CloseNow()
		return nil, errNoToken
	}
	return conn, nil
}

// decodeData decodes an event's data into the type its event type has.
func decodeData(w wireEvent) (any, error) {
	var v any
	switch w.Type {
	case api.EventMessage:
		v = &api.Message{}
	case api.EventMessageStatus:
		v = &api.StatusChange{}
	case api.EventPeerOnline, api.EventPeerOffline:
		v = &api.Presence{}
	case api.EventOverflow:
		return nil, nil
	default: // the friend events, and any new one that carries a friend
		v = &api.Friend{}
	}
	if len(w.Data) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(w.Data, v); err != nil {
		return nil, err
	}
	switch d := v.(type) {
	case *api.Message:
		return *d, nil
	case *api.StatusChange:
		return *d, nil
	case *api.Presence:
		return *d, nil
	default:
		return *(v.(*api.Friend)), nil
	}
}
