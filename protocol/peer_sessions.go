package protocol

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// Session lifecycle with one peer.
const (
	// SessionGrace is how long a session that is no longer current still
	// opens messages: those sealed before its peer learned of the new one.
	// It equals DefaultMaxAge, beyond which those messages are stale anyway.
	SessionGrace = DefaultMaxAge
	// MaxPeerSessions caps the sessions kept with one peer (the current one
	// and those in their grace period); beyond it the oldest are dropped.
	MaxPeerSessions = 4
	// MaxRefusedSessions caps the refused session IDs kept with one peer
	// (see Refuse); each is kept for SessionGrace.
	MaxRefusedSessions = 32
)

// refusedSession is a session ID this side sent a reset for, and when.
type refusedSession struct {
	id SessionID
	at int64 // unix ms
}

// PeerSessions is every session one user has with one peer, stored as one
// blob (Marshal, ParsePeerSessions). The current session — the one Seal
// uses — is the live session with the latest start (by the start
// envelope's timestamp, then by session ID), a rule both sides apply to the
// same starts, so two starts that cross settle on the same session on both
// sides. The others still open messages for SessionGrace after they were
// superseded.
//
// Every method is transactional: on error p is unchanged; on success the
// caller persists p.Marshal() in the same transaction as the message (or,
// if that transaction fails, discards p and parses the stored blob again).
// A PeerSessions is not safe for concurrent use.
type PeerSessions struct {
	me, peer ID
	sessions []*Session       // current first, then by start, newest first
	refused  []refusedSession // oldest first
}

// NewPeerSessions returns an empty set of sessions between me and peer.
func NewPeerSessions(me, peer ID) *PeerSessions { return &PeerSessions{me: me, peer: peer} }

// Clone returns a snapshot of p that no later call on p changes (the
// sessions are copy-on-write), for a caller that must roll p back when the
// transaction storing its new state fails.
func (p *PeerSessions) Clone() *PeerSessions {
	return &PeerSessions{me: p.me, peer: p.peer, sessions: slices.Clone(p.sessions), refused: slices.Clone(p.refused)}
}

// Me and Peer return the two users.
func (p *PeerSessions) Me() ID   { return p.me }
func (p *PeerSessions) Peer() ID { return p.peer }

// Current returns the session Seal uses, or nil. It is for reading (ID,
// NeedsRekey, Keys): seal and open through p, whose methods are
// transactional and keep Clone's snapshots intact.
func (p *PeerSessions) Current() *Session {
	if len(p.sessions) == 0 {
		return nil
	}
	return p.sessions[0]
}

// Session returns the live session id, or nil.
func (p *PeerSessions) Session(id SessionID, now time.Time) *Session {
	for _, s := range p.sessions {
		if s.id == id && p.live(s, now) {
			return s
		}
	}
	return nil
}

func (p *PeerSessions) live(s *Session, now time.Time) bool {
	return s.superseded == 0 || now.UnixMilli() < s.superseded+SessionGrace.Milliseconds()
}

// NeedsStart reports whether the next message to the peer must start a new
// session: there is none, or the current one is due for re-keying.
func (p *PeerSessions) NeedsStart(now time.Time) bool {
	c := p.Current()
	return c == nil || c.NeedsRekey(now)
}

// Start starts a new session (see StartSession) that replaces the current
// one, makes it current, and returns its start envelope.
func (p *PeerSessions) Start(s Sender, r Recipient, kind Kind, body []byte, now time.Time) (*Envelope, error) {
	return p.StartWithID(s, r, kind, MsgID{}, body, now)
}

// StartWithID is Start with the start envelope's msg_id set to id (zero:
// a random one): a message sealed again in a new session keeps its ID, so
// the receiver stores it at most once.
func (p *PeerSessions) StartWithID(s Sender, r Recipient, kind Kind, id MsgID, body []byte, now time.Time) (*Envelope, error) {
	if s.UserID != p.me || r.UserID != p.peer {
		return nil, fmt.Errorf("%w: session start from %s to %s", ErrNotForMe, s.UserID, r.UserID)
	}
	var replaces SessionID
	if c := p.Current(); c != nil {
		replaces = c.id
	}
	sess, env, err := startSession(s, r, replaces, kind, id, body, now)
	if err != nil {
		return nil, err
	}
	p.sessions = p.with(sess, now)
	return env, nil
}

// Accept takes in a session start from the peer (see AcceptSession) and
// returns its first message, or nil. A start whose session the set already
// has is ErrMessageKeyGone.
func (p *PeerSessions) Accept(m *Message, prekey *Prekey, me Signer, now time.Time) (*Message, error) {
	if m.Sender != p.peer || m.Recipient != p.me {
		return nil, fmt.Errorf("%w: session start from %s to %s", ErrNotForMe, m.Sender, m.Recipient)
	}
	sess, first, err := AcceptSession(m, prekey, me)
	if err != nil {
		return nil, err
	}
	if p.isRefused(sess.id, now) {
		return nil, fmt.Errorf("%w: session %s was refused (reset)", ErrSessionUnknown, sess.id)
	}
	for _, s := range p.sessions {
		if s.id == sess.id {
			return nil, fmt.Errorf("%w: session %s started twice", ErrMessageKeyGone, s.id)
		}
	}
	p.sessions = p.with(sess, now)
	return first, nil
}

// Seal seals a message in the current session (see Session.Seal);
// ErrSessionUnknown when there is none.
func (p *PeerSessions) Seal(kind Kind, body []byte, now time.Time, strict Signer) (*SessionMessage, error) {
	return p.SealWithID(kind, MsgID{}, body, now, strict)
}

// SealWithID is Seal with the message's msg_id set to id (zero: a random
// one), for a message sealed again.
func (p *PeerSessions) SealWithID(kind Kind, id MsgID, body []byte, now time.Time, strict Signer) (*SessionMessage, error) {
	return p.sealWithID(kind, id, body, now, strict, true)
}

// SealUnsigned is SealWithID in the strict mode (strict must be set)
// without the message's RSA signature: it advances the session as
// SealWithID does and returns the message unsigned, which the caller
// signs with SignIdentity before it marshals it. The signature needs
// none of the session's state, so a caller that guards the state with a
// lock can sign after releasing it; if it never signs, the message is
// lost, which the peer's ratchet takes as a skipped message.
func (p *PeerSessions) SealUnsigned(kind Kind, id MsgID, body []byte, now time.Time, strict Signer) (*SessionMessage, error) {
	if strict == nil {
		return nil, fmt.Errorf("%w: SealUnsigned needs the strict signer", ErrMalformed)
	}
	return p.sealWithID(kind, id, body, now, strict, false)
}

func (p *PeerSessions) sealWithID(kind Kind, id MsgID, body []byte, now time.Time, strict Signer, signNow bool) (*SessionMessage, error) {
	c := p.Current()
	if c == nil {
		return nil, fmt.Errorf("%w: no session with %s", ErrSessionUnknown, p.peer)
	}
	next := c.clone()
	m, err := next.seal(kind, id, body, now, strict, signNow)
	if err != nil {
		return nil, err
	}
	p.sessions = replaced(p.sessions, 0, next)
	return m, nil
}

// Open opens a message of any live session with the peer (see
// Session.Open) that is anchored in peer, the peer's key the caller
// trusts; ErrSessionUnknown when the session is not there (the caller
// answers with a session-reset request), ErrUnknownSender when it is
// anchored in another key. OpenWith also takes the keys that rotations
// retired, during their grace, and checks this side's anchor.
func (p *PeerSessions) Open(m *SessionMessage, peer *PublicKey, now time.Time) (*Message, error) {
	return p.open(m, now, func(*Session) (*PublicKey, error) { return peer, nil })
}

// open opens m in its live session with the key anchor returns for that
// session; on error p is unchanged.
func (p *PeerSessions) open(m *SessionMessage, now time.Time, anchor func(s *Session) (*PublicKey, error)) (*Message, error) {
	if m.Sender != p.peer || m.Recipient != p.me {
		return nil, fmt.Errorf("%w: session message from %s to %s", ErrNotForMe, m.Sender, m.Recipient)
	}
	for i, s := range p.sessions {
		if s.id != m.Session || !p.live(s, now) {
			continue
		}
		peer, err := anchor(s)
		if err != nil {
			return nil, err
		}
		next := s.clone()
		msg, err := next.Open(m, peer)
		if err != nil {
			return nil, err
		}
		p.sessions = replaced(p.sessions, i, next)
		return msg, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrSessionUnknown, m.Session)
}

// Reset drops session id at the peer's request (a KindSessionReset
// envelope) and reports whether it was there. The next message then
// starts a new session if it was the current one.
func (p *PeerSessions) Reset(id SessionID, now time.Time) bool {
	i := slices.IndexFunc(p.sessions, func(s *Session) bool { return s.id == id })
	if i < 0 {
		return false
	}
	rest := slices.Delete(slices.Clone(p.sessions), i, i+1)
	p.sessions = arrange(rest, now)
	return true
}

// Refuse records that this side asked the peer to reset session id (it
// could not open a message of it): the session is dropped if it is here,
// and for SessionGrace neither its start nor its messages are taken any
// more, so that a message refused once, which the peer sends again in a
// new session, can never open a second time (say, its start arrives late).
// The caller stores p with the reset it sends.
func (p *PeerSessions) Refuse(id SessionID, now time.Time) {
	rest := slices.DeleteFunc(slices.Clone(p.sessions), func(s *Session) bool { return s.id == id })
	p.sessions = arrange(rest, now)
	if !p.isRefused(id, now) {
		at := now.UnixMilli()
		if n := len(p.refused); n > 0 {
			at = max(at, p.refused[n-1].at) // kept in order, whatever the clock does
		}
		p.refused = appendCapped(p.liveRefused(now), refusedSession{id: id, at: at}, MaxRefusedSessions)
	}
}

func (p *PeerSessions) isRefused(id SessionID, now time.Time) bool {
	return slices.ContainsFunc(p.liveRefused(now), func(r refusedSession) bool { return r.id == id })
}

// liveRefused returns the refused IDs inside their SessionGrace.
func (p *PeerSessions) liveRefused(now time.Time) []refusedSession {
	i := 0
	for i < len(p.refused) && now.UnixMilli() >= p.refused[i].at+SessionGrace.Milliseconds() {
		i++
	}
	return p.refused[i:]
}

// Expire drops the sessions past their grace period, and refusals as old.
func (p *PeerSessions) Expire(now time.Time) {
	p.sessions = arrange(slices.Clone(p.sessions), now)
	p.refused = slices.Clone(p.liveRefused(now))
}

// with returns the sessions with s added, arranged.
func (p *PeerSessions) with(s *Session, now time.Time) []*Session {
	return arrange(append(slices.Clone(p.sessions), s), now)
}

// arrange drops the sessions past their grace, orders the others,
// current first, marks them superseded at now if they were not, and keeps
// at most MaxPeerSessions. A session past its grace is never current
// again: a message refused as ErrSessionUnknown has been sent again in
// another session, and must not open later. Sessions it changes are copies.
func arrange(ss []*Session, now time.Time) []*Session {
	ss = slices.DeleteFunc(ss, func(s *Session) bool {
		return s.superseded != 0 && now.UnixMilli() >= s.superseded+SessionGrace.Milliseconds()
	})
	slices.SortFunc(ss, func(a, b *Session) int {
		if sessionBefore(a, b) {
			return -1
		}
		return 1
	})
	out := ss[:0]
	for i, s := range ss {
		switch {
		case i == 0 && s.superseded != 0:
			c := s.clone()
			c.superseded = 0
			s = c
		case i > 0 && s.superseded == 0:
			c := s.clone()
			c.superseded = now.UnixMilli()
			s = c
		}
		out = append(out, s)
	}
	if len(out) > MaxPeerSessions {
		out = out[:MaxPeerSessions]
	}
	return out
}

// sessionBefore reports whether a wins over b as the current session: the
// later start, and between starts of the same millisecond the greater ID.
// IDs are unique, so the order is total.
func sessionBefore(a, b *Session) bool {
	if a.started != b.started {
		return a.started > b.started
	}
	return bytes.Compare(a.id[:], b.id[:]) > 0
}

func replaced(ss []*Session, i int, s *Session) []*Session {
	out := slices.Clone(ss)
	out[i] = s
	return out
}

// Marshal encodes every session with the peer, private keys included:
// seal it before it touches a disk.
func (p *PeerSessions) Marshal() []byte {
	m := &pb.PeerSessionsState{Version: SessionVersion, Me: p.me[:], Peer: p.peer[:]}
	for _, s := range p.sessions {
		m.Sessions = append(m.Sessions, s.toPB())
	}
	for _, r := range p.refused {
		m.Refused = append(m.Refused, &pb.RefusedSession{SessionId: r.id[:], AtMs: r.at})
	}
	return marshal(m)
}

// ParsePeerSessions decodes what PeerSessions.Marshal produced, strictly,
// and checks that it is the blob of me and peer.
func ParsePeerSessions(b []byte, me, peer ID) (*PeerSessions, error) {
	if len(b) > MaxPeerSessionsSize {
		return nil, fmt.Errorf("%w: peer sessions of %d bytes", ErrTooLarge, len(b))
	}
	var m pb.PeerSessionsState
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("peer sessions: %w", err)
	}
	if m.GetVersion() != SessionVersion || len(m.GetSessions()) > MaxPeerSessions {
		return nil, fmt.Errorf("%w: peer sessions version or count", ErrMalformed)
	}
	if !bytes.Equal(m.GetMe(), me[:]) || !bytes.Equal(m.GetPeer(), peer[:]) {
		return nil, fmt.Errorf("%w: peer sessions of other users", ErrMalformed)
	}
	p := &PeerSessions{me: me, peer: peer}
	for i, sp := range m.GetSessions() {
		s, err := sessionFromPB(sp)
		if err != nil {
			return nil, err
		}
		if s.me != me || s.peer != peer || slices.ContainsFunc(p.sessions, func(o *Session) bool { return o.id == s.id }) {
			return nil, fmt.Errorf("%w: peer sessions hold a foreign or duplicate session", ErrMalformed)
		}
		if (i == 0) != (s.superseded == 0) || (i > 0 && !sessionBefore(p.sessions[i-1], s)) {
			return nil, fmt.Errorf("%w: peer sessions order", ErrMalformed)
		}
		p.sessions = append(p.sessions, s)
	}
	if len(m.GetRefused()) > MaxRefusedSessions {
		return nil, fmt.Errorf("%w: too many refused sessions", ErrMalformed)
	}
	for i, r := range m.GetRefused() {
		if len(r.GetSessionId()) != SessionIDSize || r.GetAtMs() <= 0 || (i > 0 && r.GetAtMs() < m.GetRefused()[i-1].GetAtMs()) {
			return nil, fmt.Errorf("%w: refused session", ErrMalformed)
		}
		p.refused = append(p.refused, refusedSession{id: SessionID(r.GetSessionId()), at: r.GetAtMs()})
	}
	return p, nil
}
