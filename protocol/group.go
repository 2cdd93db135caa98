package protocol

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/protocol/pb"
)

// Group sentinel errors: each refusal of a group state, sender key or
// group message has its own, so callers (and tests) can tell them apart.
// Bad signatures and failed decryption are ErrAuth, bad encodings
// ErrMalformed and ErrTooLarge, as everywhere in the package.
var (
	// ErrGroupWrongGroup is a state, sender key or message of another group.
	ErrGroupWrongGroup = errors.New("protocol: wrong group")
	// ErrGroupEpoch is a state change that is not for the next epoch (an
	// old one, the same one, or one that skips epochs), or a sender key or
	// message of an epoch other than the one expected.
	ErrGroupEpoch = errors.New("protocol: wrong group epoch")
	// ErrGroupPrevious is a state change whose previous hash is not the
	// hash of the current state (a fork), or a sender key for another
	// state of its epoch.
	ErrGroupPrevious = errors.New("protocol: group state does not follow the current one")
	// ErrGroupNotAdmin is a state signed by someone who is not an admin of
	// the current state (of the state itself, for a new group).
	ErrGroupNotAdmin = errors.New("protocol: group state not signed by an admin")
	// ErrGroupNotMember is a sender key or message from someone who is not
	// a member of the group's state.
	ErrGroupNotMember = errors.New("protocol: not a member of the group")
	// ErrGroupWrongSender is a sender key that arrived in the session of
	// someone other than its owner, or a message whose sender is not the
	// owner of the chain it names.
	ErrGroupWrongSender = errors.New("protocol: sender key or message of another sender")
	// ErrGroupReplay is a message whose key was used already (the same
	// chain and iteration arrived before) or was dropped.
	ErrGroupReplay = errors.New("protocol: group message key used or gone")
	// ErrGroupTooFarAhead is a message that would skip more than
	// MaxGroupSkip iterations of its chain; nothing is derived.
	ErrGroupTooFarAhead = errors.New("protocol: group message too far ahead")
)

// Group limits and constants.
const (
	// GroupVersion is the group format version this package writes and reads.
	GroupVersion = 1
	// GroupIDSize is the size of a group ID.
	GroupIDSize = 32
	// MaxGroupMembers caps a group's roster.
	MaxGroupMembers = 1000
	// MaxGroupName caps a group's name, in bytes of UTF-8.
	MaxGroupName = 128
	// MaxGroupStateSize caps an encoded group state: MaxGroupMembers
	// members, a name and an RSA-8192 signature fit.
	MaxGroupStateSize = 48 << 10
)

// Domain labels of groups.
const (
	LabelGroupState = "parley/v1/group-state" // RSA-PSS signature of a group state
	LabelGroupHash  = "parley/v1/group-hash"  // a state's hash
	LabelGroupTopic = "parley/v1/group-topic" // a topic's name
	LabelGroupMsg   = "parley/v1/group-msg"   // AEAD associated data
	LabelGroupSig   = "parley/v1/group-sig"   // Ed25519 signature of a group message
	LabelGroupKey   = "parley/v1/group-key"   // message key expansion
)

// Session message kinds of groups: 1:1 session messages whose bodies
// carry a group state or a sender key.
const (
	// KindGroupState carries a GroupState (its Marshal).
	KindGroupState Kind = 7
	// KindSenderKey carries a SenderKeyDistribution (its Marshal).
	KindSenderKey Kind = 8
	// KindGroupLeave asks a group's admin to remove the sender: its body
	// is a GroupLeave (MarshalGroupLeave). 9 is KindFriendRemoved.
	KindGroupLeave Kind = 11
)

// groupLeaveSize is the size of an encoded GroupLeave.
const groupLeaveSize = GroupIDSize + 8

// GroupLeave is a member's request to be removed from the epoch of a
// group it names; its sender is the envelope's signer.
type GroupLeave struct {
	Group GroupID
	Epoch uint64
}

// MarshalGroupLeave encodes l as group_id (32) ‖ u64 epoch.
func MarshalGroupLeave(l GroupLeave) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), l.Group[:]...), l.Epoch)
}

// ParseGroupLeave decodes a GroupLeave (ErrMalformed for any other size).
func ParseGroupLeave(b []byte) (GroupLeave, error) {
	if len(b) != groupLeaveSize {
		return GroupLeave{}, fmt.Errorf("%w: group leave of %d bytes", ErrMalformed, len(b))
	}
	var l GroupLeave
	copy(l.Group[:], b)
	l.Epoch = binary.BigEndian.Uint64(b[GroupIDSize:])
	return l, nil
}

// GroupID names a group: 32 random bytes chosen by its creator.
type GroupID [GroupIDSize]byte

// NewGroupID returns a random group ID.
func NewGroupID() (GroupID, error) {
	var g GroupID
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("group ID: %w", err)
	}
	return g, nil
}

func (g GroupID) String() string { return hex.EncodeToString(g[:]) }

// IsZero reports whether g is unset.
func (g GroupID) IsZero() bool { return g == GroupID{} }

// Role is a member's role in a group.
type Role uint8

const (
	// RoleAdmin may change the group's state (add and remove members,
	// rename, name admins).
	RoleAdmin Role = 1
	// RoleMember reads and posts.
	RoleMember Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleAdmin:
		return "admin"
	case RoleMember:
		return "member"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// GroupMember is a member of a group and their role.
type GroupMember struct {
	User ID
	Role Role
}

// GroupState is a group's roster at one epoch, signed by an admin.
type GroupState struct {
	Version   uint8
	Group     GroupID
	Name      string
	Epoch     uint64
	Members   []GroupMember // ordered by user ID
	Previous  []byte        // hash of the previous state; nil at epoch 1
	Issued    int64         // unix milliseconds
	Signer    ID            // the signing admin's user ID
	SignerKey ID            // the signing admin's RSA key ID
	Signature []byte

	raw []byte // the encoding it was parsed from or signed as
}

// Role returns user's role in s, and whether user is a member at all.
func (s *GroupState) Role(user ID) (Role, bool) {
	i, ok := slices.BinarySearchFunc(s.Members, user, func(m GroupMember, u ID) int { return bytes.Compare(m.User[:], u[:]) })
	if !ok {
		return 0, false
	}
	return s.Members[i].Role, true
}

// IsMember reports whether user is in s.
func (s *GroupState) IsMember(user ID) bool { _, ok := s.Role(user); return ok }

// IsAdmin reports whether user is an admin of s.
func (s *GroupState) IsAdmin(user ID) bool { r, ok := s.Role(user); return ok && r == RoleAdmin }

// Canonical returns what the admin signs:
//
//	u8 version ‖ group_id (32) ‖ bytes(name) ‖ u64 epoch ‖
//	u32 count ‖ (user_id (32) ‖ u8 role)* ‖ bytes(previous) ‖
//	i64 issued_ms ‖ signer (32) ‖ signer_key (32)
func (s *GroupState) Canonical() []byte {
	c := newCanon(1 + GroupIDSize + 4 + len(s.Name) + 8 + 4 + len(s.Members)*(IDSize+1) + 4 + len(s.Previous) + 8 + 2*IDSize)
	c.u8(s.Version)
	c.raw(s.Group[:])
	c.str(s.Name)
	c.u64(s.Epoch)
	c.u32(uint32(len(s.Members)))
	for _, m := range s.Members {
		c.raw(m.User[:])
		c.u8(uint8(m.Role))
	}
	c.bytes(s.Previous)
	c.i64(s.Issued)
	c.raw(s.Signer[:])
	c.raw(s.SignerKey[:])
	return c.b
}

// Marshal encodes s (protobuf, canonical): the encoding it was parsed
// from or signed as, which its signature and Hash cover (a state's fields
// are not to be changed after that).
func (s *GroupState) Marshal() []byte {
	if s.raw != nil {
		return slices.Clone(s.raw)
	}
	return s.marshal()
}

func (s *GroupState) marshal() []byte {
	p := &pb.GroupState{
		Version:   uint32(s.Version),
		GroupId:   s.Group[:],
		Name:      s.Name,
		Epoch:     s.Epoch,
		Previous:  s.Previous,
		IssuedMs:  s.Issued,
		Signer:    s.Signer[:],
		SignerKey: s.SignerKey[:],
		Signature: s.Signature,
	}
	for _, m := range s.Members {
		p.Members = append(p.Members, &pb.GroupMember{UserId: m.User[:], Role: uint32(m.Role)})
	}
	return marshal(p)
}

// Hash returns the state's hash, the next state's Previous:
// SHA-256("parley/v1/group-hash" ‖ the state's encoding, signature
// included).
func (s *GroupState) Hash() [32]byte {
	enc := s.raw // hashed in place: a state can be tens of KB
	if enc == nil {
		enc = s.marshal()
	}
	return labelledHash(LabelGroupHash, enc)
}

// NewGroupState makes and signs the first state (epoch 1) of a new group
// with a random ID. The signer is an admin; members (which may include
// the signer; their order does not matter) are the others, each with a
// role.
func NewGroupState(signer *PrivateKey, self ID, name string, members []GroupMember, now time.Time) (*GroupState, error) {
	g, err := NewGroupID()
	if err != nil {
		return nil, err
	}
	all := append([]GroupMember{{User: self, Role: RoleAdmin}}, members...)
	return signGroupState(signer, self, &GroupState{Group: g, Name: name, Epoch: 1, Members: all}, now)
}

// Next makes and signs the state that follows s: epoch + 1, previous =
// s.Hash(), with the given name and members. It checks what Accept will
// check: the signer must be an admin of s.
func (s *GroupState) Next(signer *PrivateKey, self ID, name string, members []GroupMember, now time.Time) (*GroupState, error) {
	if !s.IsAdmin(self) {
		return nil, fmt.Errorf("%w: %s is not an admin of epoch %d", ErrGroupNotAdmin, self, s.Epoch)
	}
	h := s.Hash()
	next := &GroupState{Group: s.Group, Name: name, Epoch: s.Epoch + 1, Members: slices.Clone(members), Previous: h[:]}
	return signGroupState(signer, self, next, now)
}

// signGroupState normalises s (members sorted, checked), fills the signer
// fields and signs it.
func signGroupState(signer *PrivateKey, self ID, s *GroupState, now time.Time) (*GroupState, error) {
	s.Version = GroupVersion
	s.Issued = now.UnixMilli()
	s.Signer, s.SignerKey = self, signer.ID()
	s.Members = sortMembers(s.Members)
	if err := s.checkForm(); err != nil {
		return nil, err
	}
	if s.Epoch == 1 && !s.IsAdmin(self) {
		return nil, fmt.Errorf("%w: the creator must be an admin", ErrGroupNotAdmin)
	}
	sig, err := signer.Sign(LabelGroupState, s.Canonical())
	if err != nil {
		return nil, fmt.Errorf("signing group state: %w", err)
	}
	s.Signature = sig
	s.raw = s.marshal()
	if len(s.raw) > MaxGroupStateSize {
		return nil, fmt.Errorf("%w: group state of %d bytes (max %d)", ErrTooLarge, len(s.raw), MaxGroupStateSize)
	}
	return s, nil
}

// sortMembers orders members by user ID; a user listed twice keeps the
// highest role (admin).
func sortMembers(in []GroupMember) []GroupMember {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b GroupMember) int {
		if c := bytes.Compare(a.User[:], b.User[:]); c != 0 {
			return c
		}
		return int(a.Role) - int(b.Role) // admin (1) first
	})
	return slices.CompactFunc(out, func(a, b GroupMember) bool { return a.User == b.User })
}

// checkForm checks what a parsed or new state must satisfy, before any
// signature: version, name, members (1 to MaxGroupMembers, strictly
// ordered, known roles, at least one admin), epoch and previous hash.
func (s *GroupState) checkForm() error {
	bad := func(what string) error { return fmt.Errorf("%w: group state %s", ErrMalformed, what) }
	switch {
	case s.Version != GroupVersion:
		return bad(fmt.Sprintf("version %d", s.Version))
	case s.Group.IsZero():
		return bad("zero group ID")
	case len(s.Name) > MaxGroupName || !utf8.ValidString(s.Name):
		return bad("name")
	case s.Epoch == 0:
		return bad("epoch 0")
	case (s.Epoch == 1) != (len(s.Previous) == 0) || (len(s.Previous) != 0 && len(s.Previous) != sha256.Size):
		return bad("previous hash")
	case len(s.Members) == 0:
		return bad("without members")
	case len(s.Members) > MaxGroupMembers:
		return fmt.Errorf("%w: group of %d members (max %d)", ErrTooLarge, len(s.Members), MaxGroupMembers)
	}
	admins := 0
	for i, m := range s.Members {
		if m.User.IsZero() || (i > 0 && bytes.Compare(s.Members[i-1].User[:], m.User[:]) >= 0) {
			return bad("members not strictly ordered")
		}
		switch m.Role {
		case RoleAdmin:
			admins++
		case RoleMember:
		default:
			return bad(fmt.Sprintf("role %d", m.Role))
		}
	}
	if admins == 0 {
		return bad("without an admin")
	}
	return nil
}

// ParseGroupState decodes a group state and checks its form; it verifies
// nothing (VerifyGroupGenesis and Accept do).
func ParseGroupState(b []byte) (*GroupState, error) {
	if len(b) > MaxGroupStateSize {
		return nil, fmt.Errorf("%w: group state of %d bytes (max %d)", ErrTooLarge, len(b), MaxGroupStateSize)
	}
	var p pb.GroupState
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("group state: %w", err)
	}
	if p.GetVersion() > 0xff || len(p.GetGroupId()) != GroupIDSize || len(p.GetSigner()) != IDSize ||
		len(p.GetSignerKey()) != IDSize || len(p.GetSignature()) < MinRSABits/8 || len(p.GetSignature()) > MaxRSABits/8 {
		return nil, fmt.Errorf("%w: group state field length", ErrMalformed)
	}
	s := &GroupState{
		Version:   uint8(p.GetVersion()),
		Group:     GroupID(p.GetGroupId()),
		Name:      p.GetName(),
		Epoch:     p.GetEpoch(),
		Previous:  p.GetPrevious(),
		Issued:    p.GetIssuedMs(),
		Signer:    ID(p.GetSigner()),
		SignerKey: ID(p.GetSignerKey()),
		Signature: p.GetSignature(),
		raw:       slices.Clone(b),
	}
	if len(p.GetMembers()) > MaxGroupMembers {
		return nil, fmt.Errorf("%w: group of %d members (max %d)", ErrTooLarge, len(p.GetMembers()), MaxGroupMembers)
	}
	for _, m := range p.GetMembers() {
		if len(m.GetUserId()) != IDSize || m.GetRole() > 0xff {
			return nil, fmt.Errorf("%w: group member", ErrMalformed)
		}
		s.Members = append(s.Members, GroupMember{User: ID(m.GetUserId()), Role: Role(m.GetRole())})
	}
	if err := s.checkForm(); err != nil {
		return nil, err
	}
	return s, nil
}

// verifySignature checks that key is the signer's key named in s and that
// it signed s.
func (s *GroupState) verifySignature(key *PublicKey) error {
	if key == nil || key.ID() != s.SignerKey {
		return fmt.Errorf("%w: no key %s for the group state's signer %s", ErrUnknownSender, s.SignerKey, s.Signer)
	}
	if err := key.Verify(LabelGroupState, s.Canonical(), s.Signature); err != nil {
		return fmt.Errorf("group state: %w", err)
	}
	return nil
}

// VerifyGroupGenesis checks the first state of a group, as a member
// invited to it does: epoch 1 without a previous hash, signed by key,
// which must be the key of s.Signer (the caller looks it up by s.Signer
// and s.SignerKey), an admin of s.
func VerifyGroupGenesis(s *GroupState, key *PublicKey) error {
	if s.Epoch != 1 {
		return fmt.Errorf("%w: a new group starts at epoch 1, not %d", ErrGroupEpoch, s.Epoch)
	}
	return VerifyGroupState(s, key)
}

// VerifyGroupState checks a state on its own, as someone added to a group
// at a later epoch does who has none of the states before it: signed by
// key, which must be the key of s.Signer (ErrUnknownSender, ErrAuth), an
// admin of s itself (ErrGroupNotAdmin). It proves that an admin of the
// state made it, not that the state follows the group's history; members
// who hold the previous state use Accept.
func VerifyGroupState(s *GroupState, key *PublicKey) error {
	if !s.IsAdmin(s.Signer) {
		return fmt.Errorf("%w: %s is not an admin of the state it signed", ErrGroupNotAdmin, s.Signer)
	}
	return s.verifySignature(key)
}

// Accept checks that next may replace s, in this order: same group
// (ErrGroupWrongGroup), the next epoch exactly (ErrGroupEpoch), previous
// hash = s.Hash() (ErrGroupPrevious), signed by an admin of s
// (ErrGroupNotAdmin), whose key is key (ErrUnknownSender) and whose
// signature verifies (ErrAuth). key is the signer's RSA key, which the
// caller looks up by next.Signer and next.SignerKey.
func (s *GroupState) Accept(next *GroupState, key *PublicKey) error {
	if next.Group != s.Group {
		return fmt.Errorf("%w: state of group %s for group %s", ErrGroupWrongGroup, next.Group, s.Group)
	}
	if next.Epoch != s.Epoch+1 {
		return fmt.Errorf("%w: state of epoch %d after epoch %d", ErrGroupEpoch, next.Epoch, s.Epoch)
	}
	if h := s.Hash(); !bytes.Equal(next.Previous, h[:]) {
		return fmt.Errorf("%w: epoch %d", ErrGroupPrevious, next.Epoch)
	}
	if !s.IsAdmin(next.Signer) {
		return fmt.Errorf("%w: %s is not an admin of epoch %d", ErrGroupNotAdmin, next.Signer, s.Epoch)
	}
	return next.verifySignature(key)
}
