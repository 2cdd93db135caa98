package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// Session wire constants.
const (
	// SessionVersion is the session format version this package writes and reads.
	SessionVersion = 1
	// SessionIDSize is the size of a session ID.
	SessionIDSize = 16
	// MaxSessionMessageSize caps an encoded session message: a body of
	// MaxBodySize, padding, a certificate and an RSA-8192 signature fit.
	MaxSessionMessageSize = 40 << 10
	// MaxStartBody caps the first message's body carried by a session start,
	// so that the start fits an envelope's MaxBodySize.
	MaxStartBody = MaxBodySize - 256

	sessPadHead = 4 // u32 len(body)
	maxSessPad  = (sessPadHead + MaxBodySize + padBlock - 1) / padBlock * padBlock
)

// Domain labels of sessions.
const (
	LabelSessMsg  = "parley/v1/sess-msg"  // AEAD associated data
	LabelSessSig  = "parley/v1/sess-sig"  // session message signatures
	LabelSessCert = "parley/v1/sess-cert" // the responder's key certificate
)

// Envelope kinds of sessions.
const (
	// KindSessionStart is a suite-2 envelope whose body (pb.SessionStart)
	// starts a session and carries its first message.
	KindSessionStart Kind = 5
	// KindSessionReset is an envelope whose body (pb.SessionReset) names a
	// session its sender cannot open and asks for a new one.
	KindSessionReset Kind = 6
)

// sessionKind reports whether a session message may be of kind k: any
// kind but 0, the two that manage sessions and a removal notice, which
// are envelopes.
func sessionKind(k Kind) bool {
	return k != 0 && k != KindSessionStart && k != KindSessionReset && k != KindFriendRemoved
}

// SuiteSession marks a Message opened from a session message (never an
// envelope: ParseEnvelope refuses it).
const SuiteSession Suite = 3

// SigAlg says what signed a session message.
type SigAlg uint8

const (
	// SigSession is Ed25519 by the sender's certified session key.
	SigSession SigAlg = 1
	// SigIdentity is RSA-PSS-SHA256 by the sender's identity key (strict mode).
	SigIdentity SigAlg = 2
)

// SessionID names a session: 16 random bytes chosen by its initiator.
type SessionID [SessionIDSize]byte

func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is unset.
func (id SessionID) IsZero() bool { return id == SessionID{} }

// SessionHeader is every field of a session message in clear; the
// signature and the AEAD cover all of it.
type SessionHeader struct {
	Version       uint8
	SigAlg        SigAlg
	Kind          Kind
	MsgID         MsgID
	Timestamp     int64 // unix milliseconds
	Sender        ID    // sender user ID
	Recipient     ID    // recipient user ID
	Session       SessionID
	RatchetKey    [X25519KeySize]byte
	PreviousChain uint32 // PN
	Number        uint32 // N
	// CertKey and CertSignature are the responder's certified Ed25519
	// session key, on its messages until the initiator has it; else empty.
	CertKey       []byte
	CertSignature []byte
}

// Time returns the header's timestamp.
func (h *SessionHeader) Time() time.Time { return time.UnixMilli(h.Timestamp) }

// Canonical returns the header's canonical encoding:
//
//	u8 version ‖ u8 sig_alg ‖ u16 kind ‖ msg_id ‖ i64 timestamp_ms ‖
//	session_id (16) ‖ ratchet_key (32) ‖ u32 previous_chain ‖ u32 number ‖
//	bytes(cert_key) ‖ bytes(cert_signature)
func (h *SessionHeader) Canonical() []byte {
	c := newCanon(4 + MsgIDSize + 8 + SessionIDSize + X25519KeySize + 8 + 8 + len(h.CertKey) + len(h.CertSignature))
	c.u8(h.Version)
	c.u8(uint8(h.SigAlg))
	c.u16(uint16(h.Kind))
	c.raw(h.MsgID[:])
	c.i64(h.Timestamp)
	c.raw(h.Session[:])
	c.raw(h.RatchetKey[:])
	c.u32(h.PreviousChain)
	c.u32(h.Number)
	c.bytes(h.CertKey)
	c.bytes(h.CertSignature)
	return c.b
}

// aad is the AEAD's associated data: "parley/v1/sess-msg" ‖ sender ID ‖
// recipient ID ‖ canonical header.
func (h *SessionHeader) aad(canonical []byte) []byte {
	b := make([]byte, 0, len(LabelSessMsg)+2*IDSize+len(canonical))
	b = append(b, LabelSessMsg...)
	b = append(b, h.Sender[:]...)
	b = append(b, h.Recipient[:]...)
	return append(b, canonical...)
}

// SessionMessage is a sealed message inside a session.
type SessionMessage struct {
	SessionHeader
	Ciphertext []byte
	Signature  []byte
}

// signedBytes is what the sender signs after the label: sender ID ‖
// recipient ID ‖ canonical header ‖ SHA-256(ciphertext). Ed25519 signs
// "parley/v1/sess-sig" ‖ signedBytes; RSA-PSS signs it under that label.
func (m *SessionMessage) signedBytes(canonical []byte, withLabel bool) []byte {
	d := sha256.Sum256(m.Ciphertext)
	b := make([]byte, 0, len(LabelSessSig)+2*IDSize+len(canonical)+len(d))
	if withLabel {
		b = append(b, LabelSessSig...)
	}
	b = append(b, m.Sender[:]...)
	b = append(b, m.Recipient[:]...)
	b = append(b, canonical...)
	return append(b, d[:]...)
}

// SignIdentity adds the RSA signature (SigIdentity) to m, sealed by
// PeerSessions.SealUnsigned, with strict, the signer it was sealed with:
// the signature SealWithID would have made.
func (m *SessionMessage) SignIdentity(strict Signer) error {
	if m.SigAlg != SigIdentity || len(m.Signature) != 0 {
		return fmt.Errorf("%w: not an unsigned SigIdentity message", ErrMalformed)
	}
	sig, err := strict.Sign(LabelSessSig, m.signedBytes(m.Canonical(), false))
	if err != nil {
		return fmt.Errorf("signing session message: %w", err)
	}
	m.Signature = sig
	return nil
}

// Marshal encodes m (protobuf, canonical).
func (m *SessionMessage) Marshal() []byte {
	p := &pb.SessionMessage{
		Version:       uint32(m.Version),
		SigAlg:        uint32(m.SigAlg),
		Kind:          uint32(m.Kind),
		MsgId:         m.MsgID[:],
		TimestampMs:   m.Timestamp,
		Sender:        m.Sender[:],
		Recipient:     m.Recipient[:],
		SessionId:     m.Session[:],
		RatchetKey:    m.RatchetKey[:],
		PreviousChain: m.PreviousChain,
		Number:        m.Number,
		Ciphertext:    m.Ciphertext,
		Signature:     m.Signature,
	}
	if len(m.CertKey) > 0 {
		p.Cert = &pb.SessionCert{SigningKey: m.CertKey, Signature: m.CertSignature}
	}
	return marshal(p)
}

// CheckTime reports ErrStale when m's timestamp is more than maxAge before
// now or more than maxSkew after it (zero: DefaultMaxAge, DefaultMaxSkew),
// the envelopes' acceptance window. Session.Open leaves it to the caller.
func (m *SessionMessage) CheckTime(now time.Time, maxAge, maxSkew time.Duration) error {
	o := Opener{MaxAge: maxAge, MaxSkew: maxSkew, Now: func() time.Time { return now }}
	return o.checkTime(m.Timestamp)
}

// ParseSessionMessage decodes a session message and checks its form: size
// cap, canonical protobuf, known version and signature algorithm, field
// lengths. It verifies nothing; the session's Open does.
func ParseSessionMessage(b []byte) (*SessionMessage, error) {
	if len(b) > MaxSessionMessageSize {
		return nil, fmt.Errorf("%w: session message of %d bytes (max %d)", ErrTooLarge, len(b), MaxSessionMessageSize)
	}
	var p pb.SessionMessage
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("session message: %w", err)
	}
	bad := func(what string) error { return fmt.Errorf("%w: session message %s", ErrMalformed, what) }
	if p.GetVersion() != SessionVersion {
		return nil, bad(fmt.Sprintf("version %d", p.GetVersion()))
	}
	alg := SigAlg(p.GetSigAlg())
	if p.GetSigAlg() > 0xff || (alg != SigSession && alg != SigIdentity) {
		return nil, bad(fmt.Sprintf("signature algorithm %d", p.GetSigAlg()))
	}
	if k := p.GetKind(); k > 0xffff || !sessionKind(Kind(k)) {
		return nil, bad(fmt.Sprintf("kind %d", p.GetKind()))
	}
	if len(p.GetMsgId()) != MsgIDSize || len(p.GetSender()) != IDSize || len(p.GetRecipient()) != IDSize ||
		len(p.GetSessionId()) != SessionIDSize || len(p.GetRatchetKey()) != X25519KeySize {
		return nil, bad("field length")
	}
	if c := p.GetCert(); c != nil {
		if len(c.GetSigningKey()) != ed25519.PublicKeySize || len(c.GetSignature()) < MinRSABits/8 || len(c.GetSignature()) > MaxRSABits/8 {
			return nil, bad("certificate")
		}
	}
	switch n := len(p.GetSignature()); alg {
	case SigSession:
		if n != ed25519.SignatureSize {
			return nil, bad("signature length")
		}
	case SigIdentity:
		if n < MinRSABits/8 || n > MaxRSABits/8 {
			return nil, bad("signature length")
		}
	}
	if n := len(p.GetCiphertext()) - gcmTag; n < padBlock || n > maxSessPad || n%padBlock != 0 {
		return nil, bad("ciphertext length")
	}
	m := &SessionMessage{
		SessionHeader: SessionHeader{
			Version:       uint8(p.GetVersion()),
			SigAlg:        alg,
			Kind:          Kind(p.GetKind()),
			Timestamp:     p.GetTimestampMs(),
			PreviousChain: p.GetPreviousChain(),
			Number:        p.GetNumber(),
			MsgID:         MsgID(p.GetMsgId()),
			Sender:        ID(p.GetSender()),
			Recipient:     ID(p.GetRecipient()),
			Session:       SessionID(p.GetSessionId()),
			RatchetKey:    [X25519KeySize]byte(p.GetRatchetKey()),
		},
		Ciphertext: p.GetCiphertext(),
		Signature:  p.GetSignature(),
	}
	if c := p.GetCert(); c != nil {
		m.CertKey, m.CertSignature = c.GetSigningKey(), c.GetSignature()
	}
	return m, nil
}

// certBytes is what the responder's identity key signs under
// "parley/v1/sess-cert": session_id ‖ bytes(initiator ID) ‖
// bytes(responder ID) ‖ bytes(responder key ID) ‖ bytes(Ed25519 key).
func certBytes(id SessionID, initiator, responder, responderKey ID, signing []byte) []byte {
	c := newCanon(SessionIDSize + 3*(4+IDSize) + 4 + len(signing))
	c.raw(id[:])
	c.bytes(initiator[:])
	c.bytes(responder[:])
	c.bytes(responderKey[:])
	c.bytes(signing)
	return c.b
}

// sessionStart is the body of a KindSessionStart envelope.
type sessionStart struct {
	id       SessionID
	signing  []byte // Ed25519 public key
	ratchet  key32
	seed     key32
	replaces SessionID // zero: none
	kind     Kind      // 0: no first message
	body     []byte
}

func (s *sessionStart) marshal() []byte {
	p := &pb.SessionStart{
		Version:    SessionVersion,
		SessionId:  s.id[:],
		SigningKey: s.signing,
		RatchetKey: s.ratchet[:],
		RootSeed:   s.seed[:],
		Kind:       uint32(s.kind),
		Body:       s.body,
	}
	if !s.replaces.IsZero() {
		p.Replaces = s.replaces[:]
	}
	return marshal(p)
}

func parseSessionStart(b []byte) (*sessionStart, error) {
	var p pb.SessionStart
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("session start: %w", err)
	}
	if p.GetKind() != 0 && (p.GetKind() > 0xffff || !sessionKind(Kind(p.GetKind()))) {
		return nil, fmt.Errorf("%w: session start with a first message of kind %d", ErrMalformed, p.GetKind())
	}
	if p.GetVersion() != SessionVersion || len(p.GetSessionId()) != SessionIDSize ||
		len(p.GetSigningKey()) != ed25519.PublicKeySize || len(p.GetRatchetKey()) != X25519KeySize ||
		len(p.GetRootSeed()) != 32 || (len(p.GetReplaces()) != 0 && len(p.GetReplaces()) != SessionIDSize) ||
		p.GetKind() > 0xffff || (p.GetKind() == 0 && len(p.GetBody()) != 0) || len(p.GetBody()) > MaxStartBody {
		return nil, fmt.Errorf("%w: session start fields", ErrMalformed)
	}
	s := &sessionStart{
		id:      SessionID(p.GetSessionId()),
		signing: p.GetSigningKey(),
		ratchet: key32(p.GetRatchetKey()),
		seed:    key32(p.GetRootSeed()),
		kind:    Kind(p.GetKind()),
		body:    p.GetBody(),
	}
	if s.id.IsZero() {
		return nil, fmt.Errorf("%w: zero session ID", ErrMalformed)
	}
	if len(p.GetReplaces()) != 0 {
		s.replaces = SessionID(p.GetReplaces())
	}
	return s, nil
}

// MarshalSessionReset encodes the body of a KindSessionReset envelope
// asking the peer to drop session id and start a new one.
func MarshalSessionReset(id SessionID) []byte {
	return marshal(&pb.SessionReset{SessionId: id[:]})
}

// ParseSessionReset decodes the body of a KindSessionReset envelope.
func ParseSessionReset(b []byte) (SessionID, error) {
	var p pb.SessionReset
	if err := unmarshalCanonical(b, &p); err != nil {
		return SessionID{}, fmt.Errorf("session reset: %w", err)
	}
	if len(p.GetSessionId()) != SessionIDSize || SessionID(p.GetSessionId()).IsZero() {
		return SessionID{}, fmt.Errorf("%w: session reset without a session ID", ErrMalformed)
	}
	return SessionID(p.GetSessionId()), nil
}
