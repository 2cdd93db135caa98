package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// The groups part in the running node: its wiring (the gossipsub router,
// how it reaches friends and finds keys) and the use cases the API calls.
//
// States and sender keys travel to members who are accepted friends of
// the sender as 1:1 envelopes sealed to them and signed (suite 2:
// RSA-OAEP and X25519 against their prekey, RSA-PSS), which the outbox
// retries until acknowledged (messenger.queueControl). Not in the ratchet
// session: a control message in a session the friend can no longer open
// is not sealed again after a reset (resealSession), and a lost sender
// key would cut a member off an epoch. A group control that does arrive
// in a session is taken too (storeOpened). Members who are not friends
// of each other are reached through the directory, authorised by the
// roster (group_roster.go).
//
// Leaving: a member who removes themselves asks every admin to remove
// them (KindGroupLeave) and stops at once (leaves the topic and marks the
// group removed on this node); the first admin who gets the request
// removes them with the next state (protocol/doc.go).

// GroupInfo is a group as the API shows it.
type GroupInfo struct {
	ID      protocol.GroupID
	Name    string
	Epoch   uint64
	Members []GroupMemberInfo
	Removed bool // this user is no longer a member
	Unread  int
	Last    *store.GroupMessage // the newest message, nil if none
}

// NameOf is the name this node knows member user by ("" if none).
func (g GroupInfo) NameOf(user protocol.ID) string {
	for _, m := range g.Members {
		if m.User == user {
			return m.Name
		}
	}
	return ""
}

// GroupMemberInfo is a member of a group: user ID, the name this node
// knows them by ("" for a member who is not a friend) and role.
type GroupMemberInfo struct {
	User protocol.ID
	Name string
	Role string // "admin" or "member"
}

// maxGroupNameChars bounds a group's name as the user types it.
const maxGroupNameChars = 64

// wireGroups makes the groups part on the node's host: its own gossipsub
// router (StrictNoSign, as every node on a group topic must use; see
// groups.go) with the rate limits of Config.GroupLimits (groupguard),
// hand-outs through the messenger, keys from the pinned friends or the
// directory, events on the bus.
func (u *unlocked) wireGroups(events *bus, spawn func(func(context.Context))) error {
	guard, err := groupguard.New(u.cfg.GroupLimits)
	if err != nil {
		return fail(ErrInvalid, "group limits: %v", err)
	}
	ps, err := newGroupPubSub(u.life, u.host, false, guard)
	if err != nil {
		return err
	}
	g := newGroups()
	g.st, g.log, g.me, g.host, g.ps, g.now, g.spawn = u.st, u.log, u.me, u.host, ps, u.cfg.Now, spawn
	g.guard = guard
	g.identity = func() (*protocol.PrivateKey, error) { return u.keys.identity(), nil }
	g.keyOf = u.groupKeyOf
	g.direct = u.groupDirect
	g.relays = newGroupRelays(u.mail.relays)
	g.ho.seal, g.ho.queued = u.sealHandouts, u.queuedHandouts
	u.msgs.roster = newRosterBook(u.lookup, u.cfg.Now)
	g.onMessage = func(m store.GroupMessage) {
		info := GroupInfo{ID: m.Group}
		// The group's row (its whole roster) is read only for a
		// subscriber (the API's WebSocket): with none, an arriving
		// message costs no read and decoding of it. The metrics that
		// observe every event count no group event.
		if events.count() == 0 {
			events.publish(Event{Type: EventGroupMessage, Group: info, GroupMessage: m})
			return
		}
		if gr, err := u.st.Group(u.life, m.Group); err == nil {
			// The message is its latest: no read of the latest one per
			// message received.
			info = u.groupHead(gr)
			info.Last = &m
		}
		events.publish(Event{Type: EventGroupMessage, Group: info, GroupMessage: m})
	}
	g.onUpdate = func(gr *store.Group) {
		typ := EventGroupUpdated
		if gr.Removed {
			typ = EventGroupRemoved
		}
		events.publish(Event{Type: typ, Group: u.groupInfo(u.life, gr)})
	}
	u.groups = g
	u.msgs.group = g.receiveDirect
	u.msgs.onRoster = g.onRoster
	return nil
}

// groupKeyOf returns a user's RSA key with the given ID: our own, a
// friend's pinned key, or the key of their verified directory record.
func (u *unlocked) groupKeyOf(ctx context.Context, user, key protocol.ID) (*protocol.PublicKey, error) {
	if user == u.me {
		if k := u.keys.identity().Public(); k.ID() == key {
			return k, nil
		}
	}
	if fe := u.friends.friend(user); fe != nil && fe.key != nil && fe.key.ID() == key {
		return fe.key, nil
	}
	rec, err := u.lookup(ctx, user)
	if err != nil {
		return nil, err
	}
	if k := rec.Key(); k != nil && k.ID() == key {
		return k, nil
	}
	return nil, fail(ErrNotFound, "key %s of %s", key, user)
}

// groupDirect queues a group state or sender key for an accepted friend
// (delivered and retried by the outbox), or sends it to a member who is
// not a friend through the directory (group_roster.go).
func (u *unlocked) groupDirect(ctx context.Context, to protocol.ID, kind protocol.Kind, body []byte) error {
	fe := u.friends.friend(to)
	if fe == nil || fe.f.Status != store.FriendAccepted || fe.key == nil {
		return u.groupDirectRoster(ctx, to, kind, body)
	}
	return u.msgs.queueControl(ctx, fe, kind, body)
}

// groupInfo is gr with the members' names and its latest message.
func (u *unlocked) groupInfo(ctx context.Context, gr *store.Group) GroupInfo {
	info := u.groupHead(gr)
	if !gr.LastMsg.IsZero() {
		if ms, _, err := u.st.GroupMessages(ctx, gr.ID(), "", 1); err == nil && len(ms) == 1 {
			info.Last = &ms[0]
		}
	}
	return info
}

// groupHead is gr with the members' names, read from nothing but gr and
// the friends held in memory (no Last).
func (u *unlocked) groupHead(gr *store.Group) GroupInfo {
	info := GroupInfo{ID: gr.ID(), Name: gr.State.Name, Epoch: gr.State.Epoch, Removed: gr.Removed, Unread: gr.Unread}
	for _, m := range gr.State.Members {
		mi := GroupMemberInfo{User: m.User, Role: m.Role.String()}
		switch fe := u.friends.friend(m.User); {
		case m.User == u.me:
			mi.Name = u.keys.displayName()
		case fe != nil:
			mi.Name = fe.f.Name
		}
		info.Members = append(info.Members, mi)
	}
	return info
}

// group returns a stored group, or ErrNotFound.
func (u *unlocked) group(ctx context.Context, id protocol.GroupID) (*store.Group, error) {
	gr, err := u.st.Group(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(ErrNotFound, "group %s", id)
	}
	if err != nil {
		return nil, fmt.Errorf("node: group: %w", err)
	}
	return gr, nil
}

// CreateGroup makes a group named name with this user as its admin and
// members (accepted friends) as members, and hands it out.
func (n *Node) CreateGroup(ctx context.Context, name string, members []protocol.ID) (GroupInfo, error) {
	u, err := n.running()
	if err != nil {
		return GroupInfo{}, err
	}
	name = strings.TrimSpace(name)
	switch {
	case name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxGroupNameChars:
		return GroupInfo{}, fail(ErrInvalid, "a group's name is 1 to %d characters", maxGroupNameChars)
	case len(members) == 0:
		return GroupInfo{}, fail(ErrInvalid, "a group needs at least one member besides you")
	case len(members) >= protocol.MaxGroupMembers:
		return GroupInfo{}, fail(ErrInvalid, "a group has at most %d members", protocol.MaxGroupMembers)
	}
	var list []protocol.ID
	for _, m := range members {
		if m == u.me || slices.Contains(list, m) {
			continue
		}
		if fe := u.friends.friend(m); fe == nil || fe.f.Status != store.FriendAccepted {
			return GroupInfo{}, fail(ErrNotFriend, "%s", m)
		}
		list = append(list, m)
	}
	st, err := u.groups.createGroup(ctx, name, list)
	if err != nil {
		return GroupInfo{}, err
	}
	gr, err := u.group(ctx, st.Group)
	if err != nil {
		return GroupInfo{}, err
	}
	return u.groupInfo(ctx, gr), nil
}

// Groups lists the groups this node holds, those it was removed from
// included (Removed), in group ID order.
func (n *Node) Groups(ctx context.Context) ([]GroupInfo, error) {
	u, err := n.running()
	if err != nil {
		return nil, err
	}
	all, err := u.st.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("node: groups: %w", err)
	}
	out := make([]GroupInfo, 0, len(all))
	for _, gr := range all {
		out = append(out, u.groupInfo(ctx, gr))
	}
	return out, nil
}

// Group returns one group.
func (n *Node) Group(ctx context.Context, id protocol.GroupID) (GroupInfo, error) {
	u, err := n.running()
	if err != nil {
		return GroupInfo{}, err
	}
	gr, err := u.group(ctx, id)
	if err != nil {
		return GroupInfo{}, err
	}
	return u.groupInfo(ctx, gr), nil
}

// AddGroupMember adds an accepted friend to a group this user is an
// admin of: a new epoch, handed to everyone.
func (n *Node) AddGroupMember(ctx context.Context, id protocol.GroupID, user protocol.ID) (GroupInfo, error) {
	u, err := n.running()
	if err != nil {
		return GroupInfo{}, err
	}
	gr, err := u.group(ctx, id)
	if err != nil {
		return GroupInfo{}, err
	}
	if err := u.adminOf(gr); err != nil {
		return GroupInfo{}, err
	}
	if gr.State.IsMember(user) {
		return u.groupInfo(ctx, gr), nil
	}
	if fe := u.friends.friend(user); fe == nil || fe.f.Status != store.FriendAccepted {
		return GroupInfo{}, fail(ErrNotFriend, "%s", user)
	}
	members := append(slices.Clone(gr.State.Members), protocol.GroupMember{User: user, Role: protocol.RoleMember})
	return u.changeGroup(ctx, gr, members)
}

// RemoveGroupMember removes user from a group: an admin removes anyone
// (a new epoch without them, whose keys they never get); anyone removes
// themselves, which is leaving: the admins are asked to remove them, and
// this node stops (leaves the topic, the group is marked removed).
func (n *Node) RemoveGroupMember(ctx context.Context, id protocol.GroupID, user protocol.ID) error {
	u, err := n.running()
	if err != nil {
		return err
	}
	gr, err := u.group(ctx, id)
	if err != nil {
		return err
	}
	if user == u.me {
		if gr.Removed {
			return nil
		}
		// Every admin is asked to remove this user; this node stops now.
		leave := protocol.MarshalGroupLeave(protocol.GroupLeave{Group: id, Epoch: gr.State.Epoch})
		for _, m := range gr.State.Members {
			if m.Role == protocol.RoleAdmin && m.User != u.me {
				if err := u.groupDirect(ctx, m.User, protocol.KindGroupLeave, leave); err != nil {
					u.log.Info("group leave not sent to an admin", "group", id.String(), "err", err)
				}
			}
		}
		u.groups.leave(id)
		if err := u.st.SetGroupRemoved(ctx, id, true); err != nil {
			return fmt.Errorf("node: leaving group: %w", err)
		}
		u.groups.updated(ctx, id)
		return nil
	}
	if err := u.adminOf(gr); err != nil {
		return err
	}
	if !gr.State.IsMember(user) {
		return fail(ErrNotFound, "%s in group %s", user, id)
	}
	members := slices.DeleteFunc(slices.Clone(gr.State.Members), func(m protocol.GroupMember) bool { return m.User == user })
	_, err = u.changeGroup(ctx, gr, members)
	return err
}

func (u *unlocked) adminOf(gr *store.Group) error {
	switch {
	case gr.Removed:
		return fail(ErrNotMember, "group %s", gr.ID())
	case !gr.State.IsAdmin(u.me):
		return fail(ErrNotAdmin, "group %s", gr.ID())
	}
	return nil
}

func (u *unlocked) changeGroup(ctx context.Context, gr *store.Group, members []protocol.GroupMember) (GroupInfo, error) {
	if _, err := u.groups.changeMembers(ctx, gr.ID(), gr.State.Name, members); err != nil {
		return GroupInfo{}, err
	}
	next, err := u.group(ctx, gr.ID())
	if err != nil {
		return GroupInfo{}, err
	}
	return u.groupInfo(ctx, next), nil
}

// SendGroup posts text to a group. The message is stored before it is
// published; pending is true when it could not be published now (no
// topic yet): members who missed it catch up from this node.
func (n *Node) SendGroup(ctx context.Context, id protocol.GroupID, text string) (m store.GroupMessage, pending bool, err error) {
	u, err := n.running()
	if err != nil {
		return store.GroupMessage{}, false, err
	}
	switch {
	case len(text) > protocol.MaxBodySize:
		return store.GroupMessage{}, false, fail(ErrTooLarge, "%d bytes (max %d)", len(text), protocol.MaxBodySize)
	case !utf8.ValidString(text):
		return store.GroupMessage{}, false, fail(ErrInvalid, "message is not UTF-8")
	case strings.TrimSpace(text) == "":
		return store.GroupMessage{}, false, ErrEmptyMessage
	}
	m, err = u.groups.sendGroup(ctx, id, text)
	if errors.Is(err, ErrUnavailable) && !m.ID.IsZero() {
		return m, true, nil
	}
	if err != nil {
		return store.GroupMessage{}, false, err
	}
	return m, false, nil
}

// GroupMessages returns a page of a group's messages, newest first, and
// the cursor of the next (older) page ("" at the end). A member who was
// removed still reads what they received before.
func (n *Node) GroupMessages(ctx context.Context, id protocol.GroupID, before store.Cursor, limit int) ([]store.GroupMessage, store.Cursor, error) {
	u, err := n.running()
	if err != nil {
		return nil, "", err
	}
	if _, err := u.group(ctx, id); err != nil {
		return nil, "", err
	}
	ms, next, err := u.st.GroupMessages(ctx, id, before, limit)
	if errors.Is(err, store.ErrInvalid) {
		return nil, "", fail(ErrInvalid, "%v", err)
	}
	if err != nil {
		return nil, "", fmt.Errorf("node: group messages: %w", err)
	}
	return ms, next, nil
}

// MarkGroupRead marks a group read. upTo, when not zero, must be a
// message of the group; the store keeps one unread count per group, so
// everything received is read.
func (n *Node) MarkGroupRead(ctx context.Context, id protocol.GroupID, upTo protocol.MsgID) error {
	u, err := n.running()
	if err != nil {
		return err
	}
	if _, err := u.group(ctx, id); err != nil {
		return err
	}
	if err := u.st.MarkGroupRead(ctx, id); err != nil {
		return fmt.Errorf("node: mark group read: %w", err)
	}
	return nil
}
