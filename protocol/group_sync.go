package protocol

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

// Group sync: a member who missed messages (offline, or lost by
// gossipsub) asks another member for them: "what do you have of chain C
// from iteration N on". The request is signed with the requester's own
// chain key of the epoch, which every member holds the public half of,
// so only a member of the epoch is answered; it names the responder, so
// it serves nowhere else. What the answer holds is ciphertext that only
// members can open, and every message is verified again by the receiver.

const (
	// LabelGroupSync signs a sync request.
	LabelGroupSync = "parley/v1/group-sync"
	// MaxSyncWants caps the chains one request asks about.
	MaxSyncWants = 1000
	// MaxSyncMessages caps the messages of one response.
	MaxSyncMessages = 256
	// maxSyncRequest and maxSyncResponse cap the frames.
	maxSyncRequest  = 96 << 10
	maxSyncResponse = MaxSyncMessages * (MaxGroupMessageSize + 8)
)

// GroupSyncWant asks for the messages of one chain from an iteration on.
type GroupSyncWant struct {
	Sender ID
	Chain  ChainID
	From   uint32
}

// GroupSyncRequest is a signed request for missed messages of a group's
// epoch.
type GroupSyncRequest struct {
	Group          GroupID
	Epoch          uint64
	Requester      ID
	RequesterChain ChainID
	Responder      []byte // the responder's peer ID bytes
	Timestamp      int64  // unix milliseconds
	Wants          []GroupSyncWant
	Signature      []byte
}

// canonical is what the requester signs under "parley/v1/group-sync":
//
//	u8 version ‖ group_id (32) ‖ u64 epoch ‖ requester (32) ‖
//	requester_chain (32) ‖ bytes(responder) ‖ i64 timestamp_ms ‖
//	u32 count ‖ (sender (32) ‖ chain (32) ‖ u32 from)*
func (r *GroupSyncRequest) canonical() []byte {
	c := newCanon(1 + GroupIDSize + 8 + IDSize + len(ChainID{}) + 4 + len(r.Responder) + 8 + 4 + len(r.Wants)*(IDSize+len(ChainID{})+4))
	c.u8(GroupVersion)
	c.raw(r.Group[:])
	c.u64(r.Epoch)
	c.raw(r.Requester[:])
	c.raw(r.RequesterChain[:])
	c.bytes(r.Responder)
	c.i64(r.Timestamp)
	c.u32(uint32(len(r.Wants)))
	for _, w := range r.Wants {
		c.raw(w.Sender[:])
		c.raw(w.Chain[:])
		c.u32(w.From)
	}
	return append([]byte(LabelGroupSync), c.b...)
}

// SyncRequest makes a request signed with c, the caller's own chain, to
// the responder (its peer ID bytes).
func (c *SenderChain) SyncRequest(responder []byte, wants []GroupSyncWant, now time.Time) (*GroupSyncRequest, error) {
	if !c.Own() {
		return nil, fmt.Errorf("%w: a sync request is signed with one's own chain", ErrGroupWrongSender)
	}
	if len(wants) == 0 || len(wants) > MaxSyncWants || len(responder) == 0 || len(responder) > 128 {
		return nil, fmt.Errorf("%w: sync request of %d wants", ErrMalformed, len(wants))
	}
	r := &GroupSyncRequest{
		Group: c.group, Epoch: c.epoch, Requester: c.sender, RequesterChain: c.chain,
		Responder: bytes.Clone(responder), Timestamp: now.UnixMilli(), Wants: wants,
	}
	r.Signature = ed25519.Sign(c.signing, r.canonical())
	return r, nil
}

// VerifySync checks r for this responder with p, the public part of the
// requester's chain (which the responder looks up by r's group, epoch,
// requester and chain): the binding (ErrGroupWrongGroup, ErrGroupEpoch,
// ErrGroupWrongSender), the responder (ErrNotForMe), the time (ErrStale;
// the envelope window) and the signature (ErrAuth).
func (p ChainPublic) VerifySync(r *GroupSyncRequest, responder []byte, now time.Time) error {
	switch {
	case r.Group != p.Group:
		return fmt.Errorf("%w: sync request", ErrGroupWrongGroup)
	case r.Epoch != p.Epoch:
		return fmt.Errorf("%w: sync request", ErrGroupEpoch)
	case r.Requester != p.Sender || r.RequesterChain != p.Chain:
		return fmt.Errorf("%w: sync request signed with another's chain", ErrGroupWrongSender)
	case !bytes.Equal(r.Responder, responder):
		return fmt.Errorf("%w: sync request for another responder", ErrNotForMe)
	}
	o := Opener{Now: func() time.Time { return now }}
	if err := o.checkTime(r.Timestamp); err != nil {
		return err
	}
	if !ed25519.Verify(ed25519.PublicKey(p.Chain[:]), r.canonical(), r.Signature) {
		return fmt.Errorf("%w: sync request signature", ErrAuth)
	}
	return nil
}

// WriteGroupSyncRequest writes r as one length-prefixed frame.
func WriteGroupSyncRequest(w io.Writer, r *GroupSyncRequest) error {
	p := &pb.GroupSyncRequest{
		Version: GroupVersion, GroupId: r.Group[:], Epoch: r.Epoch, Requester: r.Requester[:],
		RequesterChain: r.RequesterChain[:], Responder: r.Responder, TimestampMs: r.Timestamp, Signature: r.Signature,
	}
	for _, x := range r.Wants {
		p.Wants = append(p.Wants, &pb.GroupSyncWant{Sender: x.Sender[:], Chain: x.Chain[:], From: x.From})
	}
	return writeFrame(w, p, maxSyncRequest)
}

// ReadGroupSyncRequest reads and checks the form of one request frame.
func ReadGroupSyncRequest(br *bufio.Reader) (*GroupSyncRequest, error) {
	b, err := readFrame(br, maxSyncRequest)
	if err != nil {
		return nil, err
	}
	var p pb.GroupSyncRequest
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("sync request: %w", err)
	}
	if p.GetVersion() != GroupVersion || len(p.GetGroupId()) != GroupIDSize || p.GetEpoch() == 0 ||
		len(p.GetRequester()) != IDSize || len(p.GetRequesterChain()) != ed25519.PublicKeySize ||
		len(p.GetResponder()) == 0 || len(p.GetResponder()) > 128 || len(p.GetSignature()) != ed25519.SignatureSize ||
		len(p.GetWants()) == 0 || len(p.GetWants()) > MaxSyncWants {
		return nil, fmt.Errorf("%w: sync request fields", ErrMalformed)
	}
	r := &GroupSyncRequest{
		Group: GroupID(p.GetGroupId()), Epoch: p.GetEpoch(), Requester: ID(p.GetRequester()),
		RequesterChain: ChainID(p.GetRequesterChain()), Responder: p.GetResponder(), Timestamp: p.GetTimestampMs(),
		Signature: p.GetSignature(),
	}
	for _, x := range p.GetWants() {
		if len(x.GetSender()) != IDSize || len(x.GetChain()) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: sync request want", ErrMalformed)
		}
		r.Wants = append(r.Wants, GroupSyncWant{Sender: ID(x.GetSender()), Chain: ChainID(x.GetChain()), From: x.GetFrom()})
	}
	return r, nil
}

// WriteGroupSyncResponse writes the encoded messages (at most
// MaxSyncMessages) as one frame.
func WriteGroupSyncResponse(w io.Writer, msgs [][]byte) error {
	if len(msgs) > MaxSyncMessages {
		return fmt.Errorf("%w: %d messages in a sync response (max %d)", ErrTooLarge, len(msgs), MaxSyncMessages)
	}
	return writeFrame(w, &pb.GroupSyncResponse{Messages: msgs}, maxSyncResponse)
}

// ReadGroupSyncResponse reads one response frame and parses its messages;
// it verifies none (the receiver opens each with its chain).
func ReadGroupSyncResponse(br *bufio.Reader) ([]*GroupMessage, error) {
	b, err := readFrame(br, maxSyncResponse)
	if err != nil {
		return nil, err
	}
	var p pb.GroupSyncResponse
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("sync response: %w", err)
	}
	if len(p.GetMessages()) > MaxSyncMessages {
		return nil, fmt.Errorf("%w: %d messages in a sync response", ErrTooLarge, len(p.GetMessages()))
	}
	out := make([]*GroupMessage, 0, len(p.GetMessages()))
	for _, raw := range p.GetMessages() {
		m, err := ParseGroupMessage(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
