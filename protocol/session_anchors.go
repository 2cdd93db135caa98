package protocol

import (
	"errors"
	"fmt"
	"time"
)

// ErrKeyRetired is something anchored in an RSA identity key that its
// owner replaced by a rotation and whose grace period is over: a session
// whose session key that key certified (it also wraps ErrSessionUnknown:
// the receiver refuses it and asks for a new session), or an envelope
// sealed to a retired key of the receiver (see Opener.Retired). The
// sender's remedy is the same in both cases: learn the current key and
// seal again.
var ErrKeyRetired = errors.New("protocol: anchored in a retired identity key")

// RetiredKey is an RSA identity key that a rotation replaced, trusted to
// anchor sessions until Until, the end of its grace period.
type RetiredKey struct {
	ID ID
	// Key is the public key: needed for the peer's retired keys (it
	// verifies a responder's certificate that arrives late), unused for
	// one's own.
	Key   *PublicKey
	Until time.Time
}

// Anchors are the RSA identity keys that may anchor a session between two
// users now. A session is anchored on each side in the key that certified
// that side's Ed25519 session key (Session.Keys: the start envelope's
// signing key for the initiator, the certificate's key for the
// responder). It opens messages only while both anchors are trusted: the
// peer's is Peer (the key pinned for the peer) or one of PeerRetired
// before its Until; mine is Mine or one of MineRetired before its Until.
// A zero Mine trusts any key of mine.
type Anchors struct {
	Peer        *PublicKey
	PeerRetired []RetiredKey
	Mine        ID
	MineRetired []RetiredKey
}

// peerKey returns the trusted public key of the peer with ID id at now,
// or nil.
func (a *Anchors) peerKey(id ID, now time.Time) *PublicKey {
	if a.Peer != nil && a.Peer.ID() == id {
		return a.Peer
	}
	for _, r := range a.PeerRetired {
		if r.ID == id && r.Key != nil && r.Key.ID() == id && now.Before(r.Until) {
			return r.Key
		}
	}
	return nil
}

// trustsMine reports whether my key id may anchor a session at now.
func (a *Anchors) trustsMine(id ID, now time.Time) bool {
	if a.Mine.IsZero() || a.Mine == id {
		return true
	}
	for _, r := range a.MineRetired {
		if r.ID == id && now.Before(r.Until) {
			return true
		}
	}
	return false
}

// anchored reports whether s may still open messages under a at now, and
// returns the peer's public key it is anchored in.
func (a *Anchors) anchored(s *Session, now time.Time) (*PublicKey, error) {
	peer := a.peerKey(s.peerKey, now)
	if peer == nil {
		return nil, fmt.Errorf("%w: %w: session %s is anchored in the peer's key %s", ErrSessionUnknown, ErrKeyRetired, s.id, s.peerKey)
	}
	if !a.trustsMine(s.meKey, now) {
		return nil, fmt.Errorf("%w: %w: session %s is anchored in my key %s", ErrSessionUnknown, ErrKeyRetired, s.id, s.meKey)
	}
	return peer, nil
}

// OpenWith opens a message of any live session with the peer whose
// anchors a trusts at now (see Anchors), verifying with the peer's key
// the session is anchored in. A session anchored in a key that is no
// longer trusted (a rotation's grace is over) is refused as
// ErrSessionUnknown wrapping ErrKeyRetired, before anything else is
// checked: the caller asks for a new session, which is anchored in the
// current keys. On error p is unchanged.
func (p *PeerSessions) OpenWith(m *SessionMessage, a Anchors, now time.Time) (*Message, error) {
	return p.open(m, now, func(s *Session) (*PublicKey, error) { return a.anchored(s, now) })
}

// Unanchored lists the sessions with the peer that a no longer trusts at
// now (their anchor's grace is over), for a caller that drops them.
func (p *PeerSessions) Unanchored(a Anchors, now time.Time) []SessionID {
	var out []SessionID
	for _, s := range p.sessions {
		if _, err := a.anchored(s, now); err != nil {
			out = append(out, s.id)
		}
	}
	return out
}
