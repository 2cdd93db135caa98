package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The default acceptance window for envelope timestamps.
const (
	DefaultMaxAge  = 14 * 24 * time.Hour
	DefaultMaxSkew = 5 * time.Minute
)

// Opener opens envelopes addressed to one identity.
type Opener struct {
	// UserID and Key are the recipient's user ID and current identity key.
	UserID ID
	Key    *PrivateKey
	// SenderKey returns the public key the caller trusts for the sender user
	// and key named in a header (a pinned friend key, say). It returns an
	// error wrapping ErrUnknownSender, or the caller's own error, when it has
	// none; Open returns that error wrapped.
	SenderKey func(user, key ID) (*PublicKey, error)
	// OldKey, if set, returns a retired identity key of the recipient by
	// its ID (during the grace period after a key rotation), or nil.
	OldKey func(id ID) *PrivateKey
	// Retired, if set, reports whether id is a key the recipient retired
	// by a rotation whose grace is over (its private half is gone). An
	// envelope sealed to it is checked up to its signature and then
	// refused with ErrKeyRetired, not ErrNotForMe: it was sealed by a
	// sender who has not learnt the new key yet, and sealing it again to
	// the current key helps.
	Retired func(id ID) bool
	// Seen, if set, is the caller's replay check: it is called with the
	// msg_id after the signature has verified and before any decryption,
	// and an error it returns is returned wrapped. So a replay costs no
	// RSA decryption, and nobody learns whether a msg_id arrived before
	// by sending an envelope that does not verify.
	Seen func(id MsgID) error
	// Prekey returns the recipient's prekey (current or retired) by ID, or an
	// error when it has none; nil means the recipient keeps no prekeys.
	Prekey func(id uint64) (*Prekey, error)
	// MaxAge and MaxSkew bound the accepted timestamps: at most MaxAge in the
	// past and MaxSkew in the future. Zero means DefaultMaxAge and DefaultMaxSkew.
	MaxAge, MaxSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Message is an opened envelope.
type Message struct {
	Header
	Body []byte
}

// Open verifies and decrypts raw, in this order: size cap, parse, recipient
// is me, timestamp inside the window, signature with the sender key the
// caller supplies, the caller's replay check (Seen), unwrap, derive,
// decrypt, inner IDs match. Each step has its sentinel (ErrTooLarge,
// ErrMalformed, ErrNotForMe, ErrStale, ErrUnknownSender, ErrUnknownPrekey;
// ErrKeyRetired after the signature for a key of mine whose grace is
// over); every cryptographic failure is ErrAuth. Without Seen, the replay
// check (a msg_id seen before) belongs to the caller, after Open.
func (o *Opener) Open(raw []byte) (*Message, error) {
	if o.Key == nil || o.SenderKey == nil {
		return nil, errors.New("protocol: Opener needs Key and SenderKey")
	}
	e, err := ParseEnvelope(raw)
	if err != nil {
		return nil, err
	}
	key := o.Key
	if e.RecipientKey != key.ID() {
		key = nil
		if o.OldKey != nil {
			key = o.OldKey(e.RecipientKey)
		}
	}
	retired := false
	if e.Recipient == o.UserID && key == nil && o.Retired != nil && o.Retired(e.RecipientKey) {
		retired = true // answered after the signature check
	} else if e.Recipient != o.UserID || key == nil || e.RecipientKey != key.ID() {
		return nil, fmt.Errorf("%w: addressed to user %s key %s", ErrNotForMe, e.Recipient, e.RecipientKey)
	}
	if err := o.checkTime(e.Timestamp); err != nil {
		return nil, err
	}
	sender, err := o.SenderKey(e.Sender, e.SenderKey)
	if err != nil {
		return nil, fmt.Errorf("sender %s: %w", e.Sender, err)
	}
	if sender == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownSender, e.Sender)
	}
	if sender.ID() != e.SenderKey {
		return nil, fmt.Errorf("%w: sender key does not match the header", ErrAuth)
	}
	canonical := e.Canonical()
	if err := sender.Verify(LabelEnvSig, e.signedBytes(canonical), e.Signature); err != nil {
		return nil, fmt.Errorf("envelope signature: %w", err)
	}
	if retired {
		return nil, fmt.Errorf("%w: sealed to key %s, retired by a rotation", ErrKeyRetired, e.RecipientKey)
	}
	if o.Seen != nil {
		if err := o.Seen(e.MsgID); err != nil {
			return nil, fmt.Errorf("msg_id %s: %w", e.MsgID, err)
		}
	}

	var agreed, prekeyPub []byte
	var prekey *Prekey
	if e.Suite == SuiteRSAX25519 {
		if o.Prekey == nil {
			return nil, fmt.Errorf("%w: %d", ErrUnknownPrekey, e.PrekeyID)
		}
		if prekey, err = o.Prekey(e.PrekeyID); err != nil || prekey == nil || prekey.priv == nil {
			return nil, fmt.Errorf("%w: %d", ErrUnknownPrekey, e.PrekeyID)
		}
	}
	secret, err := key.decryptOAEP(e.WrappedKey, oaepLabel(&e.Header))
	if err != nil {
		return nil, err
	}
	if prekey != nil {
		eph, err := ecdh.X25519().NewPublicKey(e.Ephemeral)
		if err != nil {
			return nil, fmt.Errorf("%w: ephemeral key", ErrAuth)
		}
		// crypto/ecdh refuses low-order points (an all-zero result).
		if agreed, err = prekey.priv.ECDH(eph); err != nil {
			return nil, fmt.Errorf("%w: all-zero X25519 shared secret", ErrAuth)
		}
		prekeyPub = prekey.Signed.Public[:]
	}
	aead, nonce, err := deriveContentKey(&e.Header, canonical, secret, agreed, prekeyPub)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(nonce, e.Nonce) != 1 {
		return nil, fmt.Errorf("%w: nonce", ErrAuth)
	}
	pt, err := aead.Open(nil, nonce, e.Ciphertext, canonical)
	if err != nil {
		return nil, fmt.Errorf("%w: content", ErrAuth)
	}
	body, err := unpad(&e.Header, pt)
	if err != nil {
		return nil, err
	}
	return &Message{Header: e.Header, Body: body}, nil
}

func (o *Opener) checkTime(ms int64) error {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	maxAge, maxSkew := o.MaxAge, o.MaxSkew
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	if maxSkew == 0 {
		maxSkew = DefaultMaxSkew
	}
	t, n := time.UnixMilli(ms), now()
	switch {
	case t.Before(n.Add(-maxAge)):
		return fmt.Errorf("%w: %s is older than %s", ErrStale, t.UTC().Format(time.RFC3339), maxAge)
	case t.After(n.Add(maxSkew)):
		return fmt.Errorf("%w: %s is more than %s in the future", ErrStale, t.UTC().Format(time.RFC3339), maxSkew)
	}
	return nil
}

// unpad checks the encrypted part against the header and returns the body.
func unpad(h *Header, pt []byte) ([]byte, error) {
	fail := func(what string) error { return fmt.Errorf("%w: inner %s", ErrAuth, what) }
	if len(pt) < innerHead || len(pt)%padBlock != 0 {
		return nil, fail("length")
	}
	if !bytes.Equal(pt[:IDSize], h.Sender[:]) || !bytes.Equal(pt[IDSize:2*IDSize], h.Recipient[:]) {
		return nil, fail("user IDs")
	}
	o := 2 * IDSize
	if !bytes.Equal(pt[o:o+MsgIDSize], h.MsgID[:]) {
		return nil, fail("msg_id")
	}
	o += MsgIDSize
	if int64(binary.BigEndian.Uint64(pt[o:])) != h.Timestamp {
		return nil, fail("timestamp")
	}
	o += 8
	n := int(binary.BigEndian.Uint32(pt[o:]))
	o += 4
	if n > MaxBodySize || n > len(pt)-o || (o+n+padBlock-1)/padBlock*padBlock != len(pt) || !isZero(pt[o+n:]) {
		return nil, fail("padding")
	}
	return pt[o : o+n : o+n], nil
}
