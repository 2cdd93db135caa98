package protocol

import (
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// MaxGroupMessageSize caps an encoded group message: a body of
// MaxBodySize, its padding and the header fit.
const MaxGroupMessageSize = 40 << 10

// ChainID names a sender key chain: its Ed25519 public key.
type ChainID [ed25519.PublicKeySize]byte

// GroupHeader is every field of a group message in clear; the signature
// and the AEAD cover all of it.
type GroupHeader struct {
	Version   uint8
	Kind      Kind
	Group     GroupID
	Epoch     uint64
	Sender    ID      // sender user ID
	Chain     ChainID // the sender's chain
	Iteration uint32
	MsgID     MsgID
	Timestamp int64 // unix milliseconds
}

// Time returns the header's timestamp.
func (h *GroupHeader) Time() time.Time { return time.UnixMilli(h.Timestamp) }

// Canonical returns the header's canonical encoding:
//
//	u8 version ‖ u16 kind ‖ group_id (32) ‖ u64 epoch ‖ sender (32) ‖
//	chain (32) ‖ u32 iteration ‖ msg_id (16) ‖ i64 timestamp_ms
func (h *GroupHeader) Canonical() []byte {
	c := newCanon(3 + GroupIDSize + 8 + IDSize + len(h.Chain) + 4 + MsgIDSize + 8)
	c.u8(h.Version)
	c.u16(uint16(h.Kind))
	c.raw(h.Group[:])
	c.u64(h.Epoch)
	c.raw(h.Sender[:])
	c.raw(h.Chain[:])
	c.u32(h.Iteration)
	c.raw(h.MsgID[:])
	c.i64(h.Timestamp)
	return c.b
}

// groupAAD is the AEAD's associated data: "parley/v1/group-msg" ‖
// canonical header (so group ID, epoch, sender, chain, iteration, msg_id,
// time and kind are all bound to the ciphertext).
func groupAAD(canonical []byte) []byte {
	return append([]byte(LabelGroupMsg), canonical...)
}

// GroupMessage is a sealed message of a group.
type GroupMessage struct {
	GroupHeader
	Ciphertext []byte
	Signature  []byte
}

// signedBytes is what the chain's Ed25519 key signs:
// "parley/v1/group-sig" ‖ canonical header ‖ SHA-256(ciphertext).
func (m *GroupMessage) signedBytes(canonical []byte) []byte {
	d := sha256.Sum256(m.Ciphertext)
	b := make([]byte, 0, len(LabelGroupSig)+len(canonical)+len(d))
	b = append(b, LabelGroupSig...)
	b = append(b, canonical...)
	return append(b, d[:]...)
}

// Marshal encodes m (protobuf, canonical).
func (m *GroupMessage) Marshal() []byte {
	return marshal(&pb.GroupMessage{
		Version:     uint32(m.Version),
		GroupId:     m.Group[:],
		Epoch:       m.Epoch,
		Sender:      m.Sender[:],
		Chain:       m.Chain[:],
		Iteration:   m.Iteration,
		MsgId:       m.MsgID[:],
		TimestampMs: m.Timestamp,
		Kind:        uint32(m.Kind),
		Ciphertext:  m.Ciphertext,
		Signature:   m.Signature,
	})
}

// CheckTime reports ErrStale when m's timestamp is more than maxAge before
// now or more than maxSkew after it (zero: DefaultMaxAge, DefaultMaxSkew).
func (m *GroupMessage) CheckTime(now time.Time, maxAge, maxSkew time.Duration) error {
	o := Opener{MaxAge: maxAge, MaxSkew: maxSkew, Now: func() time.Time { return now }}
	return o.checkTime(m.Timestamp)
}

// ParseGroupMessage decodes a group message and checks its form: size cap,
// canonical protobuf, known version, kind, field lengths. It verifies
// nothing; a chain's Verify and Open do.
func ParseGroupMessage(b []byte) (*GroupMessage, error) {
	if len(b) > MaxGroupMessageSize {
		return nil, fmt.Errorf("%w: group message of %d bytes (max %d)", ErrTooLarge, len(b), MaxGroupMessageSize)
	}
	var p pb.GroupMessage
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("group message: %w", err)
	}
	bad := func(what string) error { return fmt.Errorf("%w: group message %s", ErrMalformed, what) }
	if p.GetVersion() != GroupVersion {
		return nil, bad(fmt.Sprintf("version %d", p.GetVersion()))
	}
	if k := p.GetKind(); k == 0 || k > 0xffff {
		return nil, bad(fmt.Sprintf("kind %d", k))
	}
	if len(p.GetGroupId()) != GroupIDSize || len(p.GetSender()) != IDSize || len(p.GetChain()) != ed25519.PublicKeySize ||
		len(p.GetMsgId()) != MsgIDSize || len(p.GetSignature()) != ed25519.SignatureSize || p.GetEpoch() == 0 {
		return nil, bad("field length")
	}
	if n := len(p.GetCiphertext()) - gcmTag; n < padBlock || n > maxSessPad || n%padBlock != 0 {
		return nil, bad("ciphertext length")
	}
	return &GroupMessage{
		GroupHeader: GroupHeader{
			Version:   uint8(p.GetVersion()),
			Kind:      Kind(p.GetKind()),
			Group:     GroupID(p.GetGroupId()),
			Epoch:     p.GetEpoch(),
			Sender:    ID(p.GetSender()),
			Chain:     ChainID(p.GetChain()),
			Iteration: p.GetIteration(),
			MsgID:     MsgID(p.GetMsgId()),
			Timestamp: p.GetTimestampMs(),
		},
		Ciphertext: p.GetCiphertext(),
		Signature:  p.GetSignature(),
	}, nil
}

// GroupPlain is an opened group message.
type GroupPlain struct {
	GroupHeader
	Body []byte
}

// groupCipher expands a message key into the AES-256-GCM key and nonce:
// HKDF-Expand-SHA256(prk = mk, info = "parley/v1/group-key" ‖ msg_id),
// 32 + 12 bytes. As in sessions, the random msg_id means that a chain
// restored from an old copy never reuses a key and nonce.
func groupCipher(mk key32, id MsgID) (cipher.AEAD, []byte, error) {
	return keyCipher(LabelGroupKey, mk, id)
}

// sealGroup encrypts body under mk and signs the result with signing.
func sealGroup(h GroupHeader, mk key32, signing ed25519.PrivateKey, body []byte) (*GroupMessage, error) {
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("%w: body of %d bytes (max %d)", ErrTooLarge, len(body), MaxBodySize)
	}
	aead, nonce, err := groupCipher(mk, h.MsgID)
	if err != nil {
		return nil, err
	}
	m := &GroupMessage{GroupHeader: h}
	canonical := m.Canonical()
	pt := padSession(body)
	m.Ciphertext = aead.Seal(pt[:0], nonce, pt, groupAAD(canonical))
	m.Signature = ed25519.Sign(signing, m.signedBytes(canonical))
	return m, nil
}

// openGroup decrypts m with mk; every failure is ErrAuth.
func openGroup(m *GroupMessage, mk key32) ([]byte, error) {
	aead, nonce, err := groupCipher(mk, m.MsgID)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, m.Ciphertext, groupAAD(m.Canonical()))
	if err != nil {
		return nil, fmt.Errorf("%w: group message decryption", ErrAuth)
	}
	return unpadSession(pt)
}
