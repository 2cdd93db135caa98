package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"slices"
)

// Limits of the double ratchet.
const (
	// MaxSkippedKeys is how many message keys of messages that have not
	// arrived yet a session keeps; beyond it the oldest are deleted, and
	// their messages fail with ErrMessageKeyGone.
	MaxSkippedKeys = 1000
	// MaxSkipJump is how many message keys one incoming message may make a
	// session skip; a message that would skip more fails with ErrSkipLimit
	// and derives nothing.
	MaxSkipJump = 2000
	// maxOldRemote is how many past ratchet keys of the peer a session
	// remembers, so that a replayed message of an old chain is
	// ErrMessageKeyGone rather than a DH step that cannot succeed.
	maxOldRemote = 32
)

// Domain labels of the ratchet's key derivations.
const (
	LabelSessRoot    = "parley/v1/sess-root"
	LabelSessRatchet = "parley/v1/sess-ratchet"
	LabelSessKey     = "parley/v1/sess-key"
)

type key32 = [32]byte

// skippedKey is the key of a message of chain ratchet, number n, that has
// not arrived yet.
type skippedKey struct {
	ratchet key32
	n       uint32
	mk      key32
}

// ratchet is the double-ratchet state of one session (Signal's DR spec,
// section 3: DHs, DHr, RK, CKs, CKr, Ns, Nr, PN, MKSKIPPED). Its methods
// never change it in place: they return the next state, so that a failed
// open leaves the session as it was. The slices are never modified in
// place either, only replaced, so copies may share them.
type ratchet struct {
	dhSelf    *ecdh.PrivateKey // DHs, or nil after a parse until a DH step needs it
	dhPriv    key32            // DHs, private
	dhPub     key32            // DHs, public
	dhRemote  key32            // DHr
	root      key32            // RK
	send      key32            // CKs
	recv      key32            // CKr
	hasRecv   bool             // CKr is set
	ns, nr    uint32
	pn        uint32
	skipped   []skippedKey // oldest first
	oldRemote []key32      // past DHr, oldest first
}

// kdfRoot is KDF_RK: HKDF-SHA256(ikm = dh, salt = rk,
// info = "parley/v1/sess-ratchet"), 64 bytes → rk' ‖ ck.
func kdfRoot(rk key32, dh []byte) (root, chain key32, err error) {
	if len(dh) != X25519KeySize || isZero(dh) {
		return root, chain, fmt.Errorf("%w: all-zero X25519 shared secret", ErrAuth)
	}
	okm, err := hkdf.Key(sha256.New, dh, rk[:], LabelSessRatchet, 64)
	if err != nil {
		return root, chain, fmt.Errorf("ratchet KDF: %w", err)
	}
	copy(root[:], okm[:32])
	copy(chain[:], okm[32:])
	return root, chain, nil
}

// kdfChain is KDF_CK: mk = HMAC-SHA256(ck, 0x01), ck' = HMAC-SHA256(ck, 0x02).
func kdfChain(ck key32) (next, mk key32) {
	h := hmac.New(sha256.New, ck[:])
	h.Write([]byte{1})
	h.Sum(mk[:0])
	h.Reset()
	h.Write([]byte{2})
	h.Sum(next[:0])
	return next, mk
}

// messageCipher expands a message key into the AES-256-GCM key and nonce:
// HKDF-Expand-SHA256(prk = mk, info = "parley/v1/sess-key" ‖ msg_id),
// 32 + 12 bytes. Each message key serves one message only; binding the
// random msg_id as well means that even a session state restored from an
// old copy, which would derive a used key again, never reuses a key and
// nonce for a different plaintext.
func messageCipher(mk key32, id MsgID) (cipher.AEAD, []byte, error) {
	return keyCipher(LabelSessKey, mk, id)
}

// keyCipher is the AES-256-GCM cipher and nonce of message id under
// message key mk: HKDF-SHA256-Expand(mk, label ‖ id) gives the key and
// the nonce (sessions and group chains, each with its own label).
func keyCipher(label string, mk key32, id MsgID) (cipher.AEAD, []byte, error) {
	okm, err := hkdf.Expand(sha256.New, mk[:], label+string(id[:]), 32+NonceSize)
	if err != nil {
		return nil, nil, fmt.Errorf("message key: %w", err)
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, nil, fmt.Errorf("message cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("message cipher: %w", err)
	}
	return aead, okm[32:], nil
}

func x25519(priv *ecdh.PrivateKey, pub []byte) ([]byte, error) {
	remote, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: ratchet key", ErrAuth)
	}
	out, err := priv.ECDH(remote)
	if err != nil { // crypto/ecdh refuses low-order points
		return nil, fmt.Errorf("%w: all-zero X25519 shared secret", ErrAuth)
	}
	return out, nil
}

func pubOf(k *ecdh.PrivateKey) key32 { return key32(k.PublicKey().Bytes()) }

// withSelf returns r with its own ratchet key set to k.
func (r ratchet) withSelf(k *ecdh.PrivateKey) ratchet {
	r.dhSelf, r.dhPriv, r.dhPub = k, key32(k.Bytes()), pubOf(k)
	return r
}

// self returns the own ratchet key as a crypto/ecdh key, made from its
// stored bytes after a parse (which costs a scalar multiplication, so
// parsing does not).
func (r ratchet) self() (*ecdh.PrivateKey, error) {
	if r.dhSelf != nil {
		return r.dhSelf, nil
	}
	k, err := ecdh.X25519().NewPrivateKey(r.dhPriv[:])
	if err != nil {
		return nil, fmt.Errorf("%w: session state ratchet key", ErrMalformed)
	}
	return k, nil
}

// initiatorRatchet is Alice's RatchetInitAlice: DHs = self, DHr = bob's
// prekey, RK, CKs = KDF_RK(SK, DH(DHs, DHr)).
func initiatorRatchet(sk key32, self *ecdh.PrivateKey, prekeyPub key32) (ratchet, error) {
	dh, err := x25519(self, prekeyPub[:])
	if err != nil {
		return ratchet{}, err
	}
	root, send, err := kdfRoot(sk, dh)
	if err != nil {
		return ratchet{}, err
	}
	return ratchet{dhRemote: prekeyPub, root: root, send: send}.withSelf(self), nil
}

// responderRatchet is Bob's RatchetInitBob with the prekey as DHs,
// followed at once by the DH ratchet step for alice's first ratchet key,
// so that the state never holds the prekey's private half.
func responderRatchet(sk key32, prekey *ecdh.PrivateKey, alice key32) (ratchet, error) {
	r := ratchet{root: sk}.withSelf(prekey)
	return r.dhStep(alice)
}

// dhStep is DHRatchet: PN = Ns; Ns = Nr = 0; DHr = remote;
// RK, CKr = KDF_RK(RK, DH(DHs, DHr)); DHs = new; RK, CKs = KDF_RK(RK, DH(DHs, DHr)).
func (r ratchet) dhStep(remote key32) (ratchet, error) {
	me, err := r.self()
	if err != nil {
		return r, err
	}
	dh, err := x25519(me, remote[:])
	if err != nil {
		return r, err
	}
	root, recv, err := kdfRoot(r.root, dh)
	if err != nil {
		return r, err
	}
	self, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return r, fmt.Errorf("generating ratchet key: %w", err)
	}
	dh, err = x25519(self, remote[:])
	if err != nil {
		return r, err
	}
	root, send, err := kdfRoot(root, dh)
	if err != nil {
		return r, err
	}
	r.pn, r.ns, r.nr = r.ns, 0, 0
	r = r.withSelf(self)
	r.dhRemote = remote
	r.root, r.recv, r.send, r.hasRecv = root, recv, send, true
	return r, nil
}

// sealKey returns the next sending message key, its number and the next state.
func (r ratchet) sealKey() (ratchet, key32, uint32) {
	n := r.ns
	var mk key32
	r.send, mk = kdfChain(r.send)
	r.ns++
	return r, mk, n
}

// openKey returns the message key of message n of the chain of the peer's
// ratchet key remote (pn: the length of the peer's previous chain), the
// next state, and whether a DH ratchet step was taken. It fails, deriving
// nothing, with ErrMessageKeyGone for a key used or deleted, and with
// ErrSkipLimit when more than MaxSkipJump keys would be skipped.
func (r ratchet) openKey(remote key32, pn, n uint32) (next ratchet, mk key32, stepped bool, err error) {
	for i, s := range r.skipped {
		if s.n == n && s.ratchet == remote {
			r.skipped = slices.Delete(slices.Clone(r.skipped), i, i+1)
			return r, s.mk, false, nil
		}
	}
	if remote == r.dhRemote {
		if !r.hasRecv || n < r.nr {
			return r, mk, false, fmt.Errorf("%w: message %d of the current chain", ErrMessageKeyGone, n)
		}
		if n-r.nr > MaxSkipJump {
			return r, mk, false, fmt.Errorf("%w: %d keys to skip", ErrSkipLimit, n-r.nr)
		}
	} else {
		for _, old := range r.oldRemote {
			if old == remote {
				return r, mk, false, fmt.Errorf("%w: message %d of an old chain", ErrMessageKeyGone, n)
			}
		}
		jump := uint64(n)
		if r.hasRecv && pn > r.nr {
			jump += uint64(pn - r.nr)
		}
		if jump > MaxSkipJump {
			return r, mk, false, fmt.Errorf("%w: %d keys to skip", ErrSkipLimit, jump)
		}
		var added []skippedKey
		if r.hasRecv {
			r, added = r.skipTo(pn, added)
		}
		old := r.dhRemote
		if r, err = r.dhStep(remote); err != nil {
			return r, mk, false, err
		}
		r.oldRemote = appendCapped(r.oldRemote, old, maxOldRemote)
		r.skipped = appendAllCapped(r.skipped, added, MaxSkippedKeys)
		stepped = true
	}
	var added []skippedKey
	r, added = r.skipTo(n, added)
	r.skipped = appendAllCapped(r.skipped, added, MaxSkippedKeys)
	r.recv, mk = kdfChain(r.recv)
	r.nr++
	return r, mk, stepped, nil
}

// skipTo derives and appends to added the receiving chain's keys up to
// (not including) message until.
func (r ratchet) skipTo(until uint32, added []skippedKey) (ratchet, []skippedKey) {
	for r.nr < until {
		var mk key32
		r.recv, mk = kdfChain(r.recv)
		added = append(added, skippedKey{ratchet: r.dhRemote, n: r.nr, mk: mk})
		r.nr++
	}
	return r, added
}

// appendCapped returns a new slice holding s then add, without its oldest
// elements beyond max. It never writes into s's array.
func appendCapped[T any](s []T, add T, max int) []T {
	return appendAllCapped(s, []T{add}, max)
}

func appendAllCapped[T any](s, add []T, max int) []T {
	if len(add) == 0 {
		return s
	}
	out := make([]T, 0, len(s)+len(add))
	out = append(append(out, s...), add...)
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// equal32 compares two keys in constant time.
func equal32(a, b []byte) bool { return len(a) == len(b) && hmac.Equal(a, b) }
