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
	// CardVersion is the format version of a card without a rotation chain
	// (the user's current key is the genesis key), CardVersionChained that
	// of a card carrying the genesis key and the chain to the current key.
	CardVersion        = 1
	CardVersionChained = 2
	// MaxCardSize caps an encoded version-1 card (protobuf bytes), and
	// MaxChainedCardSize a version-2 card: each rotation adds about 1.3 KB
	// at RSA-3072 (3.2 KB at RSA-8192).
	MaxCardSize        = 4096
	MaxChainedCardSize = 16 << 10
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
// the user's current identity key, covers
//
//	u8 version ‖ bytes(user_id) ‖ str(name) ‖ bytes(public_key) ‖
//	u32 n ‖ bytes(device)×n ‖ u32 m ‖ str(addr)×m ‖
//	u8 has_prekey ‖ [prekey canonical bytes ‖ bytes(prekey signature)] ‖ i64 issued_at
//
// and, for a version-2 card only,
//
//	‖ bytes(genesis key DER) ‖ u32 k ‖ bytes(encoded Rotation)×k
//
// under the label "parley/v1/card" (see canon for the encoding). A user who
// never rotated has a version-1 card: Key is the genesis key, its ID is the
// user ID, Genesis and Chain are nil. After a rotation the card is version
// 2: Key is the current key, Genesis the key whose ID is the user ID, and
// Chain the rotations from Genesis to Key (see VerifyChain).
type Card struct {
	UserID    ID
	Name      string
	Key       *PublicKey // the current key; it signs the card
	Devices   [][]byte   // libp2p peer IDs, as bytes
	Addrs     []string   // multiaddrs, text form
	Prekey    *SignedPrekey
	IssuedAt  time.Time   // unix seconds
	Genesis   *PublicKey  // version 2 only
	Chain     []*Rotation // version 2 only: Genesis → … → Key
	Signature []byte
}

// NewCard builds and signs a card of a user who never rotated: the user ID
// is the signing key's ID (the genesis key). A user who has rotated uses
// NewChainedCard.
func NewCard(signer Signer, name string, devices [][]byte, addrs []string, prekey *SignedPrekey, now time.Time) (*Card, error) {
	return NewChainedCard(signer, nil, nil, name, devices, addrs, prekey, now)
}

// NewChainedCard builds and signs a card with the current key signer, for a
// user whose genesis key is genesis and who moved from it to signer's key
// through chain. With an empty chain it makes the same version-1 card as
// NewCard (genesis may then be nil or signer's own key). The chain must
// verify (VerifyChain) and end at signer's key, and the prekey must be
// signed by signer's key.
func NewChainedCard(signer Signer, genesis *PublicKey, chain []*Rotation, name string, devices [][]byte, addrs []string, prekey *SignedPrekey, now time.Time) (*Card, error) {
	c := &Card{
		UserID:   signer.Public().ID(),
		Name:     name,
		Key:      signer.Public(),
		Devices:  devices,
		Addrs:    addrs,
		Prekey:   prekey,
		IssuedAt: time.Unix(now.Unix(), 0),
	}
	if len(chain) == 0 {
		if genesis != nil && !genesis.Equal(c.Key) {
			return nil, fmt.Errorf("%w: %w: card key is not the genesis key and there is no chain", ErrBadChain, ErrAuth)
		}
	} else {
		if genesis == nil {
			return nil, fmt.Errorf("%w: %w: card chain without a genesis key", ErrBadChain, ErrMalformed)
		}
		cur, err := VerifyChain(genesis.ID(), genesis, chain)
		if err != nil {
			return nil, fmt.Errorf("card chain: %w", err)
		}
		if !cur.Equal(c.Key) {
			return nil, fmt.Errorf("%w: %w: card chain ends at key %s, not the signing key %s", ErrBadChain, ErrAuth, cur, c.Key)
		}
		c.UserID, c.Genesis, c.Chain = genesis.ID(), genesis, chain
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
	if n, max := len(c.Marshal()), c.maxSize(); n > max {
		return nil, fmt.Errorf("%w: card of %d bytes (max %d)", ErrTooLarge, n, max)
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

// version returns the card's format version: 2 when it carries a chain.
func (c *Card) version() uint32 {
	if len(c.Chain) > 0 || c.Genesis != nil {
		return CardVersionChained
	}
	return CardVersion
}

func (c *Card) maxSize() int {
	if c.version() == CardVersionChained {
		return MaxChainedCardSize
	}
	return MaxCardSize
}

// cardSizeOK reports whether b is within the size cap of its version
// before it is parsed. A canonical card starts with its version field (tag
// 0x08, then the version as a one-byte varint), so the version-2 cap
// applies only to input that starts 0x08 0x02; anything else is held to
// MaxCardSize, and is refused by the parser if it does not start so.
func cardSizeOK(b []byte) bool {
	if len(b) <= MaxCardSize {
		return true
	}
	return len(b) <= MaxChainedCardSize && len(b) >= 2 && b[0] == 0x08 && b[1] == CardVersionChained
}

func (c *Card) canonical() []byte {
	k := c.Key.der
	cn := newCanon(1 + 4 + IDSize + 4 + len(c.Name) + 4 + len(k) + 512)
	cn.u8(uint8(c.version()))
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
	if c.version() == CardVersionChained {
		cn.bytes(c.Genesis.der)
		cn.u32(uint32(len(c.Chain)))
		for _, r := range c.Chain {
			cn.bytes(r.Marshal())
		}
	}
	return cn.b
}

// Marshal encodes the card (protobuf, canonical). A version-1 card encodes
// as parley.v1.Card, a version-2 card as parley.v1.ChainedCard, its
// superset.
func (c *Card) Marshal() []byte {
	m := &pb.ChainedCard{
		Version:   c.version(),
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
	if c.Genesis != nil {
		m.GenesisKey = c.Genesis.der
	}
	for _, r := range c.Chain {
		m.Chain = append(m.Chain, r.toPB())
	}
	return marshal(m)
}

// URI returns the card's text form, "parley:card/" followed by the
// unpadded base64url of Marshal. At RSA-3072 it fits in a QR code.
func (c *Card) URI() string { return CardURIScheme + cardEncoding.EncodeToString(c.Marshal()) }

// ParseCardURI parses and verifies the text form of a card.
func ParseCardURI(s string) (*Card, error) {
	s = strings.TrimSpace(s)
	if len(s) > len(CardURIScheme)+cardEncoding.EncodedLen(MaxChainedCardSize) {
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
// limits, the key size, that the key hashes to the user ID (version 1) or
// follows from the genesis key through a valid rotation chain (version 2,
// ErrBadChain otherwise), the card signature and the prekey signature. It
// does not check the prekey's validity period (Seal does, when the prekey
// is used).
func ParseCard(b []byte) (*Card, error) {
	if !cardSizeOK(b) {
		return nil, fmt.Errorf("%w: card of %d bytes (max %d, %d with a rotation chain)", ErrTooLarge, len(b), MaxCardSize, MaxChainedCardSize)
	}
	var m pb.ChainedCard
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("card: %w", err)
	}
	chained := len(m.GetGenesisKey()) > 0 || len(m.GetChain()) > 0
	switch v := m.GetVersion(); {
	case v == CardVersion && !chained:
	case v == CardVersionChained && len(m.GetGenesisKey()) > 0 && len(m.GetChain()) > 0:
	default:
		return nil, fmt.Errorf("%w: card version %d with %d rotations", ErrMalformed, v, len(m.GetChain()))
	}
	uid, err := IDFromBytes(m.GetUserId())
	if err != nil {
		return nil, fmt.Errorf("card user ID: %w", err)
	}
	key, err := ParsePublicKey(m.GetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("card key: %w", err)
	}
	var genesis *PublicKey
	var chain []*Rotation
	if chained {
		if genesis, err = ParsePublicKey(m.GetGenesisKey()); err != nil {
			return nil, fmt.Errorf("card genesis key: %w", err)
		}
		if len(m.GetChain()) > MaxChainLength {
			return nil, fmt.Errorf("%w: %w: card chain of %d rotations (max %d)", ErrBadChain, ErrTooLarge, len(m.GetChain()), MaxChainLength)
		}
		chain = make([]*Rotation, len(m.GetChain()))
		for i, rm := range m.GetChain() {
			if chain[i], err = rotationFromPB(rm); err != nil {
				return nil, fmt.Errorf("card rotation %d: %w", i, err)
			}
		}
	} else if key.ID() != uid {
		return nil, fmt.Errorf("%w: card key does not hash to its user ID", ErrAuth)
	}
	c := &Card{
		UserID:    uid,
		Name:      m.GetName(),
		Key:       key,
		Devices:   m.GetDevices(),
		Addrs:     m.GetAddrs(),
		IssuedAt:  time.Unix(m.GetIssuedAt(), 0),
		Genesis:   genesis,
		Chain:     chain,
		Signature: m.GetSignature(),
	}
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	if chained {
		cur, err := VerifyChain(uid, genesis, chain)
		if err != nil {
			return nil, fmt.Errorf("card chain: %w", err)
		}
		if !cur.Equal(key) {
			return nil, fmt.Errorf("%w: %w: card chain ends at key %s, not the card key %s", ErrBadChain, ErrAuth, cur, key)
		}
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
