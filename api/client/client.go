// Package client talks to a Parley node's local HTTP API from Go. A
// *Client implements the API's capability interfaces (api.Auth,
// api.Account, api.Peers, api.Friends, api.Messages, api.Groups, api.Directory,
// api.Events) over HTTP and the events WebSocket, with the request and
// answer types of package api, so that code and tests written against the
// interfaces run against a node in the same process or across HTTP alike.
//
// Failures the node answers are *api.Error values with the answer's code,
// message and, for throttled logins, RetryAfter.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/api"
)

// Client is a client of one node's API. It keeps the token of its last
// register or login. Its methods are safe for concurrent use.
type Client struct {
	base string // scheme://host:port, no trailing slash
	hc   *http.Client

	mu    sync.Mutex
	token string
}

var (
	_ api.Auth      = (*Client)(nil)
	_ api.Account   = (*Client)(nil)
	_ api.Peers     = (*Client)(nil)
	_ api.Friends   = (*Client)(nil)
	_ api.Messages  = (*Client)(nil)
	_ api.Directory = (*Client)(nil)
	_ api.Events    = (*Client)(nil)
)

// New returns a client of the API at base ("http://127.0.0.1:7733"). hc
// nil means a client without proxy and with a 2-minute timeout.
func New(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("client: base %q is not scheme://host:port", base)
	}
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Minute}
	}
	return &Client{base: u.Scheme + "://" + u.Host, hc: hc}, nil
}

// Token returns the token of the last register or login ("" before).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

func (c *Client) setToken(t string) {
	c.mu.Lock()
	c.token = t
	c.mu.Unlock()
}

// do sends one request: in (nil: no body) as JSON, the answer decoded
// into out (nil: none expected). An error answer is an *api.Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if t := c.Token(); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("client: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return answerError(resp, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("client: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// answerError is the *api.Error of an error answer.
func answerError(resp *http.Response, body []byte) error {
	var er api.ErrorResponse
	if err := json.Unmarshal(body, &er); err != nil || er.Error.Code == "" {
		return &api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("answer %s without a JSON error", resp.Status)}
	}
	e := &api.Error{Code: er.Error.Code, Message: er.Error.Message}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// passphrase is the JSON string of a passphrase, for a request body.
func passphrase(p []byte) (api.Secret, error) {
	b, err := json.Marshal(string(p))
	return api.Secret(b), err
}

// Register creates the identity, keeps the token and returns the user.
func (c *Client) Register(ctx context.Context, name string, pass []byte) (api.Me, error) {
	p, err := passphrase(pass)
	if err != nil {
		return api.Me{}, err
	}
	var out api.RegisterResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/register", api.RegisterRequest{Name: name, Passphrase: p}, &out); err != nil {
		return api.Me{}, err
	}
	c.setToken(out.Token)
	return c.Me(ctx)
}

// Unlock logs in, keeps the token and returns the user.
func (c *Client) Unlock(ctx context.Context, pass []byte) (api.Me, error) {
	p, err := passphrase(pass)
	if err != nil {
		return api.Me{}, err
	}
	var out api.LoginResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/login", api.LoginRequest{Passphrase: p}, &out); err != nil {
		return api.Me{}, err
	}
	c.setToken(out.Token)
	return c.Me(ctx)
}

// Logout ends the token.
func (c *Client) Logout(ctx context.Context) error {
	err := c.do(ctx, http.MethodPost, "/api/v1/logout", nil, nil)
	if err == nil {
		c.setToken("")
	}
	return err
}

// Health is the server's liveness and the node's state; it needs no token.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	return h, c.do(ctx, http.MethodGet, "/api/v1/health", nil, &h)
}

func (c *Client) Me(ctx context.Context) (api.Me, error) {
	var me api.Me
	return me, c.do(ctx, http.MethodGet, "/api/v1/me", nil, &me)
}

func (c *Client) RotateKey(ctx context.Context) (api.Me, error) {
	var me api.Me
	return me, c.do(ctx, http.MethodPost, "/api/v1/keys/rotate", nil, &me)
}

func (c *Client) NodeInfo(ctx context.Context) (api.NodeInfo, error) {
	var info api.NodeInfo
	return info, c.do(ctx, http.MethodGet, "/api/v1/node", nil, &info)
}

func (c *Client) Connect(ctx context.Context, addr string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/peers/connect", api.ConnectRequest{Addr: addr}, nil)
}

func (c *Client) Friends(ctx context.Context) ([]api.Friend, error) {
	var out api.FriendList
	return out.Friends, c.do(ctx, http.MethodGet, "/api/v1/friends", nil, &out)
}

func (c *Client) AddFriend(ctx context.Context, invite string) (api.Friend, error) {
	var f api.Friend
	return f, c.do(ctx, http.MethodPost, "/api/v1/friends", api.AddFriendRequest{Invite: invite}, &f)
}

func (c *Client) AddFriendByID(ctx context.Context, userID string) (api.Friend, error) {
	var f api.Friend
	return f, c.do(ctx, http.MethodPost, "/api/v1/friends", api.AddFriendRequest{UserID: userID}, &f)
}

// userPath is a route's path with a user ID as one escaped segment.
func userPath(userID, suffix string) string {
	return "/api/v1/friends/" + url.PathEscape(userID) + suffix
}

func (c *Client) RemoveFriend(ctx context.Context, userID string) error {
	return c.do(ctx, http.MethodDelete, userPath(userID, ""), nil, nil)
}

func (c *Client) BlockFriend(ctx context.Context, userID string) (api.Friend, error) {
	var f api.Friend
	return f, c.do(ctx, http.MethodPost, userPath(userID, "/block"), nil, &f)
}

func (c *Client) VerifyFriend(ctx context.Context, userID string, safetyNumber ...string) error {
	if len(safetyNumber) > 1 {
		return &api.Error{Code: api.CodeBadRequest, Message: "give at most one safety number"}
	}
	var in any
	if len(safetyNumber) == 1 {
		in = api.VerifyFriendRequest{SafetyNumber: safetyNumber[0]}
	}
	return c.do(ctx, http.MethodPost, userPath(userID, "/verify"), in, nil)
}

func (c *Client) Send(ctx context.Context, to, text string) (api.Message, error) {
	var out api.SendMessageResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/send_message", api.SendMessageRequest{To: to, Text: text}, &out); err != nil {
		return api.Message{}, err
	}
	// The answer names the message; the conversation has all of it.
	ms, _, err := c.Messages(ctx, to, "", 20)
	if err != nil {
		return api.Message{}, err
	}
	for _, m := range ms {
		if m.ID == out.ID {
			return m, nil
		}
	}
	return api.Message{ID: out.ID, Status: out.Status, To: to, Text: text, Direction: "out"}, nil
}

func (c *Client) Messages(ctx context.Context, with, before string, limit int) ([]api.Message, string, error) {
	q := url.Values{"with": {with}, "limit": {strconv.Itoa(limit)}}
	if before != "" {
		q.Set("before", before)
	}
	var page api.MessagesPage
	if err := c.do(ctx, http.MethodGet, "/api/v1/get_messages?"+q.Encode(), nil, &page); err != nil {
		return nil, "", err
	}
	next := ""
	if page.Next != nil {
		next = *page.Next
	}
	return page.Messages, next, nil
}

func (c *Client) Conversations(ctx context.Context) ([]api.Conversation, error) {
	var out api.ConversationList
	return out.Conversations, c.do(ctx, http.MethodGet, "/api/v1/conversations", nil, &out)
}

func (c *Client) MarkRead(ctx context.Context, with, upTo string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/read", api.MarkReadRequest{With: with, UpTo: upTo}, nil)
}

// RetryMessage answers the message ID and its new status only (the
// route's answer); the conversation has the rest.
func (c *Client) RetryMessage(ctx context.Context, msgID string) (api.Message, error) {
	var out api.SendMessageResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/messages/"+url.PathEscape(msgID)+"/retry", nil, &out); err != nil {
		return api.Message{}, err
	}
	return api.Message{ID: out.ID, Status: out.Status, Direction: "out"}, nil
}

func (c *Client) DeleteMessage(ctx context.Context, msgID string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/messages/"+url.PathEscape(msgID), nil, nil)
}

func (c *Client) LookupUser(ctx context.Context, userID string) (api.DirectoryEntry, error) {
	var e api.DirectoryEntry
	return e, c.do(ctx, http.MethodGet, "/api/v1/directory/"+url.PathEscape(userID), nil, &e)
}

func (c *Client) SearchDirectory(ctx context.Context, name string) ([]api.SearchResult, error) {
	var out api.SearchResults
	return out.Results, c.do(ctx, http.MethodGet, "/api/v1/directory/search?"+url.Values{"name": {name}}.Encode(), nil, &out)
}

// errNoToken is Subscribe before register or login.
var errNoToken = errors.New("client: no token: register or log in first")
