package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// Relay tickets: what a group relay (package node/grouprelay) is told
// about one topic of a group, so that it carries and keeps only members'
// traffic without learning who the members are. A ticket lists the chain
// signing keys of an epoch (public keys only; no user ID, no name, no
// group ID), says which are admins', and proves that its maker knows the
// epoch's group state: it carries the topic proof P, of which the topic's
// name is a hash. P hashes the state, which travels only inside 1:1
// sessions, so neither the topic name nor the group messages (whose
// headers show the group ID) let an outsider make a ticket for a group's
// topic, nor predict the topic of a later epoch.
//
// A relay takes a ticket (see CheckRelayTicket for the order of checks):
//   - as the first for its topic when an admin key of its own signed it;
//   - as the next epoch's when it names the hash of a ticket the relay
//     holds (Previous) and an admin key of that ticket signed it: the
//     lineage, which wins over a first ticket;
//   - as an update of the ticket it holds for the topic (more keys, as
//     members' sender keys reach the admin) when it is issued later and
//     signed by an admin key of the held ticket or the held ticket's
//     signer.

// Relay ticket errors (with ErrAuth for a bad signature, ErrGroupNotAdmin
// for a signer without authority, ErrGroupEpoch for a ticket of the wrong
// epoch, ErrMalformed and ErrTooLarge for bad encodings).
var (
	// ErrTicketLineage is a ticket that names a previous ticket the relay
	// cannot check it against (one it does not hold, or whose topic is
	// not the one it follows), signed by a key it cannot place.
	ErrTicketLineage = errors.New("protocol: relay ticket does not follow the relay's tickets")
	// ErrTicketStale is a ticket issued no later than the one the relay
	// holds for its topic, or for a topic the group has moved on from.
	ErrTicketStale = errors.New("protocol: relay ticket older than the relay's")
)

// Relay ticket labels and limits.
const (
	LabelTopicProof  = "parley/v1/topic-proof"  // a topic's proof P
	LabelRelayTicket = "parley/v1/relay-ticket" // Ed25519 signature of a relay ticket
	LabelTicketHash  = "parley/v1/ticket-hash"  // a relay ticket's hash
	// TopicPrefix starts every group topic's name.
	TopicPrefix = "/parley/group/2/"
	// MaxRelayTicketSize caps an encoded ticket: MaxGroupMembers keys fit.
	MaxRelayTicketSize = 48 << 10
)

// TopicProof is P, the secret of a group's epoch that names its topic.
type TopicProof [32]byte

// TopicProof returns the state's topic proof:
// SHA-256("parley/v1/topic-proof" ‖ group_id ‖ u64 epoch ‖ state hash).
func (s *GroupState) TopicProof() TopicProof {
	h := s.Hash()
	c := newCanon(len(LabelTopicProof) + GroupIDSize + 8 + len(h))
	c.raw([]byte(LabelTopicProof))
	c.raw(s.Group[:])
	c.u64(s.Epoch)
	c.raw(h[:])
	return sha256.Sum256(c.b)
}

// Topic returns the gossipsub topic that p names: "/parley/group/2/" ‖
// lower-case hex of SHA-256("parley/v1/group-topic" ‖ P).
func (p TopicProof) Topic() string {
	h := sha256.Sum256(append([]byte(LabelGroupTopic), p[:]...))
	return TopicPrefix + hex.EncodeToString(h[:])
}

// Topic returns the gossipsub topic of a group's epoch, s.TopicProof's.
// The name shows neither the group's ID nor its name, and only members
// of the epoch (who hold its state) can compute it.
func Topic(s *GroupState) string { return s.TopicProof().Topic() }

// RelayKey is one chain signing key of a relay ticket.
type RelayKey struct {
	Chain ChainID
	Admin bool
}

// RelayTicket is a signed list of the chain keys that may post on one
// topic of a group.
type RelayTicket struct {
	Version   uint8
	Proof     TopicProof
	Epoch     uint64
	Members   uint32     // the epoch's members: Keys lists all of them once it lists this many
	Previous  []byte     // hash of the ticket of Epoch-1 it follows; nil for none
	Keys      []RelayKey // ordered by chain
	Issued    int64      // unix milliseconds
	Signer    ChainID
	Signature []byte

	raw []byte
}

// Topic returns the ticket's topic.
func (t *RelayTicket) Topic() string { return t.Proof.Topic() }

// Key returns the ticket's entry for chain.
func (t *RelayTicket) Key(chain ChainID) (RelayKey, bool) {
	i, ok := slices.BinarySearchFunc(t.Keys, chain, func(k RelayKey, c ChainID) int { return bytes.Compare(k.Chain[:], c[:]) })
	if !ok {
		return RelayKey{}, false
	}
	return t.Keys[i], true
}

// Complete reports whether t lists a key for every member of its epoch,
// so that a chain it does not list is no member's (and not one whose key
// has not reached the admin yet).
func (t *RelayTicket) Complete() bool { return len(t.Keys) >= int(t.Members) }

// IsAdmin reports whether chain is an admin key of t.
func (t *RelayTicket) IsAdmin(chain ChainID) bool { k, ok := t.Key(chain); return ok && k.Admin }

// Canonical returns what the signer signs (after "parley/v1/relay-ticket"):
//
//	u8 version ‖ proof (32) ‖ u64 epoch ‖ u32 members ‖ bytes(previous) ‖
//	u32 count ‖ (chain (32) ‖ u8 admin)* ‖ i64 issued_ms ‖ signer (32)
func (t *RelayTicket) Canonical() []byte {
	c := newCanon(1 + 32 + 8 + 4 + 4 + len(t.Previous) + 4 + len(t.Keys)*33 + 8 + 32)
	c.u8(t.Version)
	c.raw(t.Proof[:])
	c.u64(t.Epoch)
	c.u32(t.Members)
	c.bytes(t.Previous)
	c.u32(uint32(len(t.Keys)))
	for _, k := range t.Keys {
		c.raw(k.Chain[:])
		if k.Admin {
			c.u8(1)
		} else {
			c.u8(0)
		}
	}
	c.i64(t.Issued)
	c.raw(t.Signer[:])
	return c.b
}

// Marshal encodes t (protobuf, canonical): the encoding it was parsed
// from or signed as.
func (t *RelayTicket) Marshal() []byte {
	if t.raw != nil {
		return slices.Clone(t.raw)
	}
	p := &pb.RelayTicket{
		Version: uint32(t.Version), TopicProof: t.Proof[:], Epoch: t.Epoch, Members: t.Members, Previous: t.Previous,
		IssuedMs: t.Issued, Signer: t.Signer[:], Signature: t.Signature,
	}
	for _, k := range t.Keys {
		p.Keys = append(p.Keys, &pb.RelayTicketKey{Chain: k.Chain[:], Admin: k.Admin})
	}
	return marshal(p)
}

// Hash returns SHA-256("parley/v1/ticket-hash" ‖ the ticket's encoding):
// the next epoch's ticket names it as Previous.
func (t *RelayTicket) Hash() [32]byte {
	enc := t.raw // hashed in place: a state can be tens of KB
	if enc == nil {
		enc = t.Marshal()
	}
	return labelledHash(LabelTicketHash, enc)
}

// NewRelayTicket makes and signs the ticket of state's epoch with keys
// (the chains of the epoch the issuer knows; signer's own chain is added
// as an admin's). signer is the issuer's own chain: of state's epoch, or,
// to follow prev (the issuer's ticket of the epoch before, nil for none),
// of prev's epoch and an admin key of prev. The issuer must be an admin
// of state (ErrGroupNotAdmin).
func NewRelayTicket(signer, current *SenderChain, state *GroupState, keys []RelayKey, prev *RelayTicket, now time.Time) (*RelayTicket, error) {
	if !signer.Own() || !current.Own() {
		return nil, fmt.Errorf("%w: a relay ticket is signed with one's own chain", ErrGroupWrongSender)
	}
	if !state.IsAdmin(current.Sender()) {
		return nil, fmt.Errorf("%w: %s is not an admin of epoch %d", ErrGroupNotAdmin, current.Sender(), state.Epoch)
	}
	if current.Group() != state.Group || current.Epoch() != state.Epoch {
		return nil, fmt.Errorf("%w: chain of epoch %d, state of epoch %d", ErrGroupEpoch, current.Epoch(), state.Epoch)
	}
	t := &RelayTicket{
		Version: GroupVersion, Proof: state.TopicProof(), Epoch: state.Epoch, Members: uint32(len(state.Members)),
		Issued: now.UnixMilli(), Signer: signer.ID(),
	}
	if prev != nil {
		h := prev.Hash()
		t.Previous = h[:]
		if prev.Epoch+1 != state.Epoch || !prev.IsAdmin(signer.ID()) || signer.Epoch() != prev.Epoch {
			return nil, fmt.Errorf("%w: the ticket of epoch %d cannot follow that of epoch %d with this chain", ErrTicketLineage, state.Epoch, prev.Epoch)
		}
	} else if signer.ID() != current.ID() {
		return nil, fmt.Errorf("%w: a first ticket is signed with the current chain", ErrTicketLineage)
	}
	t.Keys = sortRelayKeys(append(slices.Clone(keys), RelayKey{Chain: current.ID(), Admin: true}))
	t.Members = max(t.Members, uint32(len(t.Keys))) // a member with two chains of the epoch
	if err := t.checkForm(); err != nil {
		return nil, err
	}
	t.Signature = ed25519.Sign(signer.signing, append([]byte(LabelRelayTicket), t.Canonical()...))
	t.raw = t.Marshal()
	if len(t.raw) > MaxRelayTicketSize {
		return nil, fmt.Errorf("%w: relay ticket of %d bytes (max %d)", ErrTooLarge, len(t.raw), MaxRelayTicketSize)
	}
	return t, nil
}

// sortRelayKeys orders keys by chain; a chain listed twice is an admin's
// if either entry says so.
func sortRelayKeys(in []RelayKey) []RelayKey {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b RelayKey) int {
		if c := bytes.Compare(a.Chain[:], b.Chain[:]); c != 0 {
			return c
		}
		if a.Admin == b.Admin {
			return 0
		}
		if a.Admin {
			return -1
		}
		return 1
	})
	return slices.CompactFunc(out, func(a, b RelayKey) bool { return a.Chain == b.Chain })
}

// checkForm checks what every ticket must satisfy before any signature.
func (t *RelayTicket) checkForm() error {
	bad := func(what string) error { return fmt.Errorf("%w: relay ticket %s", ErrMalformed, what) }
	switch {
	case t.Version != GroupVersion:
		return bad(fmt.Sprintf("version %d", t.Version))
	case t.Proof == TopicProof{}:
		return bad("without a topic proof")
	case t.Epoch == 0:
		return bad("epoch 0")
	case len(t.Previous) != 0 && len(t.Previous) != sha256.Size:
		return bad("previous hash")
	case len(t.Keys) == 0:
		return bad("without keys")
	case len(t.Keys) > MaxGroupMembers || t.Members > MaxGroupMembers:
		return fmt.Errorf("%w: relay ticket of %d keys for %d members (max %d)", ErrTooLarge, len(t.Keys), t.Members, MaxGroupMembers)
	case int(t.Members) < len(t.Keys):
		return bad("with more keys than members")
	}
	for i, k := range t.Keys {
		if i > 0 && bytes.Compare(t.Keys[i-1].Chain[:], k.Chain[:]) >= 0 {
			return bad("keys not strictly ordered")
		}
	}
	return nil
}

// ParseRelayTicket decodes a ticket and checks its form; it verifies
// nothing (CheckRelayTicket does).
func ParseRelayTicket(b []byte) (*RelayTicket, error) {
	if len(b) > MaxRelayTicketSize {
		return nil, fmt.Errorf("%w: relay ticket of %d bytes (max %d)", ErrTooLarge, len(b), MaxRelayTicketSize)
	}
	var p pb.RelayTicket
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("relay ticket: %w", err)
	}
	if p.GetVersion() > 0xff || len(p.GetTopicProof()) != 32 || len(p.GetSigner()) != ed25519.PublicKeySize ||
		len(p.GetSignature()) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: relay ticket field length", ErrMalformed)
	}
	if len(p.GetKeys()) > MaxGroupMembers {
		return nil, fmt.Errorf("%w: relay ticket of %d keys (max %d)", ErrTooLarge, len(p.GetKeys()), MaxGroupMembers)
	}
	t := &RelayTicket{
		Version: uint8(p.GetVersion()), Proof: TopicProof(p.GetTopicProof()), Epoch: p.GetEpoch(), Members: p.GetMembers(),
		Previous: p.GetPrevious(), Issued: p.GetIssuedMs(), Signer: ChainID(p.GetSigner()),
		Signature: p.GetSignature(), raw: slices.Clone(b),
	}
	for _, k := range p.GetKeys() {
		if len(k.GetChain()) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: relay ticket key", ErrMalformed)
		}
		t.Keys = append(t.Keys, RelayKey{Chain: ChainID(k.GetChain()), Admin: k.GetAdmin()})
	}
	if err := t.checkForm(); err != nil {
		return nil, err
	}
	return t, nil
}

// verifySignature checks the signature by t.Signer (ErrAuth).
func (t *RelayTicket) verifySignature() error {
	if !ed25519.Verify(ed25519.PublicKey(t.Signer[:]), append([]byte(LabelRelayTicket), t.Canonical()...), t.Signature) {
		return fmt.Errorf("%w: relay ticket signature", ErrAuth)
	}
	return nil
}

// CheckRelayTicket is a relay's decision on next, given cur, the ticket
// it holds for next's topic (nil: none; curAnchored: vouched for by a
// lineage), and prev, the ticket it holds whose hash next names as
// Previous (nil: none or not held). It checks, in order: the signature
// (ErrAuth); with prev, the lineage: next is of the epoch after prev's
// (ErrGroupEpoch) and signed by an admin key of prev (ErrGroupNotAdmin);
// with cur, that next is of cur's epoch (ErrGroupEpoch), issued after it
// (ErrTicketStale), and, unless the lineage vouches for next while cur is
// not vouched for, signed by an admin key of cur or cur's signer
// (ErrGroupNotAdmin); with neither, that an admin key of next itself
// signed it (ErrTicketLineage when next names a previous ticket, else
// ErrGroupNotAdmin). anchored reports whether the relay's ticket for the
// topic is vouched for by a lineage once next replaces cur.
func CheckRelayTicket(next, cur, prev *RelayTicket, curAnchored bool) (anchored bool, err error) {
	if err := next.verifySignature(); err != nil {
		return false, err
	}
	vouched := prev != nil
	if vouched {
		if h := prev.Hash(); !bytes.Equal(next.Previous, h[:]) {
			return false, fmt.Errorf("%w: previous ticket is not the one named", ErrTicketLineage)
		}
		if next.Epoch != prev.Epoch+1 {
			return false, fmt.Errorf("%w: ticket of epoch %d after epoch %d", ErrGroupEpoch, next.Epoch, prev.Epoch)
		}
		if !prev.IsAdmin(next.Signer) {
			return false, fmt.Errorf("%w: signer is not an admin of the previous epoch's ticket", ErrGroupNotAdmin)
		}
	}
	if cur != nil {
		if next.Epoch != cur.Epoch {
			return false, fmt.Errorf("%w: ticket of epoch %d for a topic of epoch %d", ErrGroupEpoch, next.Epoch, cur.Epoch)
		}
		if next.Issued <= cur.Issued {
			return false, fmt.Errorf("%w: issued at %d, the relay's at %d", ErrTicketStale, next.Issued, cur.Issued)
		}
		if vouched && !curAnchored {
			return true, nil // the lineage wins over a first ticket
		}
		if !cur.IsAdmin(next.Signer) && next.Signer != cur.Signer {
			return false, fmt.Errorf("%w: signer is not an admin key of the relay's ticket", ErrGroupNotAdmin)
		}
		return curAnchored || vouched, nil
	}
	if !vouched && !next.IsAdmin(next.Signer) {
		if len(next.Previous) != 0 {
			return false, fmt.Errorf("%w: previous ticket unknown here", ErrTicketLineage)
		}
		return false, fmt.Errorf("%w: signer is not an admin key of the ticket", ErrGroupNotAdmin)
	}
	return vouched, nil
}
