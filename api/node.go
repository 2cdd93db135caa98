package api

import (
	"context"
	"io"
	"time"
)

// Node is what the server needs from a running Parley node: every
// capability below. cmd/parley adapts the real node to it; tests use a
// small fake; the client package implements the capabilities (all but
// Lifecycle) over HTTP. IDs are the text forms the API speaks (user IDs
// in lower-case base32, message IDs in hex, peer IDs and multiaddrs as
// libp2p prints them). Methods return *Error values (or errors wrapping
// one) for failures the client caused; any other error is answered 500
// "internal" without its text.
type Node interface {
	Lifecycle
	Auth
	Account
	Peers
	Friends
	Messages
	Groups
	Directory
	Events
	Ops
}

// Lifecycle reports the node's state.
type Lifecycle interface {
	State() State
	// Owner says whose node it is (also while locked): the identity's
	// name and user ID, empty before there is one.
	Owner() (name, userID string)
}

// Auth creates or opens the identity.
type Auth interface {
	// Register creates the identity in state new and unlocks the node.
	Register(ctx context.Context, name string, passphrase []byte) (Me, error)
	// Unlock opens the identity with the passphrase (state locked), or
	// checks the passphrase again when the node is already unlocked.
	// A wrong passphrase is CodeBadPassphrase; too many wrong tries are
	// CodeThrottled with RetryAfter set.
	Unlock(ctx context.Context, passphrase []byte) (Me, error)
}

// Account is the node's own user and key.
type Account interface {
	Me(ctx context.Context) (Me, error)
	// RotateKey replaces the RSA identity key by a new one, signed by the
	// old key; the user ID and safety numbers stay the same. It returns
	// the user after the rotation.
	RotateKey(ctx context.Context) (Me, error)
}

// Peers is the libp2p side of the node.
type Peers interface {
	NodeInfo(ctx context.Context) (NodeInfo, error)
	Connect(ctx context.Context, addr string) error
}

// Friends is the friend list.
type Friends interface {
	Friends(ctx context.Context) ([]Friend, error)
	// AddFriend adds (or accepts) a friend from an invite link: a card
	// link, or a short invite whose card the node fetches from the
	// inviter's node (CodeBadInvite for neither, CodeInviteRefused when
	// that node refuses it or gives another user's card).
	AddFriend(ctx context.Context, invite string) (Friend, error)
	// AddFriendByID adds a user by user ID alone: accepts their pending
	// request, or looks their signed record up in the directory, verifies
	// it, and sends a contact request (CodeNotFound when the directory has
	// no valid record, CodeUnavailable when it cannot be asked).
	AddFriendByID(ctx context.Context, userID string) (Friend, error)
	RemoveFriend(ctx context.Context, userID string) error
	// BlockFriend keeps the user as blocked: their messages and contact
	// requests are refused until they are added again.
	BlockFriend(ctx context.Context, userID string) (Friend, error)
	// VerifyFriend marks the friend's key as verified by the user. For a
	// friend in status key_changed it also accepts the new key, and sends
	// held for them go out. safetyNumber (at most one) is the number the
	// user compared, as shown (spaces allowed): when given it must be the
	// friend's safety number now, and for key_changed it is required, so
	// that accepting a changed key means comparing its new number;
	// otherwise the answer is CodeConflict and nothing changes.
	VerifyFriend(ctx context.Context, userID string, safetyNumber ...string) error
}

// Messages is sending and reading chat messages.
type Messages interface {
	Send(ctx context.Context, to, text string) (Message, error)
	// Messages returns a page of the conversation with a friend, newest
	// first, and the cursor of the next (older) page, "" at the end.
	Messages(ctx context.Context, with, before string, limit int) ([]Message, string, error)
	Conversations(ctx context.Context) ([]Conversation, error)
	// MarkRead marks the conversation read up to the message upTo (the
	// newest when empty) and sends the friend a read receipt.
	MarkRead(ctx context.Context, with, upTo string) error
	// RetryMessage sends a failed outgoing message again, with the same
	// msg_id, at the end of its friend's queue; it returns the message,
	// pending (CodeNotFound for an unknown message, CodeNotRetryable for
	// one that has not failed or is not outgoing, CodeRemovedByPeer when
	// the friend removed the user).
	RetryMessage(ctx context.Context, msgID string) (Message, error)
	// DeleteMessage deletes a message on this node only; a message still
	// queued is withdrawn from the outbox (CodeNotFound for an unknown
	// message).
	DeleteMessage(ctx context.Context, msgID string) error
}

// Directory is the signed user directory.
type Directory interface {
	// LookupUser fetches the user's signed record from the directory and
	// verifies it (CodeNotFound when there is no valid record,
	// CodeUnavailable when the directory cannot be asked).
	LookupUser(ctx context.Context, userID string) (DirectoryEntry, error)
	// SearchDirectory returns every user who claims the display name,
	// each checked against their signed record (claims that do not verify
	// are left out; CodeUnavailable when the directory cannot be asked).
	// The API passes the name trimmed, 1 to 64 bytes of UTF-8; the node
	// normalises it.
	SearchDirectory(ctx context.Context, name string) ([]SearchResult, error)
}

// Events is the live event stream.
type Events interface {
	// Subscribe streams live events until ctx ends or cancel is called;
	// the channel is closed then. A subscriber that falls behind loses
	// events and receives an EventOverflow in their place.
	Subscribe(ctx context.Context) (events <-chan Event, cancel func())
}

// Ops is what a person running the node for real needs: backups and the
// audit log.
type Ops interface {
	// Backup writes an encrypted backup of the whole node to w. The
	// passphrase must be the node's (CodeBadPassphrase, or CodeThrottled
	// after too many); it is checked before anything is written.
	Backup(ctx context.Context, passphrase []byte, w io.Writer) error
	// AuditLog returns up to limit audit events, newest first.
	AuditLog(ctx context.Context, limit int) ([]AuditEvent, error)
}

// State is a node's lifecycle state.
type State string

// The states of a node.
const (
	StateNew      State = "new"      // no identity yet: only register works
	StateLocked   State = "locked"   // identity on disk, passphrase not given
	StateUnlocked State = "unlocked" // running
)

// Me is the node's own user.
type Me struct {
	UserID string   `json:"user_id"`
	Name   string   `json:"name"`
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	Invite string   `json:"invite"`
	// ShortInvite is a "parley:invite/" link of about 150 characters that
	// fits a small QR code: the friend's node fetches the card from this
	// node and checks it against the user ID.
	ShortInvite string `json:"short_invite"`
	Fingerprint string `json:"fingerprint"`
}

// NodeInfo describes the libp2p side of the node.
type NodeInfo struct {
	PeerID         string   `json:"peer_id"`
	Addrs          []string `json:"addrs"`
	ConnectedPeers []string `json:"connected_peers"`
	Reachability   string   `json:"reachability" jsonschema:"enum=unknown,enum=public,enum=private"`
}

// Friend is one entry of the friend list.
type Friend struct {
	UserID       string `json:"user_id"`
	Name         string `json:"name"`
	Status       string `json:"status" jsonschema:"enum=pending_out,enum=pending_in,enum=accepted,enum=blocked,enum=removed_by_peer,enum=key_changed"` // key_changed: see CodeKeyChanged; removed_by_peer: they removed the user
	Verified     bool   `json:"verified"`
	Online       bool   `json:"online"`
	SafetyNumber string `json:"safety_number"`
	// KeyFork: the friend's key signed two different histories (two
	// records or rotations at one sequence number: a stolen key, or a
	// misbehaving device). Sending to them is held (409 key_changed) until
	// they are verified again.
	KeyFork bool `json:"key_fork,omitempty"`
	// KeyRotated: the friend's key in use is not their first key but
	// follows from it by a verified chain of rotations, each signed by
	// the key before; the safety number stays the same.
	KeyRotated bool `json:"key_rotated,omitempty"`
}

// DirectoryEntry is a user's signed directory record, as verified by the
// node.
type DirectoryEntry struct {
	UserID      string    `json:"user_id"`
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"` // of the user ID (the genesis key): unchanged by rotations
	Devices     []string  `json:"devices"`     // peer IDs of the user's devices
	Seq         uint64    `json:"seq"`         // the record's sequence number
	ExpiresAt   time.Time `json:"expires_at"`
}

// SearchResult is one user who claims a searched name.
type SearchResult struct {
	UserID      string `json:"user_id"`
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"` // tells apart users who claim the same name
	Friend      bool   `json:"friend"`      // already on the friend list
}

// Message is one chat message.
type Message struct {
	ID         string     `json:"msg_id"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	Text       string     `json:"text"`
	SentAt     time.Time  `json:"sent_at"`
	ReceivedAt *time.Time `json:"received_at" jsonschema:"nullable"` // nil for outgoing messages
	Status     string     `json:"status" jsonschema:"enum=pending,enum=sent,enum=delivered,enum=read,enum=failed"`
	Direction  string     `json:"direction" jsonschema:"enum=in,enum=out"`
	Path       string     `json:"path" jsonschema:"enum=direct,enum=relay,enum=mailbox,enum="` // "" while pending
	Error      string     `json:"error,omitempty"`
}

// Conversation is one entry of the conversation list.
type Conversation struct {
	With        string       `json:"with"`
	Name        string       `json:"name"`
	LastMessage *LastMessage `json:"last_message" jsonschema:"nullable"` // nil for an empty conversation
	Unread      int          `json:"unread"`
}

// LastMessage summarises a conversation's newest message.
type LastMessage struct {
	ID        string    `json:"msg_id"`
	Text      string    `json:"text"` // cut to a preview
	At        time.Time `json:"at"`
	Direction string    `json:"direction" jsonschema:"enum=in,enum=out"`
	Status    string    `json:"status" jsonschema:"enum=pending,enum=sent,enum=delivered,enum=read,enum=failed"`
}

// Event is one live event, as the WebSocket sends it:
// {"type": "...", "data": {...}}.
type Event struct {
	Type EventType `json:"type"`
	// Data is a Message, StatusChange, MessageDeleted, Friend, Presence,
	// GroupMessage or Group, as Type says (below); overflow has none.
	Data any `json:"data,omitempty" jsonschema:"oneof_ref=#/$defs/Message;#/$defs/StatusChange;#/$defs/MessageDeleted;#/$defs/Friend;#/$defs/Presence;#/$defs/GroupMessage;#/$defs/Group"`
}

// EventType names an event.
type EventType string

// The events a node emits, and the type of their Data.
//
// EventFriendKeyRotated: the friend moved to a new key by a rotation
// signed by the old one: a notice for the user. EventFriendKeyChanged: the
// key changed without such a rotation: sending is held (the friend's
// status is key_changed, see CodeKeyChanged). EventKeyFork: the friend's
// key signed two histories (Friend.KeyFork): sending is held too.
const (
	EventMessage          EventType = "message"            // Message: a message arrived
	EventMessageStatus    EventType = "message_status"     // StatusChange
	EventMessageDeleted   EventType = "message_deleted"    // MessageDeleted
	EventFriendRequest    EventType = "friend_request"     // Friend
	EventFriendAccepted   EventType = "friend_accepted"    // Friend
	EventFriendRemoved    EventType = "friend_removed"     // Friend: removed or blocked here, or (status removed_by_peer) they removed the user
	EventFriendKeyRotated EventType = "friend_key_rotated" // Friend: see above
	EventFriendKeyChanged EventType = "friend_key_changed" // Friend: see above
	EventKeyFork          EventType = "key_fork"           // Friend: see above
	EventPeerOnline       EventType = "peer_online"        // Presence
	EventPeerOffline      EventType = "peer_offline"       // Presence
	EventOverflow         EventType = "overflow"           // no data: events were lost, refetch
	EventGroupMessage     EventType = "group_message"      // GroupMessage: a group message arrived
	EventGroupUpdated     EventType = "group_updated"      // Group: members, epoch or name changed (or a new group)
	EventGroupRemoved     EventType = "group_removed"      // Group: the user was removed from it, or left
)

// EventTypes lists every EventType.
func EventTypes() []EventType {
	return []EventType{
		EventMessage, EventMessageStatus, EventMessageDeleted, EventFriendRequest, EventFriendAccepted, EventFriendRemoved,
		EventFriendKeyRotated, EventFriendKeyChanged, EventKeyFork, EventPeerOnline, EventPeerOffline, EventOverflow,
		EventGroupMessage, EventGroupUpdated, EventGroupRemoved,
	}
}

// States lists every State.
func States() []State { return []State{StateNew, StateLocked, StateUnlocked} }

// StatusChange is the data of EventMessageStatus.
type StatusChange struct {
	ID     string `json:"msg_id"`
	With   string `json:"with"`
	Status string `json:"status" jsonschema:"enum=pending,enum=sent,enum=delivered,enum=read,enum=failed"`
	Path   string `json:"path" jsonschema:"enum=direct,enum=relay,enum=mailbox,enum="`
	Error  string `json:"error,omitempty"`
}

// MessageDeleted is the data of EventMessageDeleted.
type MessageDeleted struct {
	ID   string `json:"msg_id"`
	With string `json:"with"`
}

// Presence is the data of EventPeerOnline and EventPeerOffline.
type Presence struct {
	UserID string `json:"user_id"`
	PeerID string `json:"peer_id"`
}
