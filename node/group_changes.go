package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Group states and sender keys: making a group, changing its members,
// and what arrives of both inside 1:1 sessions. A new state (a new
// epoch) comes with a new sender chain of this user's, stored with it in
// one transaction and handed to every other member; the part then joins
// the epoch's topic.

// createGroup makes a group with this user as its admin and members as
// members, stores it with this user's sender chain, joins its topic and
// hands the state and the sender key to every member.
func (g *groups) createGroup(ctx context.Context, name string, members []protocol.ID) (*protocol.GroupState, error) {
	key, err := g.identity()
	if err != nil {
		return nil, err
	}
	list := make([]protocol.GroupMember, 0, len(members))
	for _, m := range members {
		if m == g.me {
			continue
		}
		list = append(list, protocol.GroupMember{User: m, Role: protocol.RoleMember})
	}
	st, err := protocol.NewGroupState(key, g.me, name, list, g.now())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := g.adopt(ctx, st); err != nil {
		return nil, err
	}
	return st, nil
}

// changeMembers makes and hands out the next state of a group with the
// given members (the signer, an admin, lists itself to stay): adding,
// removing, promoting. Removed members get the state too, so that they
// learn of their removal; they get no sender key of the new epoch.
// It returns once the state is stored; the hand-outs follow in the
// background (adopt).
func (g *groups) changeMembers(ctx context.Context, id protocol.GroupID, name string, members []protocol.GroupMember) (*protocol.GroupState, error) {
	key, err := g.identity()
	if err != nil {
		return nil, err
	}
	gr, err := g.st.Group(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: group %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if gr.Removed {
		return nil, fail(ErrNotMember, "group %s", id)
	}
	if !gr.State.IsAdmin(g.me) {
		return nil, fail(ErrNotAdmin, "group %s", id)
	}
	next, err := gr.State.Next(key, g.me, name, members, g.now())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var told []protocol.ID
	for _, m := range gr.State.Members {
		if !next.IsMember(m.User) {
			told = append(told, m.User)
		}
	}
	if err := g.adopt(ctx, next, told...); err != nil {
		return nil, err
	}
	return next, nil
}

// adopt stores a verified state (with a new own chain when this user is
// a member of it), joins or leaves the topic, applies sender keys that
// came early, and, for a state made here or received, hands this user's
// state and sender key to the other members, and the state to told (the
// members a change made here removed, so that they learn of it; they get
// no sender key). The hand-outs are a job stored with the state and
// worked off in the background (group_handout.go): adopt returns once
// the state and the job are durable.
func (g *groups) adopt(ctx context.Context, st *protocol.GroupState, told ...protocol.ID) error {
	var (
		own *protocol.SenderChain
		job *store.Handout
	)
	member := st.IsMember(g.me)
	if member {
		var err error
		if own, err = protocol.NewSenderChain(st, g.me); err != nil {
			return err
		}
		if job, err = g.handoutJob(st, own, told); err != nil {
			return err
		}
	}
	unlock := g.lockGroup(st.Group)
	err := g.st.PutGroupStateHandout(ctx, st, own, job)
	unlock()
	if err != nil {
		return err
	}
	if !member {
		g.leave(st.Group)
		g.updated(ctx, st.Group)
		return nil
	}
	g.kickHandouts()
	if err := g.join(st); err != nil {
		return err
	}
	g.applyPending(ctx, st)
	g.relayState(st)
	g.updated(ctx, st.Group)
	return nil
}

func (g *groups) updated(ctx context.Context, id protocol.GroupID) {
	if g.onUpdate == nil {
		return
	}
	if gr, err := g.st.Group(ctx, id); err == nil {
		g.onUpdate(gr)
	}
}

// receiveDirect takes a group state or sender key that arrived inside
// the 1:1 session with from (the session's authenticated peer).
func (g *groups) receiveDirect(ctx context.Context, from protocol.ID, kind protocol.Kind, body []byte) error {
	switch kind {
	case protocol.KindGroupState:
		st, err := protocol.ParseGroupState(body)
		if err != nil {
			return err
		}
		return g.receiveState(ctx, st)
	case protocol.KindSenderKey:
		d, err := protocol.ParseSenderKeyDistribution(body)
		if err != nil {
			return err
		}
		return g.receiveKey(ctx, from, d)
	case protocol.KindGroupLeave:
		l, err := protocol.ParseGroupLeave(body)
		if err != nil {
			return err
		}
		return g.receiveLeave(ctx, from, l)
	}
	return fmt.Errorf("%w: session message of kind %d for groups", ErrInvalid, kind)
}

// receiveState accepts a group state: for a group this node has, only the
// next epoch, from an admin of the current state, with the right previous
// hash (protocol.GroupState.Accept); for a new one, a state that lists
// this user, signed by one of its admins (protocol.VerifyGroupState). A
// state of an epoch already held is ignored.
func (g *groups) receiveState(ctx context.Context, st *protocol.GroupState) error {
	key, err := g.keyOf(ctx, st.Signer, st.SignerKey)
	if err != nil {
		return fmt.Errorf("%w: %w: signer of group state: %v", ErrInvalid, protocol.ErrUnknownSender, err)
	}
	cur, err := g.st.Group(ctx, st.Group)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if !st.IsMember(g.me) {
			return fmt.Errorf("%w: a new group's state without this user", protocol.ErrGroupNotMember)
		}
		if err := protocol.VerifyGroupState(st, key); err != nil {
			return err
		}
	case err != nil:
		return err
	case st.Epoch == cur.State.Epoch && st.Hash() == cur.State.Hash():
		return nil // the current state again
	default:
		if err := cur.State.Accept(st, key); err != nil {
			return err
		}
	}
	return g.adopt(ctx, st)
}

// receiveKey stores another member's sender key. A key of an epoch this
// node has no state for yet waits (at most maxPendingKeys of them), kept
// in the store, until the state arrives; if the state was stored while
// it was being kept, it is applied at once.
func (g *groups) receiveKey(ctx context.Context, from protocol.ID, d *protocol.SenderKeyDistribution) error {
	gr, err := g.st.Group(ctx, d.Group)
	if errors.Is(err, store.ErrNotFound) || (err == nil && d.Epoch > gr.State.Epoch) {
		g.mu.Lock()
		full := len(g.pending) >= maxPendingKeys
		g.mu.Unlock()
		if full {
			return fmt.Errorf("%w: %d sender keys wait for their state", ErrTooLarge, maxPendingKeys)
		}
		if err := g.st.PutEarlyKey(ctx, from, d); err != nil {
			return err
		}
		g.mu.Lock()
		g.pending = append(g.pending, pendingKey{from: from, d: d})
		g.mu.Unlock()
		if gr, err := g.st.Group(ctx, d.Group); err == nil && gr.State.Epoch >= d.Epoch {
			g.applyPending(ctx, gr.State) // the state came meanwhile
		}
		return nil
	}
	if err != nil {
		return err
	}
	c, err := protocol.AcceptSenderKey(gr.State, d, from)
	if err != nil {
		return err
	}
	switch err := g.st.PutSenderChain(ctx, c); {
	case errors.Is(err, store.ErrDuplicate):
		// A handout sent again: the key is known, and the relays'
		// ticket already names it.
		g.learn(c)
		return nil
	case err != nil:
		return err
	}
	g.learn(c)
	g.relayTicket(d.Group)
	return nil
}

// applyPending stores the keys that came before st, and drops those of
// its group's earlier epochs, from memory and the store.
func (g *groups) applyPending(ctx context.Context, st *protocol.GroupState) {
	g.mu.Lock()
	var ready, keep []pendingKey
	var done []store.EarlyKey
	for _, p := range g.pending {
		switch {
		case p.d.Group != st.Group || p.d.Epoch > st.Epoch:
			keep = append(keep, p)
		case p.d.Epoch == st.Epoch:
			ready = append(ready, p)
			fallthrough
		default:
			done = append(done, store.EarlyKey{From: p.from, Dist: p.d})
		}
	}
	g.pending = keep
	g.mu.Unlock()
	for _, p := range ready {
		if err := g.receiveKey(ctx, p.from, p.d); err != nil {
			g.log.Debug("early sender key refused", "group", st.Group.String(), "err", err)
		}
	}
	// A key whose row outlives this (a crash now) is applied or dropped
	// again at the next start (loadPending).
	if err := g.st.DeleteEarlyKeys(ctx, done); err != nil && ctx.Err() == nil {
		g.log.Warn("early sender keys not deleted", "group", st.Group.String(), "err", err)
	}
}

// loadPending takes up the early keys kept by the last run; serve then
// applies those whose state has come (or is past) meanwhile.
func (g *groups) loadPending(ctx context.Context) error {
	keys, err := g.st.EarlyKeys(ctx)
	if err != nil {
		return fmt.Errorf("node: early sender keys: %w", err)
	}
	g.mu.Lock()
	for _, k := range keys {
		if len(g.pending) < maxPendingKeys {
			g.pending = append(g.pending, pendingKey{from: k.From, d: k.Dist})
		}
	}
	g.mu.Unlock()
	return nil
}

// pendingKey is a sender key that came before its state.
type pendingKey struct {
	from protocol.ID
	d    *protocol.SenderKeyDistribution
}

// receiveLeave removes from, who asked to leave, from a group this user
// is an admin of, with the next state. Only a request for the current
// epoch counts: an old one (from before the member was added again) is
// ignored, and so is one from someone who is not a member.
func (g *groups) receiveLeave(ctx context.Context, from protocol.ID, l protocol.GroupLeave) error {
	gr, err := g.st.Group(ctx, l.Group)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: leave of an unknown group", ErrNotFound)
	case err != nil:
		return err
	case gr.Removed || !gr.State.IsAdmin(g.me) || !gr.State.IsMember(from) || l.Epoch != gr.State.Epoch || from == g.me:
		return fmt.Errorf("%w: leave of %s at epoch %d not taken", ErrInvalid, from, l.Epoch)
	}
	members := make([]protocol.GroupMember, 0, len(gr.State.Members))
	for _, m := range gr.State.Members {
		if m.User != from {
			members = append(members, m)
		}
	}
	if !slices.ContainsFunc(members, func(m protocol.GroupMember) bool { return m.Role == protocol.RoleAdmin }) {
		return fmt.Errorf("%w: the last admin cannot leave", ErrInvalid)
	}
	_, err = g.changeMembers(ctx, l.Group, gr.State.Name, members)
	return err
}
