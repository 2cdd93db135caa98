package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// Envelope format constants.
const (
	// Version is the envelope format version this package writes and reads.
	Version = 1
	// MaxEnvelopeSize caps an encoded envelope; larger input is rejected
	// with ErrTooLarge before it is parsed.
	MaxEnvelopeSize = 64 << 10
	// MaxBodySize caps the plaintext body of one envelope.
	MaxBodySize = 32 << 10
	// MsgIDSize is the size of a message ID.
	MsgIDSize = 16
	// NonceSize is the AES-GCM nonce size.
	NonceSize = 12
	// MaxDeviceSize caps the sender-device field (a libp2p peer ID is ~38 bytes).
	MaxDeviceSize = 128

	padBlock  = 256
	innerHead = 2*IDSize + MsgIDSize + 8 + 4 // sender ‖ recipient ‖ msg_id ‖ timestamp ‖ body length
	gcmTag    = 16
	maxPadded = (innerHead + MaxBodySize + padBlock - 1) / padBlock * padBlock
)

// Domain labels of the envelope construction.
const (
	LabelEnvSig = "parley/v1/env-sig"
	LabelOAEP   = "parley/v1/oaep"
	LabelEnvKey = "parley/v1/env-key"
)

// Suite names the key-transport construction of an envelope.
type Suite uint8

const (
	// SuiteRSA transports the content key with RSA-OAEP only.
	SuiteRSA Suite = 1
	// SuiteRSAX25519 adds an ephemeral X25519 agreement with the
	// recipient's signed prekey, for forward secrecy.
	SuiteRSAX25519 Suite = 2
)

func (s Suite) String() string {
	switch s {
	case SuiteRSA:
		return "rsa"
	case SuiteRSAX25519:
		return "rsa-x25519"
	case SuiteSession:
		return "session"
	}
	return fmt.Sprintf("suite(%d)", uint8(s))
}

// Kind says what an envelope's body is. Unknown kinds parse and open (the
// caller decides what to do with them), so new kinds can be added without a
// new version.
type Kind uint16

const (
	KindText           Kind = 1 // a chat message (UTF-8 text)
	KindReceipt        Kind = 2 // a read receipt (up to a message)
	KindContactRequest Kind = 3 // carries the sender's contact card
	KindContactAccept  Kind = 4 // carries the sender's contact card
	// KindSessionStart (5) and KindSessionReset (6): see session_wire.go.

	// KindFriendRemoved tells the recipient that the sender removed them
	// from their friends. Its body is empty. It is always an envelope,
	// signed by the sender's identity key, never a session message.
	KindFriendRemoved Kind = 9
	// KindDelivered is a delivery receipt: the recipient stored the
	// messages it names (a list, see MarshalDelivered). It is sent for
	// messages that came through a relay's mailbox, whose own
	// acknowledgement to the sender only means "held"; a direct delivery's
	// Ack says the same.
	KindDelivered Kind = 10
)

func (k Kind) String() string {
	switch k {
	case KindText:
		return "text"
	case KindReceipt:
		return "receipt"
	case KindContactRequest:
		return "contact-request"
	case KindContactAccept:
		return "contact-accept"
	case KindSessionStart:
		return "session-start"
	case KindSessionReset:
		return "session-reset"
	case KindFriendRemoved:
		return "friend-removed"
	case KindGroupState:
		return "group-state"
	case KindSenderKey:
		return "sender-key"
	case KindDelivered:
		return "delivered"
	case KindGroupLeave:
		return "group-leave"
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// MsgID is a message's random 128-bit ID; it doubles as the anti-replay nonce.
type MsgID [MsgIDSize]byte

func (m MsgID) String() string { return hex.EncodeToString(m[:]) }

// IsZero reports whether m is unset.
func (m MsgID) IsZero() bool { return m == MsgID{} }

// ParseMsgID parses the hex form of a message ID.
func ParseMsgID(s string) (MsgID, error) {
	var m MsgID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != MsgIDSize {
		return m, fmt.Errorf("%w: message ID must be %d hex bytes", ErrMalformed, MsgIDSize)
	}
	copy(m[:], b)
	return m, nil
}

// Header is every envelope field that the signature covers.
type Header struct {
	Version      uint8
	Suite        Suite
	Kind         Kind
	MsgID        MsgID
	Timestamp    int64 // unix milliseconds
	Sender       ID    // sender user ID
	SenderKey    ID    // sender key ID
	Recipient    ID    // recipient user ID
	RecipientKey ID    // recipient key ID
	SenderDevice []byte
	PrekeyID     uint64 // suite 2 only
	Ephemeral    []byte // suite 2 only: ephemeral X25519 public key
	WrappedKey   []byte
}

// Time returns the header's timestamp.
func (h *Header) Time() time.Time { return time.UnixMilli(h.Timestamp) }

// Canonical returns the canonical header encoding, which is the AES-GCM
// associated data, the input of the key derivation's info, and (with the
// ciphertext's hash) what the sender signs:
//
//	u8 version ‖ u8 suite ‖ u16 kind ‖ msg_id (16 bytes) ‖ i64 timestamp_ms ‖
//	bytes(sender) ‖ bytes(sender_key) ‖ bytes(recipient) ‖ bytes(recipient_key) ‖
//	bytes(sender_device) ‖ u64 prekey_id ‖ bytes(ephemeral) ‖ bytes(wrapped_key)
func (h *Header) Canonical() []byte {
	c := newCanon(4 + MsgIDSize + 8 + 4*(4+IDSize) + 4 + len(h.SenderDevice) + 8 + 4 + len(h.Ephemeral) + 4 + len(h.WrappedKey))
	c.u8(h.Version)
	c.u8(uint8(h.Suite))
	c.u16(uint16(h.Kind))
	c.raw(h.MsgID[:])
	c.i64(h.Timestamp)
	c.bytes(h.Sender[:])
	c.bytes(h.SenderKey[:])
	c.bytes(h.Recipient[:])
	c.bytes(h.RecipientKey[:])
	c.bytes(h.SenderDevice)
	c.u64(h.PrekeyID)
	c.bytes(h.Ephemeral)
	c.bytes(h.WrappedKey)
	return c.b
}

// Envelope is a sealed message: the header, the AES-GCM nonce, the
// ciphertext and the sender's signature.
type Envelope struct {
	Header
	Nonce      []byte
	Ciphertext []byte
	Signature  []byte
}

// Marshal encodes e (protobuf, canonical).
func (e *Envelope) Marshal() []byte {
	return marshal(&pb.Envelope{
		Version:      uint32(e.Version),
		Suite:        uint32(e.Suite),
		Kind:         uint32(e.Kind),
		MsgId:        e.MsgID[:],
		Sender:       e.Sender[:],
		SenderKey:    e.SenderKey[:],
		Recipient:    e.Recipient[:],
		RecipientKey: e.RecipientKey[:],
		SenderDevice: e.SenderDevice,
		TimestampMs:  e.Timestamp,
		WrappedKey:   e.WrappedKey,
		PrekeyId:     e.PrekeyID,
		Ephemeral:    e.Ephemeral,
		Nonce:        e.Nonce,
		Ciphertext:   e.Ciphertext,
		Signature:    e.Signature,
	})
}

// signedBytes returns what the sender signs, after the label:
// canonical header ‖ SHA-256(ciphertext).
func (e *Envelope) signedBytes(canonical []byte) []byte {
	d := sha256.Sum256(e.Ciphertext)
	out := make([]byte, 0, len(canonical)+len(d))
	return append(append(out, canonical...), d[:]...)
}

// ParseEnvelope decodes an envelope and checks its form: size cap, canonical
// protobuf, known version and suite, field lengths. It verifies nothing
// cryptographic; use Opener.Open for that.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: envelope of %d bytes (max %d)", ErrTooLarge, len(b), MaxEnvelopeSize)
	}
	var m pb.Envelope
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	return envelopeFromPB(&m)
}

func envelopeFromPB(m *pb.Envelope) (*Envelope, error) {
	bad := func(what string) error { return fmt.Errorf("%w: envelope %s", ErrMalformed, what) }
	if m.GetVersion() != Version {
		return nil, bad(fmt.Sprintf("version %d", m.GetVersion()))
	}
	suite := Suite(m.GetSuite())
	if m.GetSuite() > 0xff || (suite != SuiteRSA && suite != SuiteRSAX25519) {
		return nil, bad(fmt.Sprintf("suite %d", m.GetSuite()))
	}
	if m.GetKind() == 0 || m.GetKind() > 0xffff {
		return nil, bad(fmt.Sprintf("kind %d", m.GetKind()))
	}
	if len(m.GetMsgId()) != MsgIDSize {
		return nil, bad("msg_id length")
	}
	for _, f := range [][]byte{m.GetSender(), m.GetSenderKey(), m.GetRecipient(), m.GetRecipientKey()} {
		if len(f) != IDSize {
			return nil, bad("ID length")
		}
	}
	if len(m.GetSenderDevice()) > MaxDeviceSize {
		return nil, bad("sender_device length")
	}
	if n := len(m.GetWrappedKey()); n < MinRSABits/8 || n > MaxRSABits/8 {
		return nil, bad("wrapped_key length")
	}
	if n := len(m.GetSignature()); n < MinRSABits/8 || n > MaxRSABits/8 {
		return nil, bad("signature length")
	}
	switch suite {
	case SuiteRSA:
		if m.GetPrekeyId() != 0 || len(m.GetEphemeral()) != 0 {
			return nil, bad("suite 1 with prekey fields")
		}
	case SuiteRSAX25519:
		if m.GetPrekeyId() == 0 || len(m.GetEphemeral()) != X25519KeySize {
			return nil, bad("suite 2 prekey fields")
		}
	}
	if len(m.GetNonce()) != NonceSize {
		return nil, bad("nonce length")
	}
	if n := len(m.GetCiphertext()) - gcmTag; n < padBlock || n > maxPadded || n%padBlock != 0 {
		return nil, bad("ciphertext length")
	}
	e := &Envelope{
		Header: Header{
			Version:      uint8(m.GetVersion()),
			Suite:        suite,
			Kind:         Kind(m.GetKind()),
			Timestamp:    m.GetTimestampMs(),
			SenderDevice: m.GetSenderDevice(),
			PrekeyID:     m.GetPrekeyId(),
			Ephemeral:    m.GetEphemeral(),
			WrappedKey:   m.GetWrappedKey(),
		},
		Nonce:      m.GetNonce(),
		Ciphertext: m.GetCiphertext(),
		Signature:  m.GetSignature(),
	}
	copy(e.MsgID[:], m.GetMsgId())
	copy(e.Sender[:], m.GetSender())
	copy(e.SenderKey[:], m.GetSenderKey())
	copy(e.Recipient[:], m.GetRecipient())
	copy(e.RecipientKey[:], m.GetRecipientKey())
	return e, nil
}
