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
	// Writes are queued in the order the seals took their timestamps
	// (turns): a seal takes a ticket and its timestamp under mu, seals
	// and records its new state (stored) while still holding it, and
	// queues its write under mu when its turn comes (await), waiting out
	// the earlier ones. What needs no session state is signed outside mu
	// between the two, so the friend's other sends work meanwhile: a
	// single RSA envelope (all of it), and the RSA signature of a session
	// message in --strict-rsa-signatures mode.
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

// release ends turn t, after waiting for it (a seal that failed queues
// nothing, but its turn still ends in order); mu must be held.
func (ps *peerSess) release(t uint64) {
	ps.await(t)
	ps.served = t
	ps.turn.Broadcast()
}

// lockTurn locks mu and takes a turn, for a seal made under mu at once:
// the caller records the new state (stored) as soon as it has sealed,
// and awaits turn t before it queues its write; unlock ends the turn.
func (ps *peerSess) lockTurn() (t uint64, unlock func()) {
	ps.mu.Lock()
	t = ps.ticket()
	return t, func() {
		ps.release(t)
		ps.mu.Unlock()
	}
}

// inTurn records u (when not nil), the state a seal under mu produced, so
// that the next seal goes on from it, and waits for turn t: the caller
// then queues its write (with u) in the order the seals took their
// turns; mu must be held.
func (ps *peerSess) inTurn(t uint64, u *store.SessionUpdate) {
	if u != nil {
		ps.stored(u)
	}
	ps.await(t)
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
