package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Sender is who seals an envelope: the user's ID, the current identity key
// (whose ID may differ from the user ID after a key rotation) and, optionally,
// the sending device.
type Sender struct {
	UserID ID
	Key    Signer
	Device []byte
}

// Recipient is who an envelope is sealed to. With a Prekey (the recipient's
// current signed prekey), Seal uses suite 2; without, suite 1.
//
// Build it with NewRecipient (or Card.Recipient) and keep it: those check
// the prekey's signature once, and Seal then checks only its validity
// period. Seal verifies the signature of a prekey it has not seen checked
// (a Recipient built as a literal, or with Key or Prekey changed since).
type Recipient struct {
	UserID ID
	Key    *PublicKey
	Prekey *SignedPrekey

	checkedKey    *PublicKey    // Key when the signature of ...
	checkedPrekey *SignedPrekey // ... this prekey was verified
}

// NewRecipient returns a recipient for user with key and, if prekey is not
// nil, its signed prekey, whose signature by key it verifies (ErrAuth) and
// which must be valid at now (ErrExpired).
func NewRecipient(user ID, key *PublicKey, prekey *SignedPrekey, now time.Time) (Recipient, error) {
	r := Recipient{UserID: user, Key: key, Prekey: prekey}
	if prekey == nil {
		return r, nil
	}
	if err := prekey.Verify(key, now); err != nil {
		return Recipient{}, err
	}
	r.checkedKey, r.checkedPrekey = key, prekey
	return r, nil
}

// checkPrekey verifies r's prekey for use at now, skipping the RSA
// signature check when NewRecipient already made it.
func (r *Recipient) checkPrekey(now time.Time) error {
	if r.checkedPrekey == r.Prekey && r.checkedKey == r.Key && r.Key != nil && r.Prekey.Owner == r.Key.ID() {
		return r.Prekey.checkValidity(now)
	}
	return r.Prekey.Verify(r.Key, now)
}

// Seal encrypts body to r and signs it as s, at time now. The envelope's
// suite is 2 when r carries a prekey, which Seal verifies against r.Key and
// now (an invalid or expired prekey is an error; callers fall back to suite 1
// by leaving Prekey nil).
func Seal(s Sender, r Recipient, kind Kind, body []byte, now time.Time) (*Envelope, error) {
	return seal(sealInput{from: s, to: r, kind: kind, body: body, now: now})
}

// SealWithID is Seal with the envelope's msg_id set to id rather than a
// random one: a message sealed again (in a new session, after the first
// could not be opened) keeps its ID, so the receiver can never store it
// twice. id must not be zero and must not have been sealed to anyone else.
func SealWithID(s Sender, r Recipient, kind Kind, id MsgID, body []byte, now time.Time) (*Envelope, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("%w: zero msg_id", ErrMalformed)
	}
	return seal(sealInput{from: s, to: r, kind: kind, body: body, now: now, id: id})
}

// sealInput carries Seal's arguments, plus overrides that only tests set, to
// build envelopes that a correct sender would never make.
type sealInput struct {
	from Sender
	to   Recipient
	kind Kind
	body []byte
	now  time.Time
	id   MsgID // the msg_id to use; zero: a random one

	innerFrom, innerTo *ID // test only: lie in the encrypted part
}

func seal(in sealInput) (*Envelope, error) {
	if in.from.Key == nil || in.to.Key == nil {
		return nil, fmt.Errorf("%w: seal needs a sender and a recipient key", ErrMalformed)
	}
	if len(in.body) > MaxBodySize {
		return nil, fmt.Errorf("%w: body of %d bytes (max %d)", ErrTooLarge, len(in.body), MaxBodySize)
	}
	if len(in.from.Device) > MaxDeviceSize {
		return nil, fmt.Errorf("%w: sender device of %d bytes", ErrMalformed, len(in.from.Device))
	}
	if in.kind == 0 {
		return nil, fmt.Errorf("%w: kind 0", ErrMalformed)
	}
	e := &Envelope{Header: Header{
		Version:      Version,
		Suite:        SuiteRSA,
		Kind:         in.kind,
		Timestamp:    in.now.UnixMilli(),
		Sender:       in.from.UserID,
		SenderKey:    in.from.Key.Public().ID(),
		Recipient:    in.to.UserID,
		RecipientKey: in.to.Key.ID(),
		SenderDevice: in.from.Device,
	}}
	e.MsgID = in.id
	if e.MsgID.IsZero() {
		if _, err := rand.Read(e.MsgID[:]); err != nil {
			return nil, fmt.Errorf("generating msg_id: %w", err)
		}
	}

	var agreed []byte // suite 2: X25519(ephemeral, prekey)
	var prekeyPub []byte
	if pk := in.to.Prekey; pk != nil {
		if err := in.to.checkPrekey(in.now); err != nil {
			return nil, fmt.Errorf("recipient prekey: %w", err)
		}
		eph, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating ephemeral key: %w", err)
		}
		remote, err := ecdh.X25519().NewPublicKey(pk.Public[:])
		if err != nil {
			return nil, fmt.Errorf("%w: recipient prekey: %v", ErrAuth, err)
		}
		if agreed, err = eph.ECDH(remote); err != nil {
			return nil, fmt.Errorf("%w: recipient prekey is a low-order point", ErrAuth)
		}
		e.Suite = SuiteRSAX25519
		e.PrekeyID = pk.ID
		e.Ephemeral = eph.PublicKey().Bytes()
		prekeyPub = pk.Public[:]
	}

	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("generating content secret: %w", err)
	}
	wrapped, err := in.to.Key.encryptOAEP(secret[:], oaepLabel(&e.Header))
	if err != nil {
		return nil, fmt.Errorf("wrapping content key: %w", err)
	}
	e.WrappedKey = wrapped

	canonical := e.Canonical()
	key, nonce, err := deriveContentKey(&e.Header, canonical, secret[:], agreed, prekeyPub)
	if err != nil {
		return nil, err
	}
	e.Nonce = nonce

	from, to := e.Sender, e.Recipient
	if in.innerFrom != nil {
		from = *in.innerFrom
	}
	if in.innerTo != nil {
		to = *in.innerTo
	}
	pt := padPlaintext(from, to, e.MsgID, e.Timestamp, in.body)
	e.Ciphertext = key.Seal(pt[:0], nonce, pt, canonical)

	sig, err := in.from.Key.Sign(LabelEnvSig, e.signedBytes(canonical))
	if err != nil {
		return nil, fmt.Errorf("signing envelope: %w", err)
	}
	e.Signature = sig
	return e, nil
}

// oaepLabel is "parley/v1/oaep" ‖ sender ID ‖ recipient ID ‖ msg_id.
func oaepLabel(h *Header) []byte {
	l := make([]byte, 0, len(LabelOAEP)+2*IDSize+MsgIDSize)
	l = append(l, LabelOAEP...)
	l = append(l, h.Sender[:]...)
	l = append(l, h.Recipient[:]...)
	return append(l, h.MsgID[:]...)
}

// deriveContentKey runs HKDF-SHA256 over the transported secret (and, in
// suite 2, the X25519 agreement) and returns the AES-256-GCM key and nonce.
//
//	suite 1: ikm = s,            salt = msg_id
//	suite 2: ikm = X25519 ‖ s,   salt = ephemeral public ‖ prekey public
//	info = "parley/v1/env-key" ‖ SHA-256(canonical header)
func deriveContentKey(h *Header, canonical, secret, agreed, prekeyPub []byte) (cipher.AEAD, []byte, error) {
	var ikm, salt []byte
	switch h.Suite {
	case SuiteRSA:
		ikm, salt = secret, h.MsgID[:]
	case SuiteRSAX25519:
		if len(agreed) != X25519KeySize || isZero(agreed) {
			return nil, nil, fmt.Errorf("%w: all-zero X25519 shared secret", ErrAuth)
		}
		ikm = append(append(make([]byte, 0, len(agreed)+len(secret)), agreed...), secret...)
		salt = append(append(make([]byte, 0, 2*X25519KeySize), h.Ephemeral...), prekeyPub...)
	default:
		return nil, nil, fmt.Errorf("%w: suite %d", ErrMalformed, h.Suite)
	}
	hh := sha256.Sum256(canonical)
	okm, err := hkdf.Key(sha256.New, ikm, salt, LabelEnvKey+string(hh[:]), 32+NonceSize)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving content key: %w", err)
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, nil, fmt.Errorf("content cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("content cipher: %w", err)
	}
	return aead, okm[32:], nil
}

// padPlaintext lays out the encrypted part:
//
//	sender ID ‖ recipient ID ‖ msg_id ‖ i64 timestamp_ms ‖ u32 len(body) ‖ body ‖ zeros
//
// padded with zeros to a multiple of 256 bytes, with room for the GCM tag.
func padPlaintext(from, to ID, id MsgID, ts int64, body []byte) []byte {
	n := (innerHead + len(body) + padBlock - 1) / padBlock * padBlock
	pt := make([]byte, n, n+gcmTag)
	o := copy(pt, from[:])
	o += copy(pt[o:], to[:])
	o += copy(pt[o:], id[:])
	binary.BigEndian.PutUint64(pt[o:], uint64(ts))
	o += 8
	binary.BigEndian.PutUint32(pt[o:], uint32(len(body)))
	o += 4
	copy(pt[o:], body)
	return pt
}

func isZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return acc == 0
}
