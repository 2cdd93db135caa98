package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// MaxGroupSkip is how far ahead of its chain a group message may be: a
// message that would skip more than MaxGroupSkip iterations is
// ErrGroupTooFarAhead with nothing derived. It is also how many keys of
// skipped iterations a chain keeps (the oldest go first, and their
// messages are ErrGroupReplay).
const MaxGroupSkip = 2000

// groupSkipped is the key of an iteration that has not arrived yet.
type groupSkipped struct {
	n  uint32
	mk key32
}

// SenderChain is one member's sender key for one epoch of a group: a
// chain key that moves forward with every message (as a session's
// sending chain: mk = HMAC-SHA256(ck, 0x01), ck' = HMAC-SHA256(ck, 0x02))
// and an Ed25519 key that signs every message. The member's own chain
// holds the signing key's private half (Own reports it); another member's
// chain, made from their SenderKeyDistribution, holds the public half and
// the keys of skipped iterations.
//
// A chain is a value: Seal and Open return the next state and leave the
// receiver as it was, so a caller stores the next state in the same
// transaction as the message and drops it on error.
type SenderChain struct {
	group     GroupID
	epoch     uint64
	sender    ID
	chain     ChainID
	signing   ed25519.PrivateKey // own chain only
	iteration uint32             // the next iteration to use or expect
	ck        key32              // the chain key at iteration
	skipped   []groupSkipped     // oldest first; never modified in place
}

// NewSenderChain makes self's sender key for state's epoch: a random
// chain key and a fresh Ed25519 key. self must be a member of state.
func NewSenderChain(state *GroupState, self ID) (*SenderChain, error) {
	if !state.IsMember(self) {
		return nil, fmt.Errorf("%w: %s in epoch %d", ErrGroupNotMember, self, state.Epoch)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sender key: %w", err)
	}
	c := &SenderChain{group: state.Group, epoch: state.Epoch, sender: self, chain: ChainID(pub), signing: priv}
	if _, err := rand.Read(c.ck[:]); err != nil {
		return nil, fmt.Errorf("sender key: %w", err)
	}
	return c, nil
}

// Group returns the chain's group.
func (c *SenderChain) Group() GroupID { return c.group }

// Epoch returns the chain's epoch.
func (c *SenderChain) Epoch() uint64 { return c.epoch }

// Sender returns the chain's owner.
func (c *SenderChain) Sender() ID { return c.sender }

// ID returns the chain's ID, its Ed25519 public key.
func (c *SenderChain) ID() ChainID { return c.chain }

// Iteration returns the next iteration the chain will use (own) or
// expects (another member's).
func (c *SenderChain) Iteration() uint32 { return c.iteration }

// Own reports whether this is the caller's own chain (it can Seal).
func (c *SenderChain) Own() bool { return c.signing != nil }

// Skipped returns how many keys of skipped iterations the chain keeps.
func (c *SenderChain) Skipped() int { return len(c.skipped) }

// FirstMissing returns the first iteration of another member's chain not
// received yet: the oldest skipped one whose key is kept, else the next
// expected. A member catching up asks for messages from there on.
func (c *SenderChain) FirstMissing() uint32 {
	if len(c.skipped) > 0 {
		return c.skipped[0].n
	}
	return c.iteration
}

// Distribution returns the sender key to hand to the other members of
// state (its epoch's state): the chain at its current iteration, so that
// they read what the owner sends from now on.
func (c *SenderChain) Distribution(state *GroupState) (*SenderKeyDistribution, error) {
	if !c.Own() {
		return nil, fmt.Errorf("%w: only the owner hands out a sender key", ErrGroupWrongSender)
	}
	if state.Group != c.group || state.Epoch != c.epoch {
		return nil, fmt.Errorf("%w: chain of epoch %d, state of epoch %d", ErrGroupEpoch, c.epoch, state.Epoch)
	}
	return &SenderKeyDistribution{
		Group: c.group, Epoch: c.epoch, StateHash: state.Hash(), Sender: c.sender,
		Chain: c.chain, Iteration: c.iteration, ChainKey: c.ck,
	}, nil
}

// Seal encrypts body as the chain's next message and signs it; it
// returns the message and the chain's next state.
func (c *SenderChain) Seal(kind Kind, body []byte, now time.Time) (*GroupMessage, *SenderChain, error) {
	if !c.Own() {
		return nil, nil, fmt.Errorf("%w: cannot post on another member's chain", ErrGroupWrongSender)
	}
	if kind == 0 {
		return nil, nil, fmt.Errorf("%w: group message of kind 0", ErrMalformed)
	}
	if c.iteration == math.MaxUint32 {
		return nil, nil, fmt.Errorf("%w: chain exhausted", ErrTooLarge)
	}
	var id MsgID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, nil, fmt.Errorf("message ID: %w", err)
	}
	next := *c
	var mk key32
	next.ck, mk = kdfChain(c.ck)
	next.iteration++
	h := GroupHeader{
		Version: GroupVersion, Kind: kind, Group: c.group, Epoch: c.epoch, Sender: c.sender,
		Chain: c.chain, Iteration: c.iteration, MsgID: id, Timestamp: now.UnixMilli(),
	}
	m, err := sealGroup(h, mk, c.signing, body)
	if err != nil {
		return nil, nil, err
	}
	return m, &next, nil
}

// ChainPublic is the public part of a sender chain: its group, epoch,
// owner and Ed25519 key. It verifies messages (what a topic validator
// needs) and holds no secret.
type ChainPublic struct {
	Group  GroupID
	Epoch  uint64
	Sender ID
	Chain  ChainID
}

// Public returns the chain's public part.
func (c *SenderChain) Public() ChainPublic {
	return ChainPublic{Group: c.group, Epoch: c.epoch, Sender: c.sender, Chain: c.chain}
}

// Verify checks what can be checked of m without the chain key, in this
// order: the group (ErrGroupWrongGroup), the epoch (ErrGroupEpoch), that
// m's sender owns this chain (ErrGroupWrongSender) and the chain's
// signature (ErrAuth). A topic validator runs it before forwarding.
func (p ChainPublic) Verify(m *GroupMessage) error {
	if m.Group != p.Group {
		return fmt.Errorf("%w: message of group %s on a chain of %s", ErrGroupWrongGroup, m.Group, p.Group)
	}
	if m.Epoch != p.Epoch {
		return fmt.Errorf("%w: message of epoch %d on a chain of epoch %d", ErrGroupEpoch, m.Epoch, p.Epoch)
	}
	if m.Sender != p.Sender || m.Chain != p.Chain {
		return fmt.Errorf("%w: message of %s on a chain of %s", ErrGroupWrongSender, m.Sender, p.Sender)
	}
	if !ed25519.Verify(ed25519.PublicKey(p.Chain[:]), m.signedBytes(m.Canonical()), m.Signature) {
		return fmt.Errorf("%w: group message signature", ErrAuth)
	}
	return nil
}

// Verify is c.Public().Verify(m).
func (c *SenderChain) Verify(m *GroupMessage) error { return c.Public().Verify(m) }

// VerifiedGroupMessage is a group message that ChainPublic.Check has
// verified: only this package makes one, from its own copy of the
// message taken when the signature held, so holding one proves that
// these exact fields verified with the chain it names. A topic validator
// makes one and the subscriber opens it with OpenVerified, which then
// needs no second Ed25519 verification.
type VerifiedGroupMessage struct {
	m   GroupMessage // private copy: no caller can change it after the check
	pub ChainPublic  // the chain whose key verified m
}

// Check is Verify that, when m verifies, returns its proof: a private
// copy of m with the chain that verified it.
func (p ChainPublic) Check(m *GroupMessage) (*VerifiedGroupMessage, error) {
	v := &VerifiedGroupMessage{m: *m, pub: p}
	v.m.Ciphertext = slices.Clone(m.Ciphertext)
	v.m.Signature = slices.Clone(m.Signature)
	if err := p.Verify(&v.m); err != nil {
		return nil, err
	}
	return v, nil
}

// Header returns the verified message's header.
func (v *VerifiedGroupMessage) Header() GroupHeader { return v.m.GroupHeader }

// OpenVerified is Open for a message verified by Check: when c is the
// chain that verified it (same group, epoch, sender and chain key) the
// signature is not checked again; for any other chain it is Open, which
// verifies in full. Derivation, replay and decryption are as in Open.
func (c *SenderChain) OpenVerified(v *VerifiedGroupMessage) (*GroupPlain, *SenderChain, error) {
	if v.pub != c.Public() {
		return c.Open(&v.m)
	}
	return c.open(&v.m)
}

// Open verifies m (Verify), derives its key (ErrGroupReplay for an
// iteration used or dropped, ErrGroupTooFarAhead beyond MaxGroupSkip) and
// decrypts it (ErrAuth). It returns the message and the chain's next
// state; on error the chain is unchanged and nothing is derived.
func (c *SenderChain) Open(m *GroupMessage) (*GroupPlain, *SenderChain, error) {
	if err := c.Verify(m); err != nil {
		return nil, nil, err
	}
	return c.open(m)
}

// open is Open after the signature: derive, decrypt.
func (c *SenderChain) open(m *GroupMessage) (*GroupPlain, *SenderChain, error) {
	next, mk, err := c.key(m.Iteration)
	if err != nil {
		return nil, nil, err
	}
	body, err := openGroup(m, mk)
	if err != nil {
		return nil, nil, err
	}
	return &GroupPlain{GroupHeader: m.GroupHeader, Body: body}, next, nil
}

// key returns the next state and the message key of iteration n.
func (c *SenderChain) key(n uint32) (*SenderChain, key32, error) {
	next := *c
	var mk key32
	if n < c.iteration {
		i := slices.IndexFunc(c.skipped, func(s groupSkipped) bool { return s.n == n })
		if i < 0 {
			return nil, mk, fmt.Errorf("%w: iteration %d", ErrGroupReplay, n)
		}
		next.skipped = slices.Delete(slices.Clone(c.skipped), i, i+1)
		return &next, c.skipped[i].mk, nil
	}
	if n-c.iteration > MaxGroupSkip {
		return nil, mk, fmt.Errorf("%w: iteration %d, expected %d", ErrGroupTooFarAhead, n, c.iteration)
	}
	if n == math.MaxUint32 {
		return nil, mk, fmt.Errorf("%w: chain exhausted", ErrTooLarge)
	}
	skipped := slices.Clone(c.skipped)
	ck := c.ck
	for i := c.iteration; i < n; i++ {
		var smk key32
		ck, smk = kdfChain(ck)
		skipped = append(skipped, groupSkipped{n: i, mk: smk})
	}
	if over := len(skipped) - MaxGroupSkip; over > 0 {
		skipped = slices.Delete(skipped, 0, over)
	}
	next.ck, mk = kdfChain(ck)
	next.iteration = n + 1
	next.skipped = skipped
	return &next, mk, nil
}

// SenderKeyDistribution is a sender key handed to another member inside
// a 1:1 session message of kind KindSenderKey.
type SenderKeyDistribution struct {
	Group     GroupID
	Epoch     uint64
	StateHash [32]byte // hash of the epoch's group state
	Sender    ID       // the chain's owner
	Chain     ChainID
	Iteration uint32
	ChainKey  [32]byte
}

// Marshal encodes d (protobuf, canonical).
func (d *SenderKeyDistribution) Marshal() []byte {
	return marshal(&pb.SenderKeyDistribution{
		Version: GroupVersion, GroupId: d.Group[:], Epoch: d.Epoch, StateHash: d.StateHash[:],
		Sender: d.Sender[:], Chain: d.Chain[:], Iteration: d.Iteration, ChainKey: d.ChainKey[:],
	})
}

// ParseSenderKeyDistribution decodes a sender key and checks its form.
func ParseSenderKeyDistribution(b []byte) (*SenderKeyDistribution, error) {
	var p pb.SenderKeyDistribution
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("sender key: %w", err)
	}
	if p.GetVersion() != GroupVersion || len(p.GetGroupId()) != GroupIDSize || p.GetEpoch() == 0 ||
		len(p.GetStateHash()) != 32 || len(p.GetSender()) != IDSize || len(p.GetChain()) != ed25519.PublicKeySize ||
		len(p.GetChainKey()) != 32 {
		return nil, fmt.Errorf("%w: sender key fields", ErrMalformed)
	}
	return &SenderKeyDistribution{
		Group: GroupID(p.GetGroupId()), Epoch: p.GetEpoch(), StateHash: [32]byte(p.GetStateHash()),
		Sender: ID(p.GetSender()), Chain: ChainID(p.GetChain()), Iteration: p.GetIteration(),
		ChainKey: [32]byte(p.GetChainKey()),
	}, nil
}

// AcceptSenderKey makes the receiving chain of d, a sender key that
// arrived inside a 1:1 session with from (the session's authenticated
// peer), for a member holding state. It checks, in order: the group
// (ErrGroupWrongGroup), the epoch (ErrGroupEpoch), the state
// (ErrGroupPrevious: a sender key for another state of the epoch), that
// from owns the key (ErrGroupWrongSender: Alice's key inside Mallory's
// session), and that from is a member (ErrGroupNotMember).
func AcceptSenderKey(state *GroupState, d *SenderKeyDistribution, from ID) (*SenderChain, error) {
	if d.Group != state.Group {
		return nil, fmt.Errorf("%w: sender key of group %s for group %s", ErrGroupWrongGroup, d.Group, state.Group)
	}
	if d.Epoch != state.Epoch {
		return nil, fmt.Errorf("%w: sender key of epoch %d in epoch %d", ErrGroupEpoch, d.Epoch, state.Epoch)
	}
	if h := state.Hash(); subtle.ConstantTimeCompare(h[:], d.StateHash[:]) != 1 {
		return nil, fmt.Errorf("%w: sender key for another state of epoch %d", ErrGroupPrevious, d.Epoch)
	}
	if d.Sender != from {
		return nil, fmt.Errorf("%w: %s's sender key in %s's session", ErrGroupWrongSender, d.Sender, from)
	}
	if !state.IsMember(from) {
		return nil, fmt.Errorf("%w: %s in epoch %d", ErrGroupNotMember, from, state.Epoch)
	}
	return &SenderChain{group: d.Group, epoch: d.Epoch, sender: d.Sender, chain: d.Chain, iteration: d.Iteration, ck: d.ChainKey}, nil
}

// Marshal encodes the chain's state (pb.SenderChainState), private keys
// included; the caller seals it before storing.
func (c *SenderChain) Marshal() []byte {
	p := &pb.SenderChainState{
		Version: GroupVersion, GroupId: c.group[:], Epoch: c.epoch, Sender: c.sender[:], Chain: c.chain[:],
		SigningKey: c.signing, Iteration: c.iteration, ChainKey: c.ck[:],
	}
	for _, s := range c.skipped {
		p.Skipped = append(p.Skipped, &pb.GroupSkippedKey{Iteration: s.n, Key: s.mk[:]})
	}
	return marshal(p)
}

// ParseSenderChain decodes a chain's state written by Marshal.
func ParseSenderChain(b []byte) (*SenderChain, error) {
	var p pb.SenderChainState
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("sender chain: %w", err)
	}
	if p.GetVersion() != GroupVersion || len(p.GetGroupId()) != GroupIDSize || p.GetEpoch() == 0 ||
		len(p.GetSender()) != IDSize || len(p.GetChain()) != ed25519.PublicKeySize || len(p.GetChainKey()) != 32 ||
		(len(p.GetSigningKey()) != 0 && len(p.GetSigningKey()) != ed25519.PrivateKeySize) ||
		len(p.GetSkipped()) > MaxGroupSkip || (len(p.GetSigningKey()) != 0 && len(p.GetSkipped()) != 0) {
		return nil, fmt.Errorf("%w: sender chain fields", ErrMalformed)
	}
	c := &SenderChain{
		group: GroupID(p.GetGroupId()), epoch: p.GetEpoch(), sender: ID(p.GetSender()), chain: ChainID(p.GetChain()),
		iteration: p.GetIteration(), ck: key32(p.GetChainKey()),
	}
	if sk := p.GetSigningKey(); len(sk) != 0 {
		priv := ed25519.PrivateKey(slices.Clone(sk))
		if !bytes.Equal(priv.Public().(ed25519.PublicKey), c.chain[:]) {
			return nil, fmt.Errorf("%w: sender chain signing key does not match its ID", ErrMalformed)
		}
		c.signing = priv
	}
	for _, s := range p.GetSkipped() {
		if len(s.GetKey()) != 32 || s.GetIteration() >= c.iteration {
			return nil, fmt.Errorf("%w: sender chain skipped key", ErrMalformed)
		}
		c.skipped = append(c.skipped, groupSkipped{n: s.GetIteration(), mk: key32(s.GetKey())})
	}
	return c, nil
}
