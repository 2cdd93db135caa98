package store

import (
	"github.com/parley-chat/parley/protocol"
)

// MsgIDSize is the size of a message ID.
const MsgIDSize = protocol.MsgIDSize

// MsgID is a message's random 128-bit ID: the envelope's msg_id.
type MsgID = protocol.MsgID

// ConversationID names a conversation: for a 1:1 conversation the friend's
// user ID (DirectConversation), for a group its random 32-byte group ID.
type ConversationID [32]byte

// DirectConversation is the ID of the 1:1 conversation with user.
func DirectConversation(user protocol.ID) ConversationID { return ConversationID(user) }

// String returns the lower-case, unpadded base32 form, as protocol.ID does.
func (c ConversationID) String() string { return protocol.ID(c).String() }

// IsZero reports whether c is unset.
func (c ConversationID) IsZero() bool { return c == ConversationID{} }

// Direction tells whether a message was received or sent.
type Direction string

// Directions.
const (
	In  Direction = "in"
	Out Direction = "out"
)

// Status is a message's delivery status.
type Status string

// Statuses, in the order a message normally goes through them.
const (
	StatusPending   Status = "pending"
	StatusSent      Status = "sent"
	StatusDelivered Status = "delivered"
	StatusRead      Status = "read"
	StatusFailed    Status = "failed"
)

// rank orders statuses for UpdateStatus, which never moves a message
// back: failed is below sent so that a successful retry wins.
func (s Status) rank() int {
	switch s {
	case StatusPending:
		return 0
	case StatusFailed:
		return 1
	case StatusSent:
		return 2
	case StatusDelivered:
		return 3
	case StatusRead:
		return 4
	}
	return -1
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool { return s.rank() >= 0 }

// Path is how a message travelled.
type Path string

// Paths. The zero Path means not known (yet).
const (
	PathDirect  Path = "direct"
	PathRelay   Path = "relay"
	PathMailbox Path = "mailbox"
)

// Valid reports whether p is a known path or empty.
func (p Path) Valid() bool {
	switch p {
	case "", PathDirect, PathRelay, PathMailbox:
		return true
	}
	return false
}

// FriendStatus is where a friendship stands.
type FriendStatus string

// Friend statuses.
const (
	FriendPendingOut FriendStatus = "pending_out" // we asked
	FriendPendingIn  FriendStatus = "pending_in"  // they asked
	FriendAccepted   FriendStatus = "accepted"
	FriendBlocked    FriendStatus = "blocked"
	// FriendRemovedByPeer: they removed us (a removal notice signed by
	// their key arrived). Their history stays; nothing is sent to them
	// until one side adds the other again.
	FriendRemovedByPeer FriendStatus = "removed_by_peer"
)

// Valid reports whether s is a known friend status.
func (s FriendStatus) Valid() bool {
	switch s {
	case FriendPendingOut, FriendPendingIn, FriendAccepted, FriendBlocked, FriendRemovedByPeer:
		return true
	}
	return false
}
