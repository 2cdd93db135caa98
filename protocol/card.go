package protocol

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parley-chat/parley/protocol/pb"
)

// Contact card limits and labels.
const (
	// LabelCard is the domain label of card signatures.
	LabelCard = "parley/v1/card"
	// CardURIScheme prefixes a card's text form: "parley:card/" ‖ base64url.
	CardURIScheme = "parley:card/"
	// CardVersion is the card format version.
	CardVersion = 1
	// MaxCardSize caps an encoded card (protobuf bytes).
	MaxCardSize = 4096
	// MaxNameSize caps a display name in bytes (UTF-8).
	MaxNameSize = 64
	// MaxCardDevices and MaxCardAddrs cap the lists a card carries, and
	// MaxAddrSize each multiaddr's text form.
	MaxCardDevices = 8
	MaxCardAddrs   = 16
	MaxAddrSize    = 256
)

// cardEncoding is strict: one card has exactly one link.
var cardEncoding = base64.RawURLEncoding.Strict()

// Card is a signed contact card: what a user hands out (as an invite link or
// QR code) so that others can reach and encrypt to them. The signature, by
// the user's identity key, covers
//
//	u8 version ‖ bytes(user_id) ‖ str(name) ‖ bytes(public_key) ‖
//	u32 n ‖ bytes(device)×n ‖ u32 m ‖ str(addr)×m ‖
//	u8 has_prekey ‖ [prekey canonical bytes ‖ bytes(prekey signature)] ‖ i64 issued_at
//
// under the label "parley/v1/card" (see canon for the encoding).
type Card struct {
	UserID    ID
	Name      string
	Key       *PublicKey
	Devices   [][]byte // libp2p peer IDs, as bytes
	Addrs     []string // multiaddrs, text form
	Prekey    *SignedPrekey
	IssuedAt  time.Time // unix seconds
	Signature []byte
}

// NewCard builds and signs a card. The user ID is the signing key's ID (the
// genesis key); key rotation will extend this with a chain of signatures.
func NewCard(signer Signer, name string, devices [][]byte, addrs []string, prekey *SignedPrekey, now time.Time) (*Card, error) {
	c := &Card{
		UserID:   signer.Public().ID(),
		Name:     name,
		Key:      signer.Public(),
		Devices:  devices,
		Addrs:    addrs,
		Prekey:   prekey,
		IssuedAt: time.Unix(now.Unix(), 0),
	}
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	if prekey != nil {
		if err := prekey.VerifySignature(c.Key); err != nil {
			return nil, fmt.Errorf("card prekey: %w", err)
		}
	}
	sig, err := signer.Sign(LabelCard, c.canonical())
	if err != nil {
		return nil, fmt.Errorf("signing card: %w", err)
	}
	c.Signature = sig
	if n := len(c.Marshal()); n > MaxCardSize {
		return nil, fmt.Errorf("%w: card of %d bytes (max %d)", ErrTooLarge, n, MaxCardSize)
	}
	return c, nil
}

// CheckName reports whether name is an acceptable display name: valid UTF-8,
// 1 to MaxNameSize bytes, no control characters, no surrounding spaces.
func CheckName(name string) error {
	switch {
	case name == "" || len(name) > MaxNameSize:
		return fmt.Errorf("%w: display name must be 1 to %d bytes", ErrMalformed, MaxNameSize)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: display name is not UTF-8", ErrMalformed)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: display name has surrounding spaces", ErrMalformed)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: display name has control characters", ErrMalformed)
	}
	return nil
}

func (c *Card) checkFields() error {
	if err := CheckName(c.Name); err != nil {
		return err
	}
	if len(c.Devices) > MaxCardDevices || len(c.Addrs) > MaxCardAddrs {
		return fmt.Errorf("%w: card lists %d devices and %d addresses (max %d and %d)",
			ErrMalformed, len(c.Devices), len(c.Addrs), MaxCardDevices, MaxCardAddrs)
	}
	for _, d := range c.Devices {
		if len(d) == 0 || len(d) > MaxDeviceSize {
			return fmt.Errorf("%w: card device of %d bytes", ErrMalformed, len(d))
		}
	}
	for _, a := range c.Addrs {
		if a == "" || len(a) > MaxAddrSize || !utf8.ValidString(a) {
			return fmt.Errorf("%w: card address", ErrMalformed)
		}
	}
	return nil
}

func (c *Card) canonical() []byte {
	k := c.Key.der
	cn := newCanon(1 + 4 + IDSize + 4 + len(c.Name) + 4 + len(k) + 512)
	cn.u8(CardVersion)
	cn.bytes(c.UserID[:])
	cn.str(c.Name)
	cn.bytes(k)
	cn.u32(uint32(len(c.Devices)))
	for _, d := range c.Devices {
		cn.bytes(d)
	}
	cn.u32(uint32(len(c.Addrs)))
	for _, a := range c.Addrs {
		cn.str(a)
	}
	if c.Prekey == nil {
		cn.u8(0)
	} else {
		cn.u8(1)
		cn.raw(c.Prekey.canonical())
		cn.bytes(c.Prekey.Signature)
	}
	cn.i64(c.IssuedAt.Unix())
	return cn.b
}

// Marshal encodes the card (protobuf, canonical).
func (c *Card) Marshal() []byte {
	m := &pb.Card{
		Version:   CardVersion,
		UserId:    c.UserID[:],
		Name:      c.Name,
		PublicKey: c.Key.der,
		Devices:   c.Devices,
		Addrs:     c.Addrs,
		IssuedAt:  c.IssuedAt.Unix(),
		Signature: c.Signature,
	}
	if c.Prekey != nil {
		m.Prekey = c.Prekey.toPB()
	}
	return marshal(m)
}

// URI returns the card's text form, "parley:card/" followed by the
// unpadded base64url of Marshal. At RSA-3072 it fits in a QR code.
func (c *Card) URI() string { return CardURIScheme + cardEncoding.EncodeToString(c.Marshal()) }

// ParseCardURI parses and verifies the text form of a card.
func ParseCardURI(s string) (*Card, error) {
	s = strings.TrimSpace(s)
	if len(s) > len(CardURIScheme)+cardEncoding.EncodedLen(MaxCardSize) {
		return nil, fmt.Errorf("%w: card link of %d characters", ErrTooLarge, len(s))
	}
	if len(s) < len(CardURIScheme) || !strings.EqualFold(s[:len(CardURIScheme)], CardURIScheme) {
		return nil, fmt.Errorf("%w: not a %q link", ErrMalformed, CardURIScheme)
	}
	// The decoder skips CR and LF; a link must not contain them.
	b, err := cardEncoding.DecodeString(s[len(CardURIScheme):])
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%w: card link is not base64url", ErrMalformed)
	}
	return ParseCard(b)
}

// ParseCard decodes a card and verifies it: canonical encoding, field
// limits, the key hashes to the user ID, the key size, the card signature
// and the prekey signature. It does not check the prekey's validity period
// (Seal does, when the prekey is used).
func ParseCard(b []byte) (*Card, error) {
	if len(b) > MaxCardSize {
		return nil, fmt.Errorf("%w: card of %d bytes (max %d)", ErrTooLarge, len(b), MaxCardSize)
	}
	var m pb.Card
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	if m.GetVersion() != CardVersion {
		return nil, fmt.Errorf("%w: card version %d", ErrMalformed, m.GetVersion())
	}
	uid, err := IDFromBytes(m.GetUserId())
	if err != nil {
		return nil, fmt.Errorf("card user ID: %w", err)
	}
	key, err := ParsePublicKey(m.GetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("card key: %w", err)
	}
	if key.ID() != uid {
		return nil, fmt.Errorf("%w: card key does not hash to its user ID", ErrAuth)
	}
	c := &Card{
		UserID:    uid,
		Name:      m.GetName(),
		Key:       key,
		Devices:   m.GetDevices(),
		Addrs:     m.GetAddrs(),
		IssuedAt:  time.Unix(m.GetIssuedAt(), 0),
		Signature: m.GetSignature(),
	}
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	if m.GetPrekey() != nil {
		if c.Prekey, err = signedPrekeyFromPB(m.GetPrekey()); err != nil {
			return nil, fmt.Errorf("card prekey: %w", err)
		}
	}
	if err := key.Verify(LabelCard, c.canonical(), c.Signature); err != nil {
		return nil, fmt.Errorf("card signature: %w", err)
	}
	if c.Prekey != nil {
		if err := c.Prekey.VerifySignature(key); err != nil {
			return nil, fmt.Errorf("card prekey: %w", err)
		}
	}
	return c, nil
}

// Recipient returns the card as a Seal recipient, with its prekey if the
// prekey is valid at now (suite 2) and without it otherwise (suite 1).
func (c *Card) Recipient(now time.Time) Recipient {
	if r, err := NewRecipient(c.UserID, c.Key, c.Prekey, now); err == nil {
		return r
	}
	return Recipient{UserID: c.UserID, Key: c.Key}
}
