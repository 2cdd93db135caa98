package api

import "encoding/json"

// The request and answer bodies of the routes, defined once: the server
// decodes and encodes these, api/client sends and reads them, and the
// OpenAPI document (api/openapi.json) and the web UI's TypeScript types
// are generated from them (make api). The resource types (Me, Friend,
// Message, ...) and the events are in node.go.
//
// Fields without omitempty are always present in an answer; a request
// must give them unless the route says otherwise.

// Health is the answer of GET /api/v1/health.
type Health struct {
	Status string `json:"status" jsonschema:"enum=ok"`
	State  State  `json:"state"`
	// Name and UserID say whose node it is, for the login screen; absent
	// before the first registration.
	Name   string `json:"name,omitempty"`
	UserID string `json:"user_id,omitempty"`
}

// Secret is a JSON string kept as its raw JSON text, so that the server
// can decode it into bytes and wipe them after use (a Go string cannot
// be wiped). The document shows it as a string.
type Secret json.RawMessage

// UnmarshalJSON keeps a copy of the raw JSON value.
func (s *Secret) UnmarshalJSON(b []byte) error {
	*s = append((*s)[:0], b...)
	return nil
}

// MarshalJSON writes the raw JSON value (null when empty).
func (s Secret) MarshalJSON() ([]byte, error) {
	if len(s) == 0 {
		return []byte("null"), nil
	}
	return s, nil
}

// RegisterRequest is the body of POST /api/v1/register.
type RegisterRequest struct {
	Name       string `json:"name" jsonschema:"minLength=1"`
	Passphrase Secret `json:"passphrase" jsonschema:"minLength=10"`
}

// RegisterResponse is the answer of POST /api/v1/register.
type RegisterResponse struct {
	UserID string `json:"user_id"`
	PeerID string `json:"peer_id"`
	Token  string `json:"token"`
}

// LoginRequest is the body of POST /api/v1/login.
type LoginRequest struct {
	Passphrase Secret `json:"passphrase" jsonschema:"minLength=1"`
}

// LoginResponse is the answer of POST /api/v1/login.
type LoginResponse struct {
	Token  string `json:"token"`
	UserID string `json:"user_id"`
}

// AddFriendRequest is the body of POST /api/v1/friends: exactly one of
// Invite (an invite link) and UserID.
type AddFriendRequest struct {
	Invite string `json:"invite,omitempty"`
	UserID string `json:"user_id,omitempty"`
}

// VerifyFriendRequest is the body of POST /api/v1/friends/{user_id}/verify
// (which older clients send without a body): the safety number the user
// compared, as shown.
type VerifyFriendRequest struct {
	SafetyNumber string `json:"safety_number,omitempty"`
}

// FriendList is the answer of GET /api/v1/friends.
type FriendList struct {
	Friends []Friend `json:"friends"`
}

// SendMessageRequest is the body of POST /api/v1/send_message. Text is 1
// to 32 KiB of UTF-8 and not only white space (CodeEmptyText).
type SendMessageRequest struct {
	To   string `json:"to" jsonschema:"minLength=1"`
	Text string `json:"text" jsonschema:"minLength=1,maxLength=32768"`
}

// SendMessageResponse is the answer of POST /api/v1/send_message.
type SendMessageResponse struct {
	ID     string `json:"msg_id"`
	Status string `json:"status" jsonschema:"enum=pending,enum=sent,enum=delivered,enum=read,enum=failed"`
}

// MessagesQuery is the query of GET /api/v1/get_messages.
type MessagesQuery struct {
	With   string `query:"with" required:"true"` // the friend's user ID
	Before string `query:"before"`               // the cursor of the page, from next
	Limit  int    `query:"limit"`                // 1 to 200, default 50
}

// MessagesPage is the answer of GET /api/v1/get_messages: newest first;
// Next is the cursor of the next (older) page, null on the last.
type MessagesPage struct {
	Messages []Message `json:"messages"`
	Next     *string   `json:"next" jsonschema:"nullable"`
}

// ConversationList is the answer of GET /api/v1/conversations.
type ConversationList struct {
	Conversations []Conversation `json:"conversations"`
}

// MarkReadRequest is the body of POST /api/v1/read: the conversation is
// read up to the message UpTo (the newest when not given).
type MarkReadRequest struct {
	With string `json:"with" jsonschema:"minLength=1"`
	UpTo string `json:"up_to,omitempty"`
}

// ConnectRequest is the body of POST /api/v1/peers/connect: a multiaddr
// ending in /p2p/<peer ID>.
type ConnectRequest struct {
	Addr string `json:"addr" jsonschema:"minLength=1"`
}

// SearchQuery is the query of GET /api/v1/directory/search.
type SearchQuery struct {
	Name string `query:"name" required:"true"` // 1 to 64 bytes after trimming
}

// SearchResults is the answer of GET /api/v1/directory/search.
type SearchResults struct {
	Results []SearchResult `json:"results"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the error of an ErrorResponse: a code from the list of
// Codes, and a message for developers (the UI shows its own sentence for
// each code).
type ErrorDetail struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}
