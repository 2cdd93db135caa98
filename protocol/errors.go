package protocol

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the wrapped message
// says more for logs but never contains key material or plaintext.
var (
	// ErrAuth is every cryptographic failure while opening an envelope or
	// verifying a signed object: a bad signature, a wrapped key that does not
	// unwrap, a wrong nonce, a failed AEAD tag, bad padding, a low-order X25519
	// point, inner IDs that do not match the header. They all look alike on
	// purpose, so that no failure can serve as an oracle for another.
	ErrAuth = errors.New("protocol: authentication failed")
	// ErrMalformed is input that does not parse, is not in canonical form, or
	// has fields of the wrong length or an unknown version or suite.
	ErrMalformed = errors.New("protocol: malformed input")
	// ErrTooLarge is input over its size cap (an envelope over
	// MaxEnvelopeSize, a body over MaxBodySize, a card over MaxCardSize).
	ErrTooLarge = errors.New("protocol: input too large")
	// ErrNotForMe is an envelope addressed to another user or another key.
	ErrNotForMe = errors.New("protocol: envelope not addressed to this identity")
	// ErrStale is an envelope whose timestamp is outside the acceptance window.
	ErrStale = errors.New("protocol: timestamp outside the acceptance window")
	// ErrUnknownPrekey is a suite-2 envelope naming a prekey the recipient
	// does not have (never had, or already deleted).
	ErrUnknownPrekey = errors.New("protocol: unknown prekey")
	// ErrUnknownSender is returned when the caller has no key for the sender
	// named in the envelope header.
	ErrUnknownSender = errors.New("protocol: unknown sender key")
	// ErrKeySize is an RSA key outside MinRSABits..MaxRSABits, or with an
	// exponent other than 65537. It is checked before any RSA operation.
	ErrKeySize = errors.New("protocol: unsupported RSA key size")
	// ErrExpired is a signed prekey or card outside its validity period.
	ErrExpired = errors.New("protocol: outside validity period")
)
