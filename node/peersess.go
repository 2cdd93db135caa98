package node

import (
	"sync"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// peerSess is one friend's session state: its lock and the stored blob
// (nil: none yet), loaded on first use.
type peerSess struct {
	mu     sync.Mutex
	loaded bool
	blob   []byte
	// version counts the states: a stored state carries its version, so
	// that writes which commit out of order never store an older state
	// over a newer one (store.SessionUpdate).
	version uint64
	// last is the timestamp (unix ms) of the last message sealed to the
	// friend: each next one is later, so that the outbox, which sends in
	// timestamp order, keeps the order they were sealed in.
	last int64
	// A single RSA envelope needs no session state, so it is sealed
	// without mu (its RSA signature is most of a send's time, and the
	// friend's other sends can sign meanwhile): it takes a ticket and its
	// timestamp under mu, seals, and queues its write under mu when its
	// turn comes. Every other seal under mu takes its turn too (lockTurn),
	// so writes stay in ticket order, which is timestamp order.
	issued, served uint64    // tickets taken, turns ended
	turn           sync.Cond // L is &mu: signalled when a turn ends
}

// newPeerSess returns an empty holder.
func newPeerSess() *peerSess {
	ps := &peerSess{}
	ps.turn.L = &ps.mu
	return ps
}

// ticket takes the next turn; mu must be held.
func (ps *peerSess) ticket() uint64 {
	ps.issued++
	return ps.issued
}

// await waits, mu held, until it is turn t's (earlier turns have ended).
func (ps *peerSess) await(t uint64) {
	for ps.served+1 != t {
		ps.turn.Wait()
	}
}

// release ends turn t, whose writes are queued; mu must be held.
func (ps *peerSess) release(t uint64) {
	ps.served = t
	ps.turn.Broadcast()
}

// lockTurn locks mu for a seal and write made under it, after the seals
// made without it that took their turns earlier; unlock ends the turn.
func (ps *peerSess) lockTurn() (unlock func()) {
	ps.mu.Lock()
	t := ps.ticket()
	ps.await(t)
	return func() {
		ps.release(t)
		ps.mu.Unlock()
	}
}

// stamp is the next seal's timestamp: now, or just after the last one;
// mu must be held.
func (ps *peerSess) stamp(now time.Time) time.Time {
	if ms := now.UnixMilli(); ms <= ps.last {
		now = time.UnixMilli(ps.last + 1)
	}
	ps.last = now.UnixMilli()
	return now
}

// next is the update that stores p as the friend's next state.
func (ps *peerSess) next(peer protocol.ID, p *protocol.PeerSessions) *store.SessionUpdate {
	return &store.SessionUpdate{Peer: peer, State: p.Marshal(), Version: ps.version + 1}
}

// stored records u as the friend's current state.
func (ps *peerSess) stored(u *store.SessionUpdate) { ps.blob, ps.version = u.State, u.Version }

// peerSessOf returns friend id's session state holder.
func (ms *messenger) peerSessOf(id protocol.ID) *peerSess {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ps := ms.sessions[id]
	if ps == nil {
		ps = newPeerSess()
		ms.sessions[id] = ps
	}
	return ps
}
