package api

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// fakeNode is a small in-memory Node for the tests. errs makes a method
// (by name) fail with the given error.
type fakeNode struct {
	mu         sync.Mutex
	state      State
	passphrase string
	me         Me
	info       NodeInfo
	friends    []Friend
	messages   []Message
	next       string
	convs      []Conversation
	directory  map[string]DirectoryEntry // valid records, by user ID
	errs       map[string]error

	// What the API passed in.
	passSlices   [][]byte // every passphrase slice given to Register or Unlock
	lastSend     [2]string
	lastMessages struct {
		with, before string
		limit        int
	}
	lastRead    [2]string
	lastConnect string
	lastLookup  string
	lastSearch  string
	calls       []string
	// verifiedWith lists the safety numbers VerifyFriend was given.
	verifiedWith []string

	subs    map[int]chan Event
	nextSub int

	grp *fakeGroups // groups_test.go
}

var _ Node = (*fakeNode)(nil)

// newFakeNode returns a fake in the given state; a locked or unlocked one
// has the passphrase "correct horse battery".
func newFakeNode(state State) *fakeNode {
	f := &fakeNode{state: state, errs: map[string]error{}, subs: map[int]chan Event{}}
	if state != StateNew {
		f.passphrase = testPassphrase
		f.me = Me{UserID: "alice-id", Name: "alice", PeerID: "12D3KooWalice"}
	}
	return f
}

const testPassphrase = "correct horse battery"

func (f *fakeNode) fail(method string) error {
	f.calls = append(f.calls, method)
	return f.errs[method]
}

func (f *fakeNode) setErr(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = err
}

func (f *fakeNode) called(method string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.calls, method)
}

func (f *fakeNode) Owner() (name, userID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.me.Name, f.me.UserID
}

func (f *fakeNode) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeNode) Register(_ context.Context, name string, passphrase []byte) (Me, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passSlices = append(f.passSlices, passphrase)
	if err := f.fail("Register"); err != nil {
		return Me{}, err
	}
	if f.state != StateNew {
		return Me{}, &Error{Code: CodeConflict, Message: "identity exists"}
	}
	f.state = StateUnlocked
	f.passphrase = string(passphrase)
	f.me = Me{UserID: name + "-id", Name: name, PeerID: "12D3KooW" + name}
	return f.me, nil
}

func (f *fakeNode) Unlock(_ context.Context, passphrase []byte) (Me, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passSlices = append(f.passSlices, passphrase)
	if err := f.fail("Unlock"); err != nil {
		return Me{}, err
	}
	if f.state == StateNew {
		return Me{}, &Error{Code: CodeWrongState, Message: "no identity"}
	}
	if string(passphrase) != f.passphrase {
		return Me{}, &Error{Code: CodeBadPassphrase, Message: "wrong passphrase"}
	}
	f.state = StateUnlocked
	return f.me, nil
}

func (f *fakeNode) Me(context.Context) (Me, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Me"); err != nil {
		return Me{}, err
	}
	return f.me, nil
}

func (f *fakeNode) NodeInfo(context.Context) (NodeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("NodeInfo"); err != nil {
		return NodeInfo{}, err
	}
	return f.info, nil
}

func (f *fakeNode) Connect(_ context.Context, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastConnect = addr
	return f.fail("Connect")
}

func (f *fakeNode) Friends(context.Context) ([]Friend, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Friends"); err != nil {
		return nil, err
	}
	return slices.Clone(f.friends), nil
}

func (f *fakeNode) AddFriend(_ context.Context, invite string) (Friend, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("AddFriend"); err != nil {
		return Friend{}, err
	}
	fr := Friend{UserID: "from-" + invite, Name: "bob", Status: "pending_out"}
	f.friends = append(f.friends, fr)
	return fr, nil
}

// AddFriendByID accepts a pending request from userID, or else adds the
// user from the fake directory as pending_out.
func (f *fakeNode) AddFriendByID(_ context.Context, userID string) (Friend, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("AddFriendByID"); err != nil {
		return Friend{}, err
	}
	for i := range f.friends {
		if f.friends[i].UserID == userID {
			f.friends[i].Status = "accepted"
			return f.friends[i], nil
		}
	}
	e, ok := f.directory[userID]
	if !ok {
		return Friend{}, &Error{Code: CodeNotFound, Message: "no valid directory record"}
	}
	fr := Friend{UserID: userID, Name: e.Name, Status: "pending_out"}
	f.friends = append(f.friends, fr)
	return fr, nil
}

func (f *fakeNode) RemoveFriend(_ context.Context, userID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("RemoveFriend"); err != nil {
		return err
	}
	i := slices.IndexFunc(f.friends, func(fr Friend) bool { return fr.UserID == userID })
	if i < 0 {
		return &Error{Code: CodeNotFound, Message: "no such friend"}
	}
	f.friends = slices.Delete(f.friends, i, i+1)
	return nil
}

func (f *fakeNode) VerifyFriend(_ context.Context, userID string, safetyNumber ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("VerifyFriend"); err != nil {
		return err
	}
	f.verifiedWith = append(f.verifiedWith, safetyNumber...)
	for i := range f.friends {
		if f.friends[i].UserID == userID {
			if len(safetyNumber) > 0 && safetyNumber[0] != f.friends[i].SafetyNumber {
				return &Error{Code: CodeConflict, Message: "the safety number changed"}
			}
			f.friends[i].Verified = true
			return nil
		}
	}
	return &Error{Code: CodeNotFound, Message: "no such friend"}
}

func (f *fakeNode) BlockFriend(_ context.Context, userID string) (Friend, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("BlockFriend"); err != nil {
		return Friend{}, err
	}
	for i := range f.friends {
		if f.friends[i].UserID == userID {
			f.friends[i].Status = "blocked"
			return f.friends[i], nil
		}
	}
	return Friend{}, &Error{Code: CodeNotFound, Message: "no such friend"}
}

func (f *fakeNode) LookupUser(_ context.Context, userID string) (DirectoryEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLookup = userID
	if err := f.fail("LookupUser"); err != nil {
		return DirectoryEntry{}, err
	}
	e, ok := f.directory[userID]
	if !ok {
		return DirectoryEntry{}, &Error{Code: CodeNotFound, Message: "no valid directory record"}
	}
	return e, nil
}

// SearchDirectory returns the fake directory's users whose name equals
// name, ignoring case, sorted by user ID.
func (f *fakeNode) SearchDirectory(_ context.Context, name string) ([]SearchResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSearch = name
	if err := f.fail("SearchDirectory"); err != nil {
		return nil, err
	}
	var rs []SearchResult
	for _, e := range f.directory {
		if strings.EqualFold(e.Name, name) {
			friend := slices.ContainsFunc(f.friends, func(fr Friend) bool { return fr.UserID == e.UserID })
			rs = append(rs, SearchResult{UserID: e.UserID, Name: e.Name, Fingerprint: e.Fingerprint, Friend: friend})
		}
	}
	slices.SortFunc(rs, func(a, b SearchResult) int { return strings.Compare(a.UserID, b.UserID) })
	return rs, nil
}

// RotateKey gives the user a new fingerprint and keeps the user ID.
func (f *fakeNode) RotateKey(context.Context) (Me, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("RotateKey"); err != nil {
		return Me{}, err
	}
	f.me.Fingerprint += "'"
	return f.me, nil
}

func (f *fakeNode) Send(_ context.Context, to, text string) (Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSend = [2]string{to, text}
	if err := f.fail("Send"); err != nil {
		return Message{}, err
	}
	if !slices.ContainsFunc(f.friends, func(fr Friend) bool { return fr.UserID == to && fr.Status == "accepted" }) {
		return Message{}, &Error{Code: CodeNotFound, Message: "not a friend"}
	}
	return Message{ID: "00ff", From: f.me.UserID, To: to, Text: text, SentAt: time.Unix(1, 0).UTC(), Status: "pending", Direction: "out"}, nil
}

func (f *fakeNode) Messages(_ context.Context, with, before string, limit int) ([]Message, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastMessages.with, f.lastMessages.before, f.lastMessages.limit = with, before, limit
	if err := f.fail("Messages"); err != nil {
		return nil, "", err
	}
	msgs := f.messages
	if len(msgs) > limit {
		msgs = msgs[:limit]
	}
	return slices.Clone(msgs), f.next, nil
}

func (f *fakeNode) Conversations(context.Context) ([]Conversation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Conversations"); err != nil {
		return nil, err
	}
	return slices.Clone(f.convs), nil
}

func (f *fakeNode) MarkRead(_ context.Context, with, upTo string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRead = [2]string{with, upTo}
	return f.fail("MarkRead")
}

// Subscribe hands out a buffered channel that emit fills; it is closed and
// forgotten when ctx ends or cancel is called.
func (f *fakeNode) Subscribe(ctx context.Context) (<-chan Event, func()) {
	f.mu.Lock()
	id := f.nextSub
	f.nextSub++
	ch := make(chan Event, 64)
	f.subs[id] = ch
	f.mu.Unlock()

	done := make(chan struct{})
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			close(done)
			f.mu.Lock()
			defer f.mu.Unlock()
			if c, ok := f.subs[id]; ok {
				delete(f.subs, id)
				close(c)
			}
		})
	}
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-done:
		}
	}()
	return ch, cancel
}

// subscribers is the number of live subscriptions.
func (f *fakeNode) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// emit sends ev to every subscriber.
func (f *fakeNode) emit(ev Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		ch <- ev
	}
}

// endSubscriptions closes every subscription, as a node shutting down does.
func (f *fakeNode) endSubscriptions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, ch := range f.subs {
		delete(f.subs, id)
		close(ch)
	}
}

func netipMustParse(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// locked runs fn with the fake's lock held, for tests that read or set its
// fields while the server runs.
func (f *fakeNode) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}
