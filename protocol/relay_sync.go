package protocol

import (
	"bufio"
	"crypto/ed25519"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/parley-chat/parley/protocol/pb"
)

// Relay sync: a group relay that was away (down, or cut off) asks the
// members it meets on a topic for what was posted there meanwhile, chain
// by chain from the first iteration it misses. It has no chain key, so
// its request is authenticated by its ticket for the topic instead: a
// member answers only a ticket of the epoch it holds (ErrGroupEpoch),
// whose topic proof is its own state's (ErrNotForMe: a ticket for another
// topic), validly signed (ErrAuth) by a chain key of an admin of its
// state (ErrGroupNotAdmin) — RelayTicket.VerifyFor. The ticket is a
// bearer credential (it names no relay): whoever holds one may ask, which
// gives nothing beyond what the relay that holds it may carry anyway,
// ciphertext of the topic; the answer is a GroupSyncResponse, and the
// relay checks each message as its topic validator does.

// RelaySyncWant asks for the messages of one chain of the ticket from an
// iteration on.
type RelaySyncWant struct {
	Chain ChainID
	From  uint32
}

// RelaySyncRequest is a relay's request for the messages of its ticket's
// topic it missed.
type RelaySyncRequest struct {
	Ticket *RelayTicket
	Wants  []RelaySyncWant
}

// maxRelaySyncRequest caps a request frame: a ticket and one want per key.
const maxRelaySyncRequest = MaxRelayTicketSize + MaxGroupMembers*(32+12) + 64

// checkWants checks that the wants name keys of the ticket, each once.
func (r *RelaySyncRequest) checkWants() error {
	if len(r.Wants) == 0 || len(r.Wants) > len(r.Ticket.Keys) {
		return fmt.Errorf("%w: relay sync request of %d wants for %d keys", ErrMalformed, len(r.Wants), len(r.Ticket.Keys))
	}
	seen := make(map[ChainID]bool, len(r.Wants))
	for _, w := range r.Wants {
		if _, ok := r.Ticket.Key(w.Chain); !ok || seen[w.Chain] {
			return fmt.Errorf("%w: relay sync want of a chain not in the ticket, or twice", ErrMalformed)
		}
		seen[w.Chain] = true
	}
	return nil
}

// WriteRelaySyncRequest writes r as one length-prefixed frame.
func WriteRelaySyncRequest(w io.Writer, r *RelaySyncRequest) error {
	if r.Ticket == nil {
		return fmt.Errorf("%w: relay sync request without a ticket", ErrMalformed)
	}
	if err := r.checkWants(); err != nil {
		return err
	}
	p := &pb.RelaySyncRequest{Ticket: r.Ticket.Marshal()}
	for _, x := range r.Wants {
		p.Wants = append(p.Wants, &pb.RelaySyncWant{Chain: x.Chain[:], From: x.From})
	}
	return writeFrame(w, p, maxRelaySyncRequest)
}

// ReadRelaySyncRequest reads one request frame and checks its form (the
// ticket parses, the wants name its keys, each once); it verifies
// nothing (VerifyFor does).
func ReadRelaySyncRequest(br *bufio.Reader) (*RelaySyncRequest, error) {
	b, err := readFrame(br, maxRelaySyncRequest)
	if err != nil {
		return nil, err
	}
	var p pb.RelaySyncRequest
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("relay sync request: %w", err)
	}
	t, err := ParseRelayTicket(p.GetTicket())
	if err != nil {
		return nil, err
	}
	if len(p.GetWants()) > len(t.Keys) {
		return nil, fmt.Errorf("%w: relay sync request of %d wants", ErrMalformed, len(p.GetWants()))
	}
	r := &RelaySyncRequest{Ticket: t}
	for _, x := range p.GetWants() {
		if len(x.GetChain()) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: relay sync want", ErrMalformed)
		}
		r.Wants = append(r.Wants, RelaySyncWant{Chain: ChainID(x.GetChain()), From: x.GetFrom()})
	}
	if err := r.checkWants(); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyFor checks, for a member holding st, that t is a ticket of st's
// epoch (ErrGroupEpoch) for st's topic (ErrNotForMe), validly signed
// (ErrAuth) by a chain that adminChain, the member's lookup among the
// chains it holds of the epoch and the one before, says is an admin's of
// st (ErrGroupNotAdmin).
func (t *RelayTicket) VerifyFor(st *GroupState, adminChain func(ChainID) bool) error {
	if t.Epoch != st.Epoch {
		return fmt.Errorf("%w: ticket of epoch %d, state of epoch %d", ErrGroupEpoch, t.Epoch, st.Epoch)
	}
	if p := st.TopicProof(); subtle.ConstantTimeCompare(p[:], t.Proof[:]) != 1 {
		return fmt.Errorf("%w: ticket for another topic", ErrNotForMe)
	}
	if err := t.verifySignature(); err != nil {
		return err
	}
	if !adminChain(t.Signer) {
		return fmt.Errorf("%w: ticket signed by a chain of no admin", ErrGroupNotAdmin)
	}
	return nil
}
