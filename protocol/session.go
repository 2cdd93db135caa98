package protocol

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Session errors. Every cryptographic failure is ErrAuth, as for envelopes.
var (
	// ErrSessionUnknown is a session message (or reset) naming a session
	// the receiver does not have: never had, reset, or past its grace
	// period. The receiver answers with a session-reset request.
	ErrSessionUnknown = errors.New("protocol: unknown session")
	// ErrSessionKeyMissing is a responder's message that the initiator
	// cannot verify yet: it carries no certificate and the responder's
	// certified session key has not arrived. Sending it again later helps.
	ErrSessionKeyMissing = errors.New("protocol: session signing key not yet certified")
	// ErrMessageKeyGone is a message whose key was used already (a replay)
	// or deleted: older than the MaxSkippedKeys window, or of a chain the
	// session has left; or, signed by the peer, of a chain this state
	// cannot derive (the two states diverged: one was restored from an old
	// copy). Nothing can open it any more. A caller whose msg_id check says
	// the message is new treats it as lost state: it asks for a reset, and
	// the sender sends it again in a new session.
	ErrMessageKeyGone = errors.New("protocol: message key used or deleted")
	// ErrSkipLimit is a message that would make the session skip more than
	// MaxSkipJump message keys. Nothing is derived and the session is unchanged.
	ErrSkipLimit = errors.New("protocol: too many skipped messages")
)

// Re-keying: a session should be replaced by a new start when either is reached.
const (
	SessionMaxAge      = 7 * 24 * time.Hour
	SessionMaxMessages = 10000
)

// Session is one double-ratchet session between two users: the state one
// side keeps. Its methods are transactional: on error the session is
// unchanged; on success it has advanced and the caller persists Marshal()
// in the same transaction as what the message did. A Session is not safe
// for concurrent use.
type Session struct {
	id            SessionID
	me, meKey     ID // my user ID and RSA key ID when the session started
	peer, peerKey ID
	initiator     bool
	started       int64 // the start envelope's timestamp (unix ms)
	superseded    int64 // unix ms when another session became current; 0 if current
	messages      uint64
	signing       ed25519.PrivateKey
	peerSigning   ed25519.PublicKey // nil until certified
	certSig       []byte            // responder: RSA signature on its certificate
	confirmed     bool              // responder: the initiator has its certificate
	r             ratchet
}

// ID returns the session's ID.
func (s *Session) ID() SessionID { return s.id }

// Peer returns the other user's ID.
func (s *Session) Peer() ID { return s.peer }

// Keys returns the session's anchors: the RSA key IDs that certified each
// side's session key when it started (mine: the start's signing key if I
// initiated, else the key of my certificate; the peer's likewise). After
// either side rotates its identity key, a new session starts, and this one
// opens messages only while Anchors trust both (PeerSessions.OpenWith).
func (s *Session) Keys() (mine, peers ID) { return s.meKey, s.peerKey }

// Initiator reports whether this side started the session.
func (s *Session) Initiator() bool { return s.initiator }

// Started returns the time of the session's start envelope.
func (s *Session) Started() time.Time { return time.UnixMilli(s.started) }

// Messages returns how many messages the session has carried both ways.
func (s *Session) Messages() uint64 { return s.messages }

// NeedsRekey reports whether the session is due to be replaced by a new
// start: SessionMaxAge after it started, or after SessionMaxMessages.
func (s *Session) NeedsRekey(now time.Time) bool {
	return now.Sub(s.Started()) >= SessionMaxAge || s.messages >= SessionMaxMessages
}

// clone returns a copy that shares no mutable state with s (the ratchet's
// slices are copy-on-write).
func (s *Session) clone() *Session {
	c := *s
	return &c
}

// StartSession starts a session from s to r, whose prekey becomes the
// responder's first ratchet key, and seals the start envelope
// (KindSessionStart, suite 2) carrying the first message kind and body
// (kind 0 and an empty body: no first message). replaces names the session
// this one replaces, if any (the zero ID: none).
func StartSession(s Sender, r Recipient, replaces SessionID, kind Kind, body []byte, now time.Time) (*Session, *Envelope, error) {
	return startSession(s, r, replaces, kind, MsgID{}, body, now)
}

// startSession is StartSession with the start envelope's msg_id (zero: a
// random one).
func startSession(s Sender, r Recipient, replaces SessionID, kind Kind, id MsgID, body []byte, now time.Time) (*Session, *Envelope, error) {
	if r.Prekey == nil {
		return nil, nil, fmt.Errorf("%w: a session start needs the recipient's prekey", ErrUnknownPrekey)
	}
	if s.Key == nil {
		return nil, nil, fmt.Errorf("%w: session start needs a sender key", ErrMalformed)
	}
	if len(body) > MaxStartBody {
		return nil, nil, fmt.Errorf("%w: first message of %d bytes (max %d)", ErrTooLarge, len(body), MaxStartBody)
	}
	if kind == 0 && len(body) != 0 {
		return nil, nil, fmt.Errorf("%w: a body without a kind", ErrMalformed)
	}
	if kind != 0 && !sessionKind(kind) {
		return nil, nil, fmt.Errorf("%w: a first message of kind %s", ErrMalformed, kind)
	}
	st := sessionStart{replaces: replaces, kind: kind, body: body}
	if _, err := rand.Read(st.id[:]); err != nil {
		return nil, nil, fmt.Errorf("generating session ID: %w", err)
	}
	if _, err := rand.Read(st.seed[:]); err != nil {
		return nil, nil, fmt.Errorf("generating root seed: %w", err)
	}
	pub, signing, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("generating session key: %w", err)
	}
	self, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating ratchet key: %w", err)
	}
	st.signing, st.ratchet = pub, pubOf(self)
	env, err := seal(sealInput{from: s, to: r, kind: KindSessionStart, body: st.marshal(), now: now, id: id})
	if err != nil {
		return nil, nil, err
	}
	sk, err := rootKey(&env.Header, &st)
	if err != nil {
		return nil, nil, err
	}
	rt, err := initiatorRatchet(sk, self, r.Prekey.Public)
	if err != nil {
		return nil, nil, err
	}
	sess := &Session{
		id: st.id, me: env.Sender, meKey: env.SenderKey, peer: env.Recipient, peerKey: env.RecipientKey,
		initiator: true, started: env.Timestamp, signing: signing, r: rt,
	}
	if kind != 0 {
		sess.messages = 1
	}
	return sess, env, nil
}

// rootKey is SK = HKDF-SHA256(ikm = root_seed, salt = session_id,
// info = "parley/v1/sess-root" ‖ SHA-256(canonical start header)).
func rootKey(h *Header, st *sessionStart) (key32, error) {
	hh := sha256.Sum256(h.Canonical())
	okm, err := hkdf.Key(sha256.New, st.seed[:], st.id[:], LabelSessRoot+string(hh[:]), 32)
	if err != nil {
		return key32{}, fmt.Errorf("deriving root key: %w", err)
	}
	return key32(okm), nil
}

// AcceptSession makes the responder's side of a session from m, a
// KindSessionStart envelope that Opener.Open opened (so its RSA signature,
// which certifies the initiator's session key, has been checked), and
// prekey, the private prekey m names. me is the responder's identity key,
// which signs the certificate of its own session key (one RSA signature
// per session). It returns the session and the start's first message
// (nil when it carries none), with m's header and the inner kind.
func AcceptSession(m *Message, prekey *Prekey, me Signer) (*Session, *Message, error) {
	if m.Kind != KindSessionStart {
		return nil, nil, fmt.Errorf("%w: kind %s is not a session start", ErrMalformed, m.Kind)
	}
	if m.Suite != SuiteRSAX25519 {
		return nil, nil, fmt.Errorf("%w: session start of suite %s", ErrMalformed, m.Suite)
	}
	if prekey == nil || prekey.priv == nil || prekey.ID() != m.PrekeyID {
		return nil, nil, fmt.Errorf("%w: %d", ErrUnknownPrekey, m.PrekeyID)
	}
	if me == nil || me.Public().ID() != m.RecipientKey {
		return nil, nil, fmt.Errorf("%w: session start for key %s", ErrNotForMe, m.RecipientKey)
	}
	st, err := parseSessionStart(m.Body)
	if err != nil {
		return nil, nil, err
	}
	sk, err := rootKey(&m.Header, st)
	if err != nil {
		return nil, nil, err
	}
	rt, err := responderRatchet(sk, prekey.priv, st.ratchet)
	if err != nil {
		return nil, nil, err
	}
	pub, signing, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("generating session key: %w", err)
	}
	sig, err := me.Sign(LabelSessCert, certBytes(st.id, m.Sender, m.Recipient, m.RecipientKey, pub))
	if err != nil {
		return nil, nil, fmt.Errorf("certifying session key: %w", err)
	}
	sess := &Session{
		id: st.id, me: m.Recipient, meKey: m.RecipientKey, peer: m.Sender, peerKey: m.SenderKey,
		started: m.Timestamp, signing: signing, peerSigning: ed25519.PublicKey(st.signing),
		certSig: sig, r: rt,
	}
	if st.kind == 0 {
		return sess, nil, nil
	}
	sess.messages = 1
	first := &Message{Header: m.Header, Body: st.body}
	first.Kind = st.kind
	return sess, first, nil
}

// Seal encrypts body as the session's next message, signed with the
// session key (SigSession). With strict set, it is signed instead with
// strict, the sender's identity key the session started with (SigIdentity,
// the --strict-rsa-signatures mode). Until the initiator is known to have
// it, a responder's message carries its certificate.
func (s *Session) Seal(kind Kind, body []byte, now time.Time, strict Signer) (*SessionMessage, error) {
	return s.seal(kind, MsgID{}, body, now, strict, true)
}

// seal is Seal with the message's msg_id (zero: a random one). With
// strict set and signNow not, the message is left without its signature
// (SignIdentity adds it).
func (s *Session) seal(kind Kind, id MsgID, body []byte, now time.Time, strict Signer, signNow bool) (*SessionMessage, error) {
	if !sessionKind(kind) {
		return nil, fmt.Errorf("%w: a session message of kind %s", ErrMalformed, kind)
	}
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("%w: body of %d bytes (max %d)", ErrTooLarge, len(body), MaxBodySize)
	}
	if strict != nil && strict.Public().ID() != s.meKey {
		return nil, fmt.Errorf("%w: strict signer is not the key the session started with", ErrMalformed)
	}
	next, mk, n := s.r.sealKey()
	m := &SessionMessage{SessionHeader: SessionHeader{
		Version: SessionVersion, SigAlg: SigSession, Kind: kind, Timestamp: now.UnixMilli(),
		Sender: s.me, Recipient: s.peer, Session: s.id, RatchetKey: next.dhPub,
		PreviousChain: next.pn, Number: n,
	}}
	if strict != nil {
		m.SigAlg = SigIdentity
	}
	m.MsgID = id
	if id.IsZero() {
		if _, err := rand.Read(m.MsgID[:]); err != nil {
			return nil, fmt.Errorf("generating msg_id: %w", err)
		}
	}
	if !s.initiator && !s.confirmed {
		m.CertKey, m.CertSignature = s.signing.Public().(ed25519.PublicKey), s.certSig
	}
	aead, nonce, err := messageCipher(mk, m.MsgID)
	if err != nil {
		return nil, err
	}
	canonical := m.Canonical()
	pt := padSession(body)
	m.Ciphertext = aead.Seal(pt[:0], nonce, pt, m.aad(canonical))
	switch {
	case strict != nil && !signNow:
	case strict != nil:
		if m.Signature, err = strict.Sign(LabelSessSig, m.signedBytes(canonical, false)); err != nil {
			return nil, fmt.Errorf("signing session message: %w", err)
		}
	default:
		m.Signature = ed25519.Sign(s.signing, m.signedBytes(canonical, true))
	}
	s.r = next
	s.messages++
	return m, nil
}

// Open verifies and decrypts m, a message of this session, in this
// order: addressing (ErrNotForMe, ErrSessionUnknown), the anchor (peer
// must be the peer's RSA key the session started with, the one that
// certified the peer's session key: ErrUnknownSender otherwise, so that a
// caller who no longer trusts that key cannot open the session's
// messages by mistake), the responder's certificate if it carries one
// (RSA-PSS by peer), the signature (Ed25519 by the certified session key,
// or RSA-PSS by peer for SigIdentity; ErrSessionKeyMissing while the
// responder's key is not certified), and only then the ratchet
// (ErrMessageKeyGone, ErrSkipLimit) and the AEAD (ErrAuth). The timestamp
// window (m.CheckTime) and the msg_id replay check belong to the caller.
// The returned Message has Suite SuiteSession and the RSA key IDs the
// session started with.
func (s *Session) Open(m *SessionMessage, peer *PublicKey) (*Message, error) {
	if m.Recipient != s.me || m.Sender != s.peer {
		return nil, fmt.Errorf("%w: session message from %s to %s", ErrNotForMe, m.Sender, m.Recipient)
	}
	if m.Session != s.id {
		return nil, fmt.Errorf("%w: %s", ErrSessionUnknown, m.Session)
	}
	if err := s.checkPeerKey(peer); err != nil {
		return nil, err
	}
	canonical := m.Canonical()
	signer := s.peerSigning
	if len(m.CertKey) > 0 {
		if !s.initiator {
			return nil, fmt.Errorf("%w: certificate from the initiator", ErrMalformed)
		}
		switch {
		case signer != nil:
			if !equal32(signer, m.CertKey) {
				return nil, fmt.Errorf("%w: a second session key", ErrAuth)
			}
		default:
			cb := certBytes(s.id, s.me, s.peer, s.peerKey, m.CertKey)
			if err := peer.Verify(LabelSessCert, cb, m.CertSignature); err != nil {
				return nil, fmt.Errorf("session key certificate: %w", err)
			}
			signer = ed25519.PublicKey(m.CertKey)
		}
	}
	switch m.SigAlg {
	case SigSession:
		if signer == nil {
			return nil, ErrSessionKeyMissing
		}
		if !ed25519.Verify(signer, m.signedBytes(canonical, true), m.Signature) {
			return nil, fmt.Errorf("%w: bad session signature", ErrAuth)
		}
	case SigIdentity:
		if err := peer.Verify(LabelSessSig, m.signedBytes(canonical, false), m.Signature); err != nil {
			return nil, fmt.Errorf("session message signature: %w", err)
		}
	default:
		return nil, fmt.Errorf("%w: signature algorithm %d", ErrMalformed, m.SigAlg)
	}

	next, mk, stepped, err := s.r.openKey(m.RatchetKey, m.PreviousChain, m.Number)
	if err != nil {
		return nil, err
	}
	aead, nonce, err := messageCipher(mk, m.MsgID)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, m.Ciphertext, m.aad(canonical))
	if err != nil && stepped {
		// The peer signed it, but its chain is not the one our state
		// derives: a message of a chain we left long ago, or states that
		// diverged (one side restored from an old copy).
		return nil, fmt.Errorf("%w: the session state cannot derive this chain", ErrMessageKeyGone)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: content", ErrAuth)
	}
	body, err := unpadSession(pt)
	if err != nil {
		return nil, err
	}
	s.r = next
	s.peerSigning = signer
	s.messages++
	if stepped && !s.initiator {
		s.confirmed = true
	}
	return &Message{Header: Header{
		Version: Version, Suite: SuiteSession, Kind: m.Kind, MsgID: m.MsgID, Timestamp: m.Timestamp,
		Sender: m.Sender, SenderKey: s.peerKey, Recipient: m.Recipient, RecipientKey: s.meKey,
	}, Body: body}, nil
}

// checkPeerKey checks that peer is the RSA key the session started with.
func (s *Session) checkPeerKey(peer *PublicKey) error {
	if peer == nil || peer.ID() != s.peerKey {
		return fmt.Errorf("%w: the session's peer key %s is needed", ErrUnknownSender, s.peerKey)
	}
	return nil
}

// padSession lays out a session plaintext: u32 len(body) ‖ body ‖ zeros,
// padded to a multiple of 256 bytes, with room for the GCM tag.
func padSession(body []byte) []byte {
	n := (sessPadHead + len(body) + padBlock - 1) / padBlock * padBlock
	pt := make([]byte, n, n+gcmTag)
	binary.BigEndian.PutUint32(pt, uint32(len(body)))
	copy(pt[sessPadHead:], body)
	return pt
}

func unpadSession(pt []byte) ([]byte, error) {
	if len(pt) < padBlock || len(pt)%padBlock != 0 {
		return nil, fmt.Errorf("%w: inner length", ErrAuth)
	}
	n := int(binary.BigEndian.Uint32(pt))
	o := sessPadHead
	if n > MaxBodySize || n > len(pt)-o || (o+n+padBlock-1)/padBlock*padBlock != len(pt) || !isZero(pt[o+n:]) {
		return nil, fmt.Errorf("%w: inner padding", ErrAuth)
	}
	return pt[o : o+n : o+n], nil
}
