package protocol

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// LabelPrekey is the domain label of prekey signatures.
const LabelPrekey = "parley/v1/prekey"

// X25519KeySize is the size of X25519 public and private keys.
const X25519KeySize = 32

// SignedPrekey is a medium-term X25519 public key, signed by its owner's RSA
// identity key over
//
//	"parley/v1/prekey" ‖ u64 id ‖ bytes(public) ‖ i64 not_before ‖ i64 not_after ‖ bytes(owner key ID)
//
// (times in unix seconds; see canon for the encoding). Senders that use it
// (suite 2) give their messages forward secrecy once the owner deletes the
// private half.
type SignedPrekey struct {
	ID        uint64
	Public    [X25519KeySize]byte
	NotBefore time.Time
	NotAfter  time.Time
	Owner     ID // key ID of the signing RSA key
	Signature []byte
}

// Prekey is a SignedPrekey with its private half. It belongs in the owner's
// store, sealed.
type Prekey struct {
	Signed SignedPrekey
	priv   *ecdh.PrivateKey
}

// GeneratePrekey makes a prekey valid from notBefore for lifetime and signs
// it with owner.
func GeneratePrekey(owner Signer, notBefore time.Time, lifetime time.Duration) (*Prekey, error) {
	if lifetime < time.Second {
		// Validity times are whole seconds; a shorter lifetime would make
		// NotAfter equal NotBefore, which no one could use or parse.
		return nil, fmt.Errorf("%w: prekey lifetime %v (min 1s)", ErrMalformed, lifetime)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating prekey: %w", err)
	}
	var idb [8]byte
	for binary.BigEndian.Uint64(idb[:]) == 0 {
		if _, err := rand.Read(idb[:]); err != nil {
			return nil, fmt.Errorf("generating prekey ID: %w", err)
		}
	}
	sp := SignedPrekey{
		ID:        binary.BigEndian.Uint64(idb[:]),
		NotBefore: time.Unix(notBefore.Unix(), 0),
		NotAfter:  time.Unix(notBefore.Add(lifetime).Unix(), 0),
		Owner:     owner.Public().ID(),
	}
	copy(sp.Public[:], priv.PublicKey().Bytes())
	sig, err := owner.Sign(LabelPrekey, sp.canonical())
	if err != nil {
		return nil, fmt.Errorf("signing prekey: %w", err)
	}
	sp.Signature = sig
	return &Prekey{Signed: sp, priv: priv}, nil
}

func (p *SignedPrekey) canonical() []byte {
	c := newCanon(8 + 4 + X25519KeySize + 16 + 4 + IDSize)
	c.u64(p.ID)
	c.bytes(p.Public[:])
	c.i64(p.NotBefore.Unix())
	c.i64(p.NotAfter.Unix())
	c.bytes(p.Owner[:])
	return c.b
}

// Verify checks that p is signed by owner and valid at now. A bad signature
// or a different owner is ErrAuth; a prekey outside its validity is ErrExpired.
func (p *SignedPrekey) Verify(owner *PublicKey, now time.Time) error {
	if err := p.VerifySignature(owner); err != nil {
		return err
	}
	return p.checkValidity(now)
}

func (p *SignedPrekey) checkValidity(now time.Time) error {
	if now.Before(p.NotBefore) || !now.Before(p.NotAfter) {
		return fmt.Errorf("%w: prekey %d valid %s to %s", ErrExpired, p.ID,
			p.NotBefore.UTC().Format(time.RFC3339), p.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// VerifySignature checks that p is signed by owner, whatever the time.
func (p *SignedPrekey) VerifySignature(owner *PublicKey) error {
	if owner == nil || p.Owner != owner.ID() {
		return fmt.Errorf("%w: prekey is not signed by this key", ErrAuth)
	}
	if err := owner.Verify(LabelPrekey, p.canonical(), p.Signature); err != nil {
		return fmt.Errorf("prekey %d: %w", p.ID, err)
	}
	return nil
}

func (p *SignedPrekey) toPB() *pb.SignedPrekey {
	return &pb.SignedPrekey{
		Id:        p.ID,
		PublicKey: p.Public[:],
		NotBefore: p.NotBefore.Unix(),
		NotAfter:  p.NotAfter.Unix(),
		OwnerKey:  p.Owner[:],
		Signature: p.Signature,
	}
}

func signedPrekeyFromPB(m *pb.SignedPrekey) (*SignedPrekey, error) {
	if m.GetId() == 0 || len(m.GetPublicKey()) != X25519KeySize || len(m.GetOwnerKey()) != IDSize ||
		len(m.GetSignature()) < MinRSABits/8 || len(m.GetSignature()) > MaxRSABits/8 ||
		m.GetNotAfter() <= m.GetNotBefore() {
		return nil, fmt.Errorf("%w: signed prekey fields", ErrMalformed)
	}
	p := &SignedPrekey{
		ID:        m.GetId(),
		NotBefore: time.Unix(m.GetNotBefore(), 0),
		NotAfter:  time.Unix(m.GetNotAfter(), 0),
		Signature: append([]byte(nil), m.GetSignature()...),
	}
	copy(p.Public[:], m.GetPublicKey())
	copy(p.Owner[:], m.GetOwnerKey())
	return p, nil
}

// Marshal encodes p (protobuf, canonical).
func (p *SignedPrekey) Marshal() []byte { return marshal(p.toPB()) }

// ParseSignedPrekey decodes a SignedPrekey. It checks the form only; call
// Verify with the owner's key before trusting it.
func ParseSignedPrekey(b []byte) (*SignedPrekey, error) {
	if len(b) > 2048 {
		return nil, fmt.Errorf("%w: signed prekey of %d bytes", ErrTooLarge, len(b))
	}
	var m pb.SignedPrekey
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("signed prekey: %w", err)
	}
	return signedPrekeyFromPB(&m)
}

// Marshal encodes the prekey with its private half. Seal it before storing.
// Only prekeys made by GeneratePrekey or ParsePrekey have a private half;
// Marshal panics on one built by hand, as on any other misuse of a nil key.
func (p *Prekey) Marshal() []byte {
	if p.priv == nil {
		panic("protocol: Marshal of a Prekey without its private half")
	}
	return marshal(&pb.PrekeyPrivate{Signed: p.Signed.toPB(), PrivateKey: p.priv.Bytes()})
}

// ParsePrekey decodes what Prekey.Marshal produced and checks that the
// private half matches the public half.
func ParsePrekey(b []byte) (*Prekey, error) {
	if len(b) > 2048 {
		return nil, fmt.Errorf("%w: prekey of %d bytes", ErrTooLarge, len(b))
	}
	var m pb.PrekeyPrivate
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("prekey: %w", err)
	}
	if m.GetSigned() == nil {
		return nil, fmt.Errorf("%w: prekey without public half", ErrMalformed)
	}
	sp, err := signedPrekeyFromPB(m.GetSigned())
	if err != nil {
		return nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(m.GetPrivateKey())
	if err != nil {
		return nil, fmt.Errorf("%w: prekey private key", ErrMalformed)
	}
	if [X25519KeySize]byte(priv.PublicKey().Bytes()) != sp.Public {
		return nil, fmt.Errorf("%w: prekey halves do not match", ErrMalformed)
	}
	return &Prekey{Signed: *sp, priv: priv}, nil
}

// ID returns the prekey's ID.
func (p *Prekey) ID() uint64 { return p.Signed.ID }
