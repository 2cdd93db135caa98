package node

import (
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/protocol"
)

// Code is the stable, machine-readable name of a failure a caller can act
// on. The API answers with it as its error code, unchanged, so its values
// are the API's code names.
type Code string

// The codes of the node's errors. Each sentinel below carries one.
const (
	CodeBadRequest    Code = "bad_request"     // an argument that does not parse or is out of range
	CodeBadPassphrase Code = "bad_passphrase"  // a wrong passphrase
	CodeConflict      Code = "conflict"        // an identity exists; not the current safety number
	CodeWrongState    Code = "wrong_state"     // not possible in the node's state
	CodeNotFound      Code = "not_found"       // unknown friend, message, peer or user
	CodeTooLarge      Code = "too_large"       // a message over the size limit
	CodeKeyChanged    Code = "key_changed"     // sending is held: the friend's key changed or forked
	CodeThrottled     Code = "throttled"       // too many wrong passphrases: RetryAfter says how long
	CodeUnavailable   Code = "unavailable"     // the network or the node cannot do it now
	CodeEmptyText     Code = "empty_text"      // a message with no text, or only white space
	CodeBadInvite     Code = "bad_invite"      // not a Parley invite link
	CodeInviteRefused Code = "invite_refused"  // the inviter's device refused a short invite, or gave another user's card
	CodeNotRetryable  Code = "not_retryable"   // only a failed outgoing message can be sent again
	CodeRemovedByPeer Code = "removed_by_peer" // the friend removed the user: nothing is sent to them
	CodeNotMember     Code = "not_member"      // not (or no longer) a member of the group
	CodeNotAdmin      Code = "not_admin"       // only a group's admin may do this
)

// Error is a failure of the node a caller can act on: a stable Code, and a
// one-line Message for the user, without package prefixes. Messages name
// IDs, sizes and network causes, never content, keys or passphrases.
//
// The sentinels below are *Error values; an error of the node is one of
// them, or an *Error that wraps one (so errors.Is(err, ErrNotFound) holds)
// with a message that says more. Callers branch on errors.Is or on Code,
// never on the text.
type Error struct {
	Code       Code
	Message    string
	RetryAfter time.Duration // for CodeThrottled
	Err        error         // the sentinel this is a case of (nil for a sentinel), and any cause
}

// Error is the message with the package's prefix, for logs.
func (e *Error) Error() string { return "node: " + e.Message }

// Unwrap makes errors.Is see the sentinel and the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errors callers branch on, each with its code.
var (
	// ErrWrongState is an operation the node's state does not allow
	// (sending while locked, logging in before registering).
	ErrWrongState = &Error{Code: CodeWrongState, Message: "not possible in this state"}
	// ErrExists is Register when an identity already exists.
	ErrExists = &Error{Code: CodeConflict, Message: "an identity already exists on this node"}
	// ErrBadPassphrase is a wrong passphrase.
	ErrBadPassphrase = &Error{Code: CodeBadPassphrase, Message: "wrong passphrase"}
	// ErrWeakPassphrase is a passphrase shorter than minPassphrase.
	ErrWeakPassphrase = &Error{Code: CodeBadRequest, Message: "passphrase too short"}
	// ErrInvalid is an argument that does not parse or is out of range.
	ErrInvalid = &Error{Code: CodeBadRequest, Message: "invalid argument"}
	// ErrNotFound is an unknown friend, message or peer.
	ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}
	// ErrNotFriend is sending to a user who is not an accepted friend.
	ErrNotFriend = &Error{Code: CodeNotFound, Message: "not an accepted friend"}
	// ErrTooLarge is a message body over protocol.MaxBodySize.
	ErrTooLarge = &Error{Code: CodeTooLarge, Message: "message too large"}
	// ErrUnavailable is a network operation that could not be done now.
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "unavailable"}
	// ErrKeyChanged is sending to a friend whose directory record shows a
	// key that does not follow from the pinned one by a signed rotation;
	// VerifyFriend accepts the new key.
	ErrKeyChanged = &Error{Code: CodeKeyChanged, Message: "friend's key changed"}
	// ErrKeyFork is sending to a friend whose key was seen to sign two
	// histories (two different records or rotations at one sequence
	// number: a stolen key, or a misbehaving device); VerifyFriend
	// releases what is held once the user compared safety numbers again.
	ErrKeyFork = &Error{Code: CodeKeyChanged, Message: "friend's key signed two histories"}
	// ErrSafetyNumber is VerifyFriend with a safety number that is not the one
	// for the friend's key now: their key changed since the number was shown,
	// or no number was given for a key change, whose new number must be
	// compared first.
	ErrSafetyNumber = &Error{Code: CodeConflict, Message: "that is not the current safety number"}
	// ErrClosed is a call after Close.
	ErrClosed = &Error{Code: CodeUnavailable, Message: "the node is shutting down"}
	// ErrRemovedByPeer is sending to a friend who removed us (their signed
	// removal notice arrived): nothing goes to them until one side adds
	// the other again.
	ErrRemovedByPeer = &Error{Code: CodeRemovedByPeer, Message: "this friend removed you"}
	// ErrNotRetryable is RetryMessage of a message that is not a failed
	// outgoing one (still on its way, delivered, or received).
	ErrNotRetryable = &Error{Code: CodeNotRetryable, Message: "only a failed outgoing message can be sent again"}
	// ErrEmptyMessage is a message with no text, or only white space; it is
	// also a case of ErrInvalid.
	ErrEmptyMessage = &Error{Code: CodeEmptyText, Message: "the message is empty or only white space", Err: ErrInvalid}
	// ErrThrottled is a login refused without checking the passphrase,
	// because too many wrong ones came before it. The error returned wraps
	// it and carries RetryAfter.
	ErrThrottled = &Error{Code: CodeThrottled, Message: "too many wrong passphrases"}
	// ErrNotMember is a group operation by someone who is not (or no
	// longer) a member of the group: posting or reading after a removal.
	ErrNotMember = &Error{Code: CodeNotMember, Message: "not a member of the group"}
	// ErrNotAdmin is a change to a group's members by a member who is not
	// its admin.
	ErrNotAdmin = &Error{Code: CodeNotAdmin, Message: "only an admin of the group may do this"}
)

// fail returns a case of the sentinel kind: its code, and its message
// followed by the detail.
func fail(kind *Error, format string, args ...any) error {
	return &Error{Code: kind.Code, Message: userMessage(kind, format, args), Err: kind}
}

// failWith is fail with a cause that errors.Is and errors.As see too
// (the message has the detail only, not the cause's text).
func failWith(kind *Error, cause error, format string, args ...any) error {
	return &Error{Code: kind.Code, Message: userMessage(kind, format, args), Err: fmt.Errorf("%w: %w", kind, cause)}
}

// maxMessage bounds an error message shown to the user.
const maxMessage = 300

// userMessage is the kind's message and the detail, on one line and cut
// to maxMessage bytes (a network cause can be long).
func userMessage(kind *Error, format string, args []any) string {
	s := strings.Join(strings.Fields(kind.Message+": "+fmt.Sprintf(format, args...)), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// throttledError is the error of a login refused for wait.
func throttledError(wait time.Duration) error {
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	return &Error{
		Code:       CodeThrottled,
		Message:    fmt.Sprintf("%s: try again in %d s", ErrThrottled.Message, secs),
		RetryAfter: wait,
		Err:        ErrThrottled,
	}
}

// ParseUserID parses a user ID a caller gave in field; a malformed one is
// ErrInvalid, with a message that names the field.
func ParseUserID(field, s string) (protocol.ID, error) {
	id, err := protocol.ParseID(s)
	if err != nil {
		return id, failWith(ErrInvalid, err, "%s is not a user ID (52 base32 characters)", field)
	}
	return id, nil
}

// ParseGroupID parses a group ID (64 hex digits) a caller gave in field;
// a malformed one is ErrInvalid.
func ParseGroupID(field, s string) (protocol.GroupID, error) {
	var id protocol.GroupID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fail(ErrInvalid, "%s is not a group ID (%d hex digits)", field, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

// ParseMsgID parses a message ID a caller gave in field ("" is the zero
// ID); a malformed one is ErrInvalid.
func ParseMsgID(field, s string) (protocol.MsgID, error) {
	if s == "" {
		return protocol.MsgID{}, nil
	}
	id, err := protocol.ParseMsgID(s)
	if err != nil {
		return id, failWith(ErrInvalid, err, "%s is not a message ID (32 hex digits)", field)
	}
	return id, nil
}

// digitsOnly drops the spaces of a number shown in groups.
func digitsOnly(s string) string { return strings.Join(strings.Fields(s), "") }
