package protocol

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Short invites. A card link ("parley:card/…", about 2.3 KB at RSA-3072)
// is too long for a QR code a phone scans easily. A short invite carries
// only what is needed to fetch the card and check it:
//
//	"parley:invite/" ‖ base64url( u8 version(1) ‖ user_id(32) ‖ secret(12) ‖
//	    u8 len ‖ device peer ID ‖ u8 n ‖ (u8 len ‖ binary multiaddr)×n )
//
// with n at most MaxInviteAddrs. The receiving node dials the device at
// those addresses on the card protocol (/parley/card/1.0.0): it sends a
// CardRequest (the user ID and the secret) and gets the card only if the
// secret is right (compared in constant time; the inviter limits how
// often a peer may ask). The card is self-certifying: ParseCard checks
// that its key hashes to the user ID (or follows from the genesis key
// that does, through a signed rotation chain), so the receiver checks
// that the card's user ID is the invite's, and nothing on the path can
// substitute another user. When the device cannot be reached the
// receiver may look the user ID up in the directory instead.
//
// The secret keeps the card (its addresses and prekey) from anyone who
// merely learns the user ID; it is not what authenticates the card.

// Invite link constants.
const (
	// InviteURIScheme prefixes a short invite's text form.
	InviteURIScheme = "parley:invite/"
	// InviteVersion is the format version of a short invite.
	InviteVersion = 1
	// InviteSecretSize is the size of an invite's secret (96 bits).
	InviteSecretSize = 12
	// MaxInviteAddrs caps the addresses a short invite carries, and
	// MaxInviteAddrSize each one's binary form.
	MaxInviteAddrs    = 2
	MaxInviteAddrSize = 96
	// LabelInviteSecret is the label of DeriveInviteSecret.
	LabelInviteSecret = "parley/v1/invite-secret"
)

// maxInviteSize caps a short invite's binary form.
const maxInviteSize = 1 + IDSize + InviteSecretSize + 1 + MaxDeviceSize + 1 + MaxInviteAddrs*(1+MaxInviteAddrSize)

// InviteSecret is the secret a short invite carries.
type InviteSecret [InviteSecretSize]byte

// DeriveInviteSecret derives a device's invite secret from a secret of
// that device (its private host key, say): the same seed gives the same
// secret, so the invites a device hands out stay valid across restarts.
func DeriveInviteSecret(seed []byte) InviteSecret {
	mac := hmac.New(sha256.New, seed)
	mac.Write([]byte(LabelInviteSecret))
	var s InviteSecret
	copy(s[:], mac.Sum(nil))
	return s
}

// Invite is a short invite: whose card to fetch, from which device at
// which addresses, with which secret.
type Invite struct {
	UserID ID
	Secret InviteSecret
	Device []byte   // the device's libp2p peer ID, as bytes
	Addrs  [][]byte // its multiaddrs (binary form, without /p2p), at most MaxInviteAddrs
}

func (iv *Invite) check() error {
	switch {
	case iv.UserID.IsZero():
		return fmt.Errorf("%w: invite without a user ID", ErrMalformed)
	case len(iv.Device) == 0 || len(iv.Device) > MaxDeviceSize:
		return fmt.Errorf("%w: invite device of %d bytes", ErrMalformed, len(iv.Device))
	case len(iv.Addrs) > MaxInviteAddrs:
		return fmt.Errorf("%w: invite with %d addresses (max %d)", ErrMalformed, len(iv.Addrs), MaxInviteAddrs)
	}
	for _, a := range iv.Addrs {
		if len(a) == 0 || len(a) > MaxInviteAddrSize {
			return fmt.Errorf("%w: invite address of %d bytes", ErrMalformed, len(a))
		}
	}
	return nil
}

// Marshal encodes the invite (the binary form above). It panics on an
// invite whose fields are out of range; NewInvite checks them.
func (iv *Invite) Marshal() []byte {
	if err := iv.check(); err != nil {
		panic("protocol: " + err.Error())
	}
	b := make([]byte, 0, maxInviteSize)
	b = append(b, InviteVersion)
	b = append(b, iv.UserID[:]...)
	b = append(b, iv.Secret[:]...)
	b = append(b, byte(len(iv.Device)))
	b = append(b, iv.Device...)
	b = append(b, byte(len(iv.Addrs)))
	for _, a := range iv.Addrs {
		b = append(b, byte(len(a)))
		b = append(b, a...)
	}
	return b
}

// NewInvite checks the fields and returns the invite.
func NewInvite(user ID, secret InviteSecret, device []byte, addrs [][]byte) (*Invite, error) {
	iv := &Invite{UserID: user, Secret: secret, Device: device, Addrs: addrs}
	if err := iv.check(); err != nil {
		return nil, err
	}
	return iv, nil
}

// ParseInvite decodes the binary form of a short invite. There is one
// encoding of an invite: trailing bytes, a wrong version or out-of-range
// lengths are ErrMalformed.
func ParseInvite(b []byte) (*Invite, error) {
	if len(b) > maxInviteSize {
		return nil, fmt.Errorf("%w: invite of %d bytes", ErrTooLarge, len(b))
	}
	r := inviteReader{b: b}
	if v := r.byte(); v != InviteVersion {
		return nil, fmt.Errorf("%w: invite version %d", ErrMalformed, v)
	}
	iv := &Invite{}
	copy(iv.UserID[:], r.take(IDSize))
	copy(iv.Secret[:], r.take(InviteSecretSize))
	iv.Device = r.take(int(r.byte()))
	n := int(r.byte())
	if n > MaxInviteAddrs {
		return nil, fmt.Errorf("%w: invite with %d addresses", ErrMalformed, n)
	}
	for range n {
		iv.Addrs = append(iv.Addrs, r.take(int(r.byte())))
	}
	if r.bad || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: invite is cut short or has trailing bytes", ErrMalformed)
	}
	if err := iv.check(); err != nil {
		return nil, err
	}
	return iv, nil
}

// inviteReader reads the fields of a short invite; bad records a read
// past the end.
type inviteReader struct {
	b   []byte
	bad bool
}

func (r *inviteReader) byte() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *inviteReader) take(n int) []byte {
	if len(r.b) < n {
		r.bad = true
		r.b = nil
		return nil
	}
	out := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return out
}

// URI returns the invite's text form, "parley:invite/" and the unpadded
// base64url of Marshal.
func (iv *Invite) URI() string {
	return InviteURIScheme + cardEncoding.EncodeToString(iv.Marshal())
}

// IsInviteURI reports whether s (trimmed) is in the form of a short invite
// rather than a card link; it does not parse it.
func IsInviteURI(s string) bool {
	s = strings.TrimSpace(s)
	return len(s) >= len(InviteURIScheme) && strings.EqualFold(s[:len(InviteURIScheme)], InviteURIScheme)
}

// ParseInviteURI parses the text form of a short invite.
func ParseInviteURI(s string) (*Invite, error) {
	s = strings.TrimSpace(s)
	if len(s) > len(InviteURIScheme)+cardEncoding.EncodedLen(maxInviteSize) {
		return nil, fmt.Errorf("%w: invite link of %d characters", ErrTooLarge, len(s))
	}
	if !IsInviteURI(s) {
		return nil, fmt.Errorf("%w: not a %q link", ErrMalformed, InviteURIScheme)
	}
	b, err := cardEncoding.DecodeString(s[len(InviteURIScheme):])
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%w: invite link is not base64url", ErrMalformed)
	}
	return ParseInvite(b)
}

// The card protocol's frames: one request, one response, each
// length-prefixed (uvarint) like the messaging stream's.
const (
	// cardRequestSize is the size of a CardRequest: version, user ID,
	// secret.
	cardRequestSize = 1 + IDSize + InviteSecretSize
	// MaxCardResponseSize caps a CardResponse: its code and a card.
	MaxCardResponseSize = 1 + MaxChainedCardSize
)

// CardRequest asks a device for its user's card.
type CardRequest struct {
	UserID ID
	Secret InviteSecret
}

// CardCode is a device's answer to a CardRequest.
type CardCode uint8

// Card codes.
const (
	CardOK        CardCode = 0 // the card follows
	CardRefused   CardCode = 1 // not this device's user, or not its secret
	CardThrottled CardCode = 2 // too many requests from this peer; try later
)

// Matches reports whether r asks for user's card with secret: the
// secret is compared in constant time.
func (r *CardRequest) Matches(user ID, secret InviteSecret) bool {
	okSecret := subtle.ConstantTimeCompare(r.Secret[:], secret[:]) == 1
	return okSecret && r.UserID == user
}

// WriteCardRequest writes one request frame.
func WriteCardRequest(w io.Writer, r *CardRequest) error {
	b := make([]byte, 0, cardRequestSize)
	b = append(b, InviteVersion)
	b = append(append(b, r.UserID[:]...), r.Secret[:]...)
	return writeRaw(w, b)
}

// ReadCardRequest reads one request frame.
func ReadCardRequest(r *bufio.Reader) (*CardRequest, error) {
	b, err := readFrame(r, cardRequestSize)
	if err != nil {
		return nil, err
	}
	if len(b) != cardRequestSize || b[0] != InviteVersion {
		return nil, fmt.Errorf("%w: card request of %d bytes", ErrMalformed, len(b))
	}
	req := &CardRequest{}
	copy(req.UserID[:], b[1:1+IDSize])
	copy(req.Secret[:], b[1+IDSize:])
	return req, nil
}

// WriteCardResponse writes one response frame: code, and the encoded
// card when code is CardOK.
func WriteCardResponse(w io.Writer, code CardCode, card []byte) error {
	if code != CardOK {
		card = nil
	}
	return writeRaw(w, append([]byte{byte(code)}, card...))
}

// ReadCardResponse reads one response frame. The card is returned
// encoded; the caller parses it (ParseCard) and checks its user ID.
func ReadCardResponse(r *bufio.Reader) (CardCode, []byte, error) {
	b, err := readFrame(r, MaxCardResponseSize)
	if err != nil {
		return 0, nil, err
	}
	if len(b) == 0 || b[0] > byte(CardThrottled) || (CardCode(b[0]) != CardOK && len(b) != 1) || (CardCode(b[0]) == CardOK && len(b) == 1) {
		return 0, nil, fmt.Errorf("%w: card response", ErrMalformed)
	}
	return CardCode(b[0]), b[1:], nil
}

// writeRaw writes b as one length-prefixed frame.
func writeRaw(w io.Writer, b []byte) error {
	buf := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(b)), uint64(len(b)))
	if _, err := w.Write(append(buf, b...)); err != nil {
		return fmt.Errorf("protocol: write frame: %w", err)
	}
	return nil
}
