package protocol

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// Key rotation labels and limits.
const (
	// LabelRotateOld is the domain label of the old key's signature on a
	// rotation statement, LabelRotateNew that of the new key's
	// counter-signature. Neither is a prefix of the other (see canon).
	LabelRotateOld = "parley/v1/rotate-old"
	LabelRotateNew = "parley/v1/rotate-new"
	// RotationVersion is the rotation statement format version.
	RotationVersion = 1
	// MaxChainLength caps the rotations a chain may hold: VerifyChain costs
	// two RSA verifications per link, and a hostile chain must stay cheap.
	MaxChainLength = 16
	// maxRotationSize bounds an encoded rotation: an 8192-bit key and two
	// 8192-bit signatures, plus the IDs and framing.
	maxRotationSize = maxPublicDER + 2*MaxRSABits/8 + 2*IDSize + 64
)

// ErrBadChain is a key rotation chain that does not lead from a user's
// genesis key to the key presented: the genesis key does not hash to the
// user ID, a link names another user or does not start from the previous
// key, a signature does not verify, or sequence numbers do not increase.
// Failures of a signature or of the genesis key also wrap ErrAuth.
var ErrBadChain = errors.New("protocol: broken key rotation chain")

// Rotation is a signed statement that a user moves from one RSA key to the
// next. Both keys sign the same canonical bytes,
//
//	u8 version ‖ bytes(user_id) ‖ bytes(old key ID) ‖ bytes(new key DER) ‖ u64 seq ‖ i64 time
//
// the old key under "parley/v1/rotate-old" (the owner of the old key hands
// over) and the new key under "parley/v1/rotate-new" (the new key is held by
// the same user, and agrees). The user ID never changes: it stays the ID of
// the genesis key, and so does the safety number computed over it.
type Rotation struct {
	UserID       ID
	OldKey       ID // key ID of the key being retired
	NewKey       *PublicKey
	Seq          uint64    // strictly increasing along a chain, from 1
	Time         time.Time // unix seconds; informational
	OldSignature []byte
	NewSignature []byte
}

// NewRotation signs the move of user from old to next. seq must be higher
// than the sequence of the previous rotation in the user's chain (1 for the
// first); VerifyChain enforces it.
func NewRotation(user ID, old, next Signer, seq uint64, now time.Time) (*Rotation, error) {
	if old.Public().Equal(next.Public()) {
		return nil, fmt.Errorf("%w: rotation to the same key", ErrMalformed)
	}
	if seq == 0 {
		return nil, fmt.Errorf("%w: rotation sequence 0 (chains start at 1)", ErrMalformed)
	}
	r := &Rotation{
		UserID: user,
		OldKey: old.Public().ID(),
		NewKey: next.Public(),
		Seq:    seq,
		Time:   time.Unix(now.Unix(), 0),
	}
	msg := r.canonical()
	var err error
	if r.OldSignature, err = old.Sign(LabelRotateOld, msg); err != nil {
		return nil, fmt.Errorf("signing rotation with the old key: %w", err)
	}
	if r.NewSignature, err = next.Sign(LabelRotateNew, msg); err != nil {
		return nil, fmt.Errorf("signing rotation with the new key: %w", err)
	}
	// Catch a Signer whose signatures do not match its public key now,
	// rather than in every reader's VerifyChain later.
	if err := r.Verify(old.Public()); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Rotation) canonical() []byte {
	k := r.NewKey.der
	c := newCanon(1 + 4 + IDSize + 4 + IDSize + 4 + len(k) + 16)
	c.u8(RotationVersion)
	c.bytes(r.UserID[:])
	c.bytes(r.OldKey[:])
	c.bytes(k)
	c.u64(r.Seq)
	c.i64(r.Time.Unix())
	return c.b
}

// Verify checks one link on its own: it starts from old, and both
// signatures verify. It does not check the user ID or the sequence against
// the rest of a chain (VerifyChain does). Every failure wraps ErrBadChain;
// a signature failure also wraps ErrAuth.
func (r *Rotation) Verify(old *PublicKey) error {
	if old == nil || r.NewKey == nil {
		return fmt.Errorf("%w: %w: missing key", ErrBadChain, ErrMalformed)
	}
	if r.OldKey != old.ID() {
		return fmt.Errorf("%w: %w: rotation %d starts from key %s, not %s", ErrBadChain, ErrAuth, r.Seq, r.OldKey, old.ID())
	}
	if r.NewKey.ID() == r.OldKey {
		return fmt.Errorf("%w: rotation %d to the same key", ErrBadChain, r.Seq)
	}
	msg := r.canonical()
	if err := old.Verify(LabelRotateOld, msg, r.OldSignature); err != nil {
		return fmt.Errorf("%w: rotation %d, old key: %w", ErrBadChain, r.Seq, err)
	}
	if err := r.NewKey.Verify(LabelRotateNew, msg, r.NewSignature); err != nil {
		return fmt.Errorf("%w: rotation %d, new key: %w", ErrBadChain, r.Seq, err)
	}
	return nil
}

// VerifyChain checks that chain leads from user's genesis key to a current
// key, and returns that key (genesis itself for an empty chain): genesis
// must hash to user, every link must name user, start from the previous
// key's ID, carry both valid signatures and a sequence number higher than
// the previous link's, and never return to a key used before in the chain.
// Every failure wraps ErrBadChain; a bad signature or a genesis key that
// does not hash to user also wraps ErrAuth.
func VerifyChain(user ID, genesis *PublicKey, chain []*Rotation) (*PublicKey, error) {
	if genesis == nil {
		return nil, fmt.Errorf("%w: %w: no genesis key", ErrBadChain, ErrMalformed)
	}
	if genesis.ID() != user {
		return nil, fmt.Errorf("%w: %w: genesis key %s does not hash to user ID %s", ErrBadChain, ErrAuth, genesis.ID(), user)
	}
	if len(chain) > MaxChainLength {
		return nil, fmt.Errorf("%w: %w: chain of %d rotations (max %d)", ErrBadChain, ErrTooLarge, len(chain), MaxChainLength)
	}
	cur, seq := genesis, uint64(0)
	seen := make(map[ID]bool, len(chain)+1)
	seen[genesis.ID()] = true
	for i, r := range chain {
		if r == nil {
			return nil, fmt.Errorf("%w: %w: rotation %d is nil", ErrBadChain, ErrMalformed, i)
		}
		if r.UserID != user {
			return nil, fmt.Errorf("%w: %w: rotation %d is for user %s", ErrBadChain, ErrAuth, i, r.UserID)
		}
		if r.Seq <= seq {
			return nil, fmt.Errorf("%w: rotation %d has sequence %d after %d", ErrBadChain, i, r.Seq, seq)
		}
		if err := r.Verify(cur); err != nil {
			return nil, fmt.Errorf("link %d: %w", i, err)
		}
		if seen[r.NewKey.ID()] {
			return nil, fmt.Errorf("%w: rotation %d returns to key %s", ErrBadChain, i, r.NewKey.ID())
		}
		seen[r.NewKey.ID()] = true
		cur, seq = r.NewKey, r.Seq
	}
	return cur, nil
}

func (r *Rotation) toPB() *pb.Rotation {
	return &pb.Rotation{
		Version:      RotationVersion,
		UserId:       r.UserID[:],
		OldKey:       r.OldKey[:],
		NewKey:       r.NewKey.der,
		Seq:          r.Seq,
		Time:         r.Time.Unix(),
		OldSignature: r.OldSignature,
		NewSignature: r.NewSignature,
	}
}

func rotationFromPB(m *pb.Rotation) (*Rotation, error) {
	if m.GetVersion() != RotationVersion {
		return nil, fmt.Errorf("%w: rotation version %d", ErrMalformed, m.GetVersion())
	}
	if len(m.GetUserId()) != IDSize || len(m.GetOldKey()) != IDSize ||
		len(m.GetOldSignature()) < MinRSABits/8 || len(m.GetOldSignature()) > MaxRSABits/8 ||
		len(m.GetNewSignature()) < MinRSABits/8 || len(m.GetNewSignature()) > MaxRSABits/8 ||
		m.GetSeq() == 0 {
		return nil, fmt.Errorf("%w: rotation fields", ErrMalformed)
	}
	key, err := ParsePublicKey(m.GetNewKey())
	if err != nil {
		return nil, fmt.Errorf("rotation key: %w", err)
	}
	r := &Rotation{
		NewKey:       key,
		Seq:          m.GetSeq(),
		Time:         time.Unix(m.GetTime(), 0),
		OldSignature: append([]byte(nil), m.GetOldSignature()...),
		NewSignature: append([]byte(nil), m.GetNewSignature()...),
	}
	copy(r.UserID[:], m.GetUserId())
	copy(r.OldKey[:], m.GetOldKey())
	return r, nil
}

// Marshal encodes r (protobuf parley.v1.Rotation, canonical).
func (r *Rotation) Marshal() []byte { return marshal(r.toPB()) }

// ParseRotation decodes a rotation statement. It checks the form only
// (canonical encoding, field sizes, the new key's size); VerifyChain or
// Verify checks the signatures.
func ParseRotation(b []byte) (*Rotation, error) {
	if len(b) > maxRotationSize {
		return nil, fmt.Errorf("%w: rotation of %d bytes", ErrTooLarge, len(b))
	}
	var m pb.Rotation
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("rotation: %w", err)
	}
	return rotationFromPB(&m)
}

// ChainKeys returns the keys of a verified chain in order: genesis first,
// then each key it rotated to. A key pinned earlier that is among them
// leads to the chain's current key through signed rotations.
func ChainKeys(genesis *PublicKey, chain []*Rotation) []*PublicKey {
	ks := []*PublicKey{genesis}
	for _, r := range chain {
		ks = append(ks, r.NewKey)
	}
	return ks
}
