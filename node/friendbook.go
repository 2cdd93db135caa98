package node

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/node/outbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// friendBook is the part that owns friends and pinning: the cache of
// every stored friend (what sending to and hearing from them needs), the
// changes to friend records (adding, accepting, removing, blocking,
// verifying; contact requests and accepts that arrive) and trust on first
// use (pinning.go). Its serve looks up every friend's directory record
// now and then.
//
// changeMu serialises changes to friend records (read, change, write),
// from the API and from contact envelopes alike; mu guards the maps
// below it, for short reads and writes only. Order: changeMu > mu.
type friendBook struct {
	st     *store.Store
	cfg    Config
	log    *slog.Logger
	me     protocol.ID
	keys   *keyring
	events *bus
	outbox *outbox.Outbox
	dir    *directory.DHT
	// lookup finds a user's verified record (the own one from memory).
	lookup func(ctx context.Context, id protocol.ID) (*directory.Record, error)
	// sendCard queues a contact request or accept with the own card,
	// sendRemoval a removal notice (removal.go).
	sendCard    func(ctx context.Context, fe *friendEntry, kind protocol.Kind) error
	sendRemoval func(ctx context.Context, fe *friendEntry) error
	// online reports whether a friend is shown online; dial connects to
	// their devices in the background.
	online func(id protocol.ID) bool
	dial   func(fe *friendEntry)
	// cached and forgotten tell the other parts about a friend cached
	// anew or forgotten; called without any lock of this part held.
	cached    func(fe *friendEntry)
	forgotten func(id protocol.ID)
	// spawn runs f in a goroutine that Close waits for.
	spawn func(f func(ctx context.Context))

	changeMu sync.Mutex

	lookups  perFriend    // unknown-key lookups, by friend
	requests requestLimit // contact requests, by sender (requests.go)

	mu      sync.Mutex
	friends map[protocol.ID]*friendEntry // every stored friend
	devices map[peer.ID]protocol.ID      // friends' device peer IDs
	leaving map[protocol.ID]*friendEntry // removed friends, for their removal notice (removal.go)
}

// friendEntry caches what sending to and hearing from a friend needs.
type friendEntry struct {
	f       store.Friend
	key     *protocol.PublicKey    // the pinned key; nil if it does not parse
	card    *protocol.Card         // nil if none, or it does not parse
	prekey  *protocol.SignedPrekey // from the newer of card and record
	rcpt    protocol.Recipient
	infos   []peer.AddrInfo // devices, with the card's addresses if any
	devices []peer.ID
	relays  []peer.AddrInfo // mailbox relays: the record's, then the card's circuits'
}

func newFriendBook() *friendBook {
	return &friendBook{
		friends: make(map[protocol.ID]*friendEntry),
		devices: make(map[peer.ID]protocol.ID),
		leaving: make(map[protocol.ID]*friendEntry),
	}
}

// load caches every stored friend.
func (fr *friendBook) load(ctx context.Context) error {
	friends, err := fr.st.Friends(ctx)
	if err != nil {
		return err
	}
	for _, f := range friends {
		fr.cacheFriend(f)
	}
	return fr.resumeStranded(ctx)
}

// userOf is the friend whose device p is.
func (fr *friendBook) userOf(p peer.ID) (protocol.ID, bool) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	id, ok := fr.devices[p]
	return id, ok
}

// devicesOf are a friend's devices.
func (fr *friendBook) devicesOf(id protocol.ID) []peer.ID {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fe := fr.friends[id]; fe != nil {
		return fe.devices
	}
	return nil
}

// having lists the cached friends for which keep is true.
func (fr *friendBook) having(keep func(fe *friendEntry) bool) []*friendEntry {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	var out []*friendEntry
	for _, fe := range fr.friends {
		if keep(fe) {
			out = append(out, fe)
		}
	}
	return out
}

// cacheFriend records f (as stored) in the friend cache: the pinned key,
// and the devices and prekey from their card or directory record,
// whichever is newer and carries the pinned key.
func (fr *friendBook) cacheFriend(f store.Friend) *friendEntry {
	fe := &friendEntry{f: f, key: mustKey(f.PublicKey)}
	now := fr.cfg.Now()
	var cardAt time.Time
	var recRelays []string
	if c, err := protocol.ParseCardURI(f.Card); f.Card != "" && err == nil && c.UserID == f.UserID && c.Key.Equal(fe.key) {
		fe.card, fe.prekey, cardAt = c, c.Prekey, c.IssuedAt
		fe.infos = cardAddrInfo(c)
	}
	if rec, err := directory.ParseRecord(f.Record); len(f.Record) > 0 && err == nil && rec.UserID() == f.UserID && rec.Key().Equal(fe.key) {
		if fe.card == nil || rec.IssuedAt().After(cardAt) {
			fe.prekey = rec.Prekey()
		}
		fe.infos = mergeDevices(fe.infos, rec.DevicePeers(), relayCircuits(rec.Relays()))
		recRelays = rec.Relays()
	}
	fe.relays = friendRelays(recRelays, fe.infos)
	if fe.key != nil {
		fe.rcpt, _ = protocol.NewRecipient(f.UserID, fe.key, nil, now)
		if fe.prekey != nil {
			if r, err := protocol.NewRecipient(f.UserID, fe.key, fe.prekey, now); err == nil {
				fe.rcpt = r
			}
		}
	}
	for _, info := range fe.infos {
		fe.devices = append(fe.devices, info.ID)
	}
	fr.mu.Lock()
	if old := fr.friends[f.UserID]; old != nil {
		for _, d := range old.devices {
			delete(fr.devices, d)
		}
	}
	fr.friends[f.UserID] = fe
	delete(fr.leaving, f.UserID)
	for _, d := range fe.devices {
		fr.devices[d] = f.UserID
	}
	fr.mu.Unlock()
	if fr.cached != nil {
		fr.cached(fe)
	}
	return fe
}

// mergeDevices adds the devices in ids that infos lacks, and to every
// device the circuit addresses (through the relays of the friend's
// record) it lacks. Beyond those, peer routing finds a device's addresses.
func mergeDevices(infos []peer.AddrInfo, ids []peer.ID, circuits []ma.Multiaddr) []peer.AddrInfo {
	for _, id := range ids {
		if !slices.ContainsFunc(infos, func(i peer.AddrInfo) bool { return i.ID == id }) {
			infos = append(infos, peer.AddrInfo{ID: id})
		}
	}
	for i := range infos {
		for _, c := range circuits {
			if !slices.ContainsFunc(infos[i].Addrs, c.Equal) {
				infos[i].Addrs = append(infos[i].Addrs, c)
			}
		}
	}
	return infos
}

// forgetFriend drops id from the cache.
func (fr *friendBook) forgetFriend(id protocol.ID) {
	fr.mu.Lock()
	if old := fr.friends[id]; old != nil {
		for _, d := range old.devices {
			delete(fr.devices, d)
		}
	}
	delete(fr.friends, id)
	fr.mu.Unlock()
	if fr.forgotten != nil {
		fr.forgotten(id)
	}
}

// recipient is what to seal to fe with now: their cached recipient while
// its prekey is valid, else suite 1 (no prekey) until a newer card or
// record brings a new one.
func (fr *friendBook) recipient(fe *friendEntry) protocol.Recipient {
	now := fr.cfg.Now()
	if p := fe.rcpt.Prekey; p == nil || (!now.Before(p.NotBefore) && now.Before(p.NotAfter)) {
		return fe.rcpt
	}
	return protocol.Recipient{UserID: fe.f.UserID, Key: fe.key}
}

// isContact reports whether fe is a friend or someone we asked.
func (fe *friendEntry) isContact() bool {
	return fe.f.Status == store.FriendAccepted || fe.f.Status == store.FriendPendingOut
}

func (fr *friendBook) friend(id protocol.ID) *friendEntry {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return fr.friends[id]
}

// pendingIn counts the contact requests waiting for the user.
func (fr *friendBook) pendingIn() int {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	n := 0
	for _, fe := range fr.friends {
		if fe.f.Status == store.FriendPendingIn {
			n++
		}
	}
	return n
}
