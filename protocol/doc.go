// Package protocol owns Parley's wire formats and cryptography: identities,
// envelopes, signed prekeys, contact cards, key rotation and safety numbers.
// It is pure and silent: no network, no disk, no logging, no global state.
// Callers branch on its sentinel errors (ErrAuth, ErrMalformed, ErrTooLarge,
// ErrNotForMe, ErrStale, ErrUnknownPrekey, ErrUnknownSender, ErrKeySize,
// ErrExpired, ErrBadChain).
//
// # Identities
//
// A user's identity is an RSA key pair, 3072 bits by default; keys of 2048 to
// 8192 bits with exponent 65537 are accepted, anything else is ErrKeySize
// before any RSA operation. A key's ID is SHA-256 of its SubjectPublicKeyInfo
// DER, printed as lower-case unpadded base32; a user's ID is the ID of the
// user's first key. One key pair signs (RSA-PSS-SHA256, salt length 32 when
// signing and when verifying) and receives (RSA-OAEP-SHA256), always under a
// domain label: a signature under label L over message m is
// RSA-PSS(SHA-256(L ‖ m)).
//
// # Envelopes
//
// An envelope carries one message from a sender to a recipient. On the wire
// it is the protobuf message parley.v1.Envelope (pb/parley.proto); a parser
// accepts only the canonical encoding. What is signed and authenticated is
// not the protobuf but the canonical header (Header.Canonical):
//
//	u8 version ‖ u8 suite ‖ u16 kind ‖ msg_id ‖ i64 timestamp_ms ‖
//	bytes(sender) ‖ bytes(sender_key) ‖ bytes(recipient) ‖ bytes(recipient_key) ‖
//	bytes(sender_device) ‖ u64 prekey_id ‖ bytes(ephemeral) ‖ bytes(wrapped_key)
//
// where integers are big-endian and bytes(x) is a u32 length and x. The
// construction, for a body of at most 32 KiB:
//
//	msg_id   = 16 random bytes (also the anti-replay nonce)
//	s        = 32 random bytes
//	wrapped  = RSA-OAEP-SHA256(recipient key, s,
//	               label = "parley/v1/oaep" ‖ sender ID ‖ recipient ID ‖ msg_id)
//	suite 1: ikm = s,                          salt = msg_id
//	suite 2: ikm = X25519(ephemeral, prekey) ‖ s, salt = ephemeral public ‖ prekey public
//	         (an all-zero X25519 result is an error)
//	key ‖ nonce = HKDF-SHA256(ikm, salt,
//	               info = "parley/v1/env-key" ‖ SHA-256(canonical header)), 32 + 12 bytes
//	plaintext = sender ID ‖ recipient ID ‖ msg_id ‖ i64 timestamp_ms ‖ u32 len(body) ‖ body,
//	            zero-padded to a multiple of 256 bytes
//	ciphertext = AES-256-GCM(key, nonce, plaintext, AAD = canonical header)
//	signature  = RSA-PSS-SHA256(sender key,
//	               "parley/v1/env-sig" ‖ canonical header ‖ SHA-256(ciphertext))
//
// The nonce is carried in the envelope (the seed's iv field) and must equal
// the derived one. Opener.Open checks, in order: size cap (64 KiB), parse,
// recipient is me, timestamp inside the window (14 days back, 5 minutes
// ahead by default), the signature with the sender key the caller supplies,
// unwrap, derive, decrypt, and that the IDs, msg_id and timestamp inside the
// ciphertext equal the header's. Every cryptographic failure is the same
// ErrAuth. The replay check (a msg_id seen before) belongs to the caller.
//
// # Signed prekeys, cards and safety numbers
//
// A signed prekey (SignedPrekey) is an X25519 public key with an ID and a
// validity window, signed under "parley/v1/prekey". A contact card (Card) is
// a user's signed bundle {user ID, display name, RSA public key, devices,
// multiaddrs, current signed prekey, issued-at} under "parley/v1/card",
// shared as a "parley:card/…" link. SafetyNumber computes the 60-digit
// number two users compare to verify each other's keys.
//
// # Key rotation
//
// A user moves to a new RSA key with a Rotation {user ID, old key ID, new
// public key, sequence, time}, signed by the old key under
// "parley/v1/rotate-old" and counter-signed by the new key under
// "parley/v1/rotate-new" (wire form: parley.v1.Rotation in
// pb/rotation.proto). The user ID stays the ID of the genesis key, and so
// does the safety number. VerifyChain follows a chain of rotations from the
// genesis key to the current key. A card issued after a rotation is version
// 2: it is signed by the current key and carries the genesis key and the
// chain (NewChainedCard); a card of a user who never rotated is unchanged
// (version 1).
package protocol
