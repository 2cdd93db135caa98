package node

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// What a rotation ends. A session is anchored, on each side, in the RSA
// key that certified that side's session key (protocol.Session.Keys).
// After a rotation, sessions anchored in the retired key open messages
// only during its grace:
//
//   - a friend's retired key: until the friend's rotation statement's time
//     plus Config.KeyGrace. The statement is signed by both keys, is
//     carried by the friend's card and record (the chain that led from the
//     pinned key to the new one), and its time is the same for every
//     reader, so the rule is deterministic. (Only the friend can choose
//     that time, as both keys sign it; a time in the future lengthens
//     only the grace of their own old key. Two nodes with different
//     KeyGrace may disagree on the end: whichever refuses first asks for
//     a reset, and nothing is lost.);
//   - the own retired key: until the end of its grace (the keyring keeps
//     it, with that time, for opening envelopes sealed to it).
//
// Past the grace such a session is refused like an unknown one (AckStale,
// and a session reset when the stream comes from one of the friend's
// devices): the sender seals again in a new session, anchored in the
// current keys. An envelope (or session start) sealed to the own retired
// key opens during the grace (Opener.OldKey; a start is accepted with the
// retired key, which certifies this side of that one session). Past the
// grace it is refused, after its signature verified, with AckUnavailable,
// which the sender retries with backoff, and the node sends the friend its
// current card (rate-limited per friend); the sender's outbox seals an
// envelope again when it finds it sealed to a key that is no longer the
// pinned one (messenger.reanchor), so it arrives, with its msg_id, once.
//
// Session states stored before this rule have the same anchors (the
// SessionState me_key and peer_key fields, written since session format
// 1): nothing is migrated.

// cardPushEvery limits the cards sent to one friend because they sealed
// to a retired key.
const cardPushEvery = time.Minute

// anchors are the keys that may anchor sessions with fe now. The
// friend's retired keys are worked out (their record's chain is verified
// again) only when a session anchored in another key than the pinned one
// is in use, which a rotation's grace makes rare and short.
func (ms *messenger) anchors(fe *friendEntry, p *protocol.PeerSessions, ids ...protocol.SessionID) protocol.Anchors {
	a := protocol.Anchors{Peer: fe.key, Mine: ms.keys.identity().ID(), MineRetired: ms.keys.retiredAnchors()}
	now := ms.cfg.Now()
	for _, id := range ids {
		if s := p.Session(id, now); s != nil {
			if _, theirs := s.Keys(); fe.key == nil || theirs != fe.key.ID() {
				a.PeerRetired = ms.peerRetired(fe)
				break
			}
		}
	}
	return a
}

// peerRetired returns the keys fe retired on the way to the pinned one,
// each with the end of its grace: the rotation's time plus KeyGrace.
// The chain comes from the friend's card or record that carries the
// pinned key (both verified when they were stored).
func (ms *messenger) peerRetired(fe *friendEntry) []protocol.RetiredKey {
	var keys []protocol.RetiredKey
	add := func(genesis *protocol.PublicKey, chain []*protocol.Rotation) {
		if genesis == nil || len(chain) == 0 {
			return
		}
		pubs := protocol.ChainKeys(genesis, chain)
		for i, r := range chain {
			k := pubs[i]
			if fe.key == nil || k.Equal(fe.key) || slices.ContainsFunc(keys, func(o protocol.RetiredKey) bool { return o.ID == k.ID() }) {
				continue
			}
			keys = append(keys, protocol.RetiredKey{ID: k.ID(), Key: k, Until: r.Time.Add(ms.cfg.KeyGrace)})
		}
	}
	if fe.card != nil {
		add(fe.card.Genesis, fe.card.Chain)
	}
	if len(fe.f.Record) > 0 {
		if rec, err := directory.ParseRecord(fe.f.Record); err == nil && rec.UserID() == fe.f.UserID && rec.Key().Equal(fe.key) {
			add(rec.Genesis(), rec.Chain())
		}
	}
	return keys
}

// retiredAnchors are the own retired keys still in their grace.
func (k *keyring) retiredAnchors() []protocol.RetiredKey {
	now := k.cfg.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []protocol.RetiredKey
	for id, r := range k.retired {
		if now.Before(r.until) {
			out = append(out, protocol.RetiredKey{ID: id, Key: r.key.Public(), Until: r.until})
		}
	}
	return out
}

// retiredPast reports whether id is an own key that a rotation retired
// and whose grace is over (the Opener's Retired).
func (k *keyring) retiredPast(id protocol.ID) bool {
	if k.oldKey(id) != nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.ContainsFunc(k.chain, func(r *protocol.Rotation) bool { return r.OldKey == id })
}

// signerFor is the own identity key with ID id: the current one, or a
// retired one in its grace; nil if neither.
func (k *keyring) signerFor(id protocol.ID) *protocol.PrivateKey {
	if cur := k.identity(); cur.ID() == id {
		return cur
	}
	return k.oldKey(id)
}

// fromDevice reports whether remote is one of fe's devices (as their card
// and record list them).
func fromDevice(fe *friendEntry, remote peer.ID) bool {
	return remote != "" && slices.Contains(fe.devices, remote)
}

// pushCard sends fe the own card after they sealed to a retired key, when
// the stream came from one of their devices, at most every cardPushEvery.
func (ms *messenger) pushCard(ctx context.Context, fe *friendEntry, remote peer.ID) {
	if fe == nil || fe.f.Status != store.FriendAccepted || !fromDevice(fe, remote) ||
		!ms.pushes.due(fe.f.UserID, ms.cfg.Now(), cardPushEvery) {
		return
	}
	if err := ms.sendCard(ctx, fe, protocol.KindContactAccept); err != nil {
		ms.log.Warn("card for a friend sealing to a retired key not queued", "friend", fe.f.UserID.String(), "err", err)
		return
	}
	ms.log.Info("friend sealed to a retired key; sent them the current card", "friend", fe.f.UserID.String())
}

// reanchor seals again a queued chat message that was sealed as an
// envelope (or a session start) to a key of the recipient that is no
// longer the pinned one, or signed with an own key that is no longer
// current: it goes as a single envelope between the current keys, with
// the same msg_id, in its place in the queue. It returns the entry as
// stored now, and false when nothing was done (nothing to do, or the
// message cannot be sealed again).
func (ms *messenger) reanchor(e store.OutboxEntry, env *protocol.Envelope) (store.OutboxEntry, bool) {
	if e.Control || e.Session || (env.Kind != protocol.KindText && env.Kind != protocol.KindSessionStart) {
		return e, false
	}
	fe := ms.friends.friend(e.Recipient)
	if fe == nil || fe.key == nil || fe.f.ChangedKey != nil {
		return e, false
	}
	if env.RecipientKey == fe.key.ID() && env.SenderKey == ms.keys.identity().ID() {
		return e, false
	}
	ctx, cancel := context.WithTimeout(ms.life, 10*time.Second)
	defer cancel()
	m, err := ms.st.Message(ctx, e.MsgID)
	if err != nil {
		return e, false
	}
	out, err := ms.sealOut(nil, fe, nil, protocol.KindText, e.MsgID, m.Body)
	if err == nil {
		var ne store.OutboxEntry
		if ne, err = ms.st.ResealOutbox(ctx, e.MsgID, out.raw, out.session, nil); err == nil {
			ms.log.Info("message sealed again to the friend's current key", "msg", e.MsgID.String(), "to", e.Recipient.String())
			return ne, true
		}
	}
	if !errors.Is(err, context.Canceled) {
		ms.log.Warn("message not sealed again to the current key", "msg", e.MsgID.String(), "err", err)
	}
	return e, false
}
