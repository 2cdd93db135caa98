package node

import (
	"errors"
	"fmt"
	"time"
)

// Errors callers branch on. The API maps each to its own code.
var (
	// ErrWrongState is an operation the node's state does not allow
	// (sending while locked, logging in before registering).
	ErrWrongState = errors.New("node: not possible in this state")
	// ErrExists is Register when an identity already exists.
	ErrExists = errors.New("node: an identity already exists")
	// ErrBadPassphrase is a wrong passphrase.
	ErrBadPassphrase = errors.New("node: wrong passphrase")
	// ErrWeakPassphrase is a passphrase shorter than minPassphrase.
	ErrWeakPassphrase = errors.New("node: passphrase too short")
	// ErrInvalid is an argument that does not parse or is out of range.
	ErrInvalid = errors.New("node: invalid argument")
	// ErrNotFound is an unknown friend, message or peer.
	ErrNotFound = errors.New("node: not found")
	// ErrNotFriend is sending to a user who is not an accepted friend.
	ErrNotFriend = errors.New("node: not an accepted friend")
	// ErrTooLarge is a message body over protocol.MaxBodySize.
	ErrTooLarge = errors.New("node: message too large")
	// ErrUnavailable is a network operation that could not be done now.
	ErrUnavailable = errors.New("node: unavailable")
	// ErrKeyChanged is sending to a friend whose directory record shows a
	// key that does not follow from the pinned one by a signed rotation;
	// VerifyFriend accepts the new key.
	ErrKeyChanged = errors.New("node: friend's key changed")
	// ErrKeyFork is sending to a friend whose key was seen to sign two
	// histories (two different records or rotations at one sequence
	// number: a stolen key, or a misbehaving device); VerifyFriend
	// releases what is held once the user compared safety numbers again.
	ErrKeyFork = errors.New("node: friend's key signed two histories")
	// ErrSafetyNumber is VerifyFriend with a safety number that is not the one
	// for the friend's key now: their key changed since the number was shown,
	// or no number was given for a key change, whose new number must be
	// compared first.
	ErrSafetyNumber = errors.New("node: not the current safety number")
	// ErrClosed is a call after Close.
	ErrClosed = errors.New("node: closed")
	// ErrRemovedByPeer is sending to a friend who removed us (their signed
	// removal notice arrived): nothing goes to them until one side adds
	// the other again.
	ErrRemovedByPeer = errors.New("node: this friend removed you")
	// ErrNotRetryable is RetryMessage of a message that is not a failed
	// outgoing one (still on its way, delivered, or received).
	ErrNotRetryable = errors.New("node: only a failed outgoing message can be sent again")
)

// ErrEmptyMessage is a message with no text, or only white space. It
// wraps ErrInvalid.
var ErrEmptyMessage = fmt.Errorf("%w: the message is empty or only white space", ErrInvalid)

// ThrottledError is a login refused without checking the passphrase,
// because too many wrong ones came before it. It wraps ErrThrottled.
type ThrottledError struct {
	RetryAfter time.Duration
}

// ErrThrottled is what a *ThrottledError matches with errors.Is.
var ErrThrottled = errors.New("node: too many wrong passphrases")

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v: retry after %v", ErrThrottled, e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Unwrap() error { return ErrThrottled }
