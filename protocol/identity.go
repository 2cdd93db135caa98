package protocol

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base32"
	"fmt"
	"strings"
)

// RSA key sizes Parley accepts. Anything outside is rejected with ErrKeySize
// before any RSA operation, so a hostile 16384-bit key costs nothing.
const (
	MinRSABits     = 2048
	MaxRSABits     = 8192
	DefaultRSABits = 3072

	// maxPublicDER and maxPrivateDER bound the encodings we parse at all: an
	// 8192-bit key is about 1.1 KB (SPKI) and 4.8 KB (PKCS #8).
	maxPublicDER  = 1200
	maxPrivateDER = 5200

	pssSaltLength = 32
	rsaExponent   = 65537
)

// IDSize is the length of a user or key ID in bytes.
const IDSize = sha256.Size

// ID names a key or a user: the SHA-256 of a public key's SubjectPublicKeyInfo
// DER. A user's ID is the ID of the first (genesis) key of the user. It prints
// as lower-case base32 without padding (52 characters).
type ID [IDSize]byte

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// String returns the lower-case, unpadded base32 form of id.
func (id ID) String() string { return strings.ToLower(idEncoding.EncodeToString(id[:])) }

// IsZero reports whether id is all zeros (unset).
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses the printed form of an ID (case-insensitive base32).
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != idEncoding.EncodedLen(IDSize) {
		return id, fmt.Errorf("%w: ID must be %d base32 characters", ErrMalformed, idEncoding.EncodedLen(IDSize))
	}
	b, err := idEncoding.DecodeString(strings.ToUpper(s))
	if err != nil || len(b) != IDSize {
		return id, fmt.Errorf("%w: ID is not base32", ErrMalformed)
	}
	copy(id[:], b)
	// The last base32 character carries unused bits, which the decoder
	// ignores; accept only the one spelling that String produces.
	if !strings.EqualFold(id.String(), s) {
		return ID{}, fmt.Errorf("%w: ID is not in canonical base32", ErrMalformed)
	}
	return id, nil
}

// IDFromBytes converts a 32-byte slice to an ID.
func IDFromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != IDSize {
		return id, fmt.Errorf("%w: ID must be %d bytes, got %d", ErrMalformed, IDSize, len(b))
	}
	copy(id[:], b)
	return id, nil
}

// Signer signs messages under a domain label with an identity key.
type Signer interface {
	// Public returns the public half of the signing key.
	Public() *PublicKey
	// Sign returns the RSA-PSS-SHA256 signature (salt length 32) over
	// SHA-256(label ‖ msg).
	Sign(label string, msg []byte) ([]byte, error)
}

// Verifier checks a signature made by Signer.Sign.
type Verifier interface {
	// Verify returns nil if sig is a valid signature over label ‖ msg, and
	// an error wrapping ErrAuth otherwise.
	Verify(label string, msg, sig []byte) error
}

var (
	_ Signer   = (*PrivateKey)(nil)
	_ Verifier = (*PublicKey)(nil)
)

// PublicKey is a validated RSA public key: 2048–8192 bits, exponent 65537,
// held with its canonical SubjectPublicKeyInfo DER and its ID.
type PublicKey struct {
	k   *rsa.PublicKey
	der []byte
	id  ID
}

// NewPublicKey validates k and wraps it.
func NewPublicKey(k *rsa.PublicKey) (*PublicKey, error) {
	if k == nil || k.N == nil {
		return nil, fmt.Errorf("%w: nil RSA key", ErrMalformed)
	}
	if err := checkRSA(k); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding public key: %v", ErrMalformed, err)
	}
	return &PublicKey{k: k, der: der, id: sha256.Sum256(der)}, nil
}

// ParsePublicKey parses an RSA public key in SubjectPublicKeyInfo DER. The
// encoding must be canonical (it re-encodes to the same bytes).
func ParsePublicKey(der []byte) (*PublicKey, error) {
	if len(der) > maxPublicDER {
		return nil, fmt.Errorf("%w: public key encoding of %d bytes", ErrKeySize, len(der))
	}
	pk, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrMalformed, err)
	}
	rk, ok := pk.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: public key is %T, want RSA", ErrMalformed, pk)
	}
	p, err := NewPublicKey(rk)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(p.der, der) != 1 {
		return nil, fmt.Errorf("%w: public key is not in canonical DER", ErrMalformed)
	}
	return p, nil
}

func checkRSA(k *rsa.PublicKey) error {
	if bits := k.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return fmt.Errorf("%w: %d bits (want %d to %d)", ErrKeySize, bits, MinRSABits, MaxRSABits)
	}
	if k.E != rsaExponent {
		return fmt.Errorf("%w: exponent %d (want %d)", ErrKeySize, k.E, rsaExponent)
	}
	return nil
}

// ID returns the key's ID: SHA-256 of its SubjectPublicKeyInfo DER.
func (p *PublicKey) ID() ID { return p.id }

// Bytes returns a copy of the SubjectPublicKeyInfo DER.
func (p *PublicKey) Bytes() []byte { return append([]byte(nil), p.der...) }

// Bits returns the modulus size in bits.
func (p *PublicKey) Bits() int { return p.k.N.BitLen() }

// Size returns the modulus size in bytes: the length of its signatures and
// of the keys wrapped to it.
func (p *PublicKey) Size() int { return p.k.Size() }

// Equal reports whether p and q are the same key.
func (p *PublicKey) Equal(q *PublicKey) bool {
	return p != nil && q != nil && subtle.ConstantTimeCompare(p.der, q.der) == 1
}

// String returns the key's ID in printed form.
func (p *PublicKey) String() string { return p.id.String() }

// Verify implements Verifier.
func (p *PublicKey) Verify(label string, msg, sig []byte) error {
	if len(sig) != p.k.Size() {
		return fmt.Errorf("%w: signature length %d for a %d-byte key", ErrAuth, len(sig), p.k.Size())
	}
	d := labelledDigest(label, msg)
	if err := rsa.VerifyPSS(p.k, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: pssSaltLength}); err != nil {
		return fmt.Errorf("%w: bad signature", ErrAuth)
	}
	return nil
}

// encryptOAEP wraps secret to p with RSA-OAEP-SHA256 and the given label.
func (p *PublicKey) encryptOAEP(secret, label []byte) ([]byte, error) {
	return rsa.EncryptOAEP(sha256.New(), rand.Reader, p.k, secret, label)
}

// PrivateKey is a user's RSA identity key.
type PrivateKey struct {
	k   *rsa.PrivateKey
	pub *PublicKey
}

// GenerateKey makes a new RSA key of the given size. bits outside
// MinRSABits..MaxRSABits fails with ErrKeySize before any work is done.
func GenerateKey(bits int) (*PrivateKey, error) {
	if bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("%w: %d bits (want %d to %d)", ErrKeySize, bits, MinRSABits, MaxRSABits)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	return newPrivateKey(k)
}

func newPrivateKey(k *rsa.PrivateKey) (*PrivateKey, error) {
	pub, err := NewPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	k.Precompute()
	return &PrivateKey{k: k, pub: pub}, nil
}

// ParsePrivateKey parses an RSA private key in PKCS #8 DER.
func ParsePrivateKey(der []byte) (*PrivateKey, error) {
	if len(der) > maxPrivateDER {
		return nil, fmt.Errorf("%w: private key encoding of %d bytes", ErrKeySize, len(der))
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: private key: %v", ErrMalformed, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: private key is %T, want RSA", ErrMalformed, k)
	}
	return newPrivateKey(rk)
}

// Bytes returns the key in PKCS #8 DER. Callers must seal it before it
// touches a disk.
func (k *PrivateKey) Bytes() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.k)
	if err != nil {
		// A key that was validated on the way in always marshals.
		panic(fmt.Sprintf("protocol: marshaling a validated RSA key: %v", err))
	}
	return der
}

// Public implements Signer.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// ID returns the ID of the public half.
func (k *PrivateKey) ID() ID { return k.pub.id }

// Sign implements Signer.
func (k *PrivateKey) Sign(label string, msg []byte) ([]byte, error) {
	d := labelledDigest(label, msg)
	sig, err := rsa.SignPSS(rand.Reader, k.k, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: pssSaltLength})
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return sig, nil
}

// decryptOAEP unwraps a secret wrapped by encryptOAEP. Every failure is ErrAuth.
func (k *PrivateKey) decryptOAEP(wrapped, label []byte) ([]byte, error) {
	if len(wrapped) != k.k.Size() {
		return nil, fmt.Errorf("%w: wrapped key length", ErrAuth)
	}
	s, err := rsa.DecryptOAEP(sha256.New(), nil, k.k, wrapped, label)
	if err != nil {
		return nil, fmt.Errorf("%w: key unwrap", ErrAuth)
	}
	return s, nil
}

func labelledDigest(label string, msg []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write(msg)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// Fingerprint returns the ID as upper-case hex in 16 groups of 4 digits,
// the form people read aloud or compare by eye.
func (id ID) Fingerprint() string {
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, IDSize*2+IDSize/2-1)
	for i, c := range id {
		if i > 0 && i%2 == 0 {
			b = append(b, ' ')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return string(b)
}
