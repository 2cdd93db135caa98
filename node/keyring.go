package node

import (
	ma "github.com/multiformats/go-multiaddr"

	"context"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// keyring is the part that owns the user's keys: the identity key and its
// rotation chain back to the genesis key, retired keys in their grace
// period, the current prekey, and the own card signed with them. Its
// serve rotates and purges prekeys. mu guards the fields below it and is
// held only for reads and writes of them; rotateMu serialises rotations.
type keyring struct {
	st  *store.Store
	cfg Config
	log *slog.Logger
	me  protocol.ID
	// host gives the card its device and addresses; set before the parts
	// start.
	host host.Host
	// circuits, if set, are the addresses through the relays holding a
	// slot for this device (reserver.addrs); the card carries them.
	circuits func() []ma.Multiaddr
	// changed, if set, is called after a new prekey (and so after a
	// rotation): the directory record and friends' cards are out of date.
	changed func(ctx context.Context)

	rotateMu sync.Mutex

	mu      sync.Mutex
	name    string
	key     *protocol.PrivateKey
	prekey  *protocol.Prekey
	genesis *protocol.PublicKey
	chain   []*protocol.Rotation
	retired map[protocol.ID]retiredKey
	card    *protocol.Card // the own card, re-signed when stale
}

// newKeyring loads the keys from st and makes sure a current prekey
// exists.
func newKeyring(ctx context.Context, st *store.Store, cfg Config, log *slog.Logger, name string) (*keyring, error) {
	key, err := st.Identity()
	if err != nil {
		return nil, err
	}
	k := &keyring{st: st, cfg: cfg, log: log, me: st.UserID(), name: name, key: key,
		retired: make(map[protocol.ID]retiredKey)}
	if err := k.loadKeys(ctx); err != nil {
		return nil, err
	}
	if err := k.ensurePrekey(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// ownKeys is what the directory record is signed from.
type ownKeys struct {
	name    string
	key     *protocol.PrivateKey
	genesis *protocol.PublicKey
	chain   []*protocol.Rotation
	prekey  *protocol.Prekey
}

func (k *keyring) snapshot() ownKeys {
	k.mu.Lock()
	defer k.mu.Unlock()
	return ownKeys{name: k.name, key: k.key, genesis: k.genesis, chain: k.chain, prekey: k.prekey}
}

// dropCard makes the next ownCard sign a new card (the addresses changed).
func (k *keyring) dropCard() {
	k.mu.Lock()
	k.card = nil
	k.mu.Unlock()
}

func (k *keyring) displayName() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.name
}

func (k *keyring) genesisKey() *protocol.PublicKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.genesis
}

// sender is what seals with the current identity key, from this device.
func (k *keyring) sender() protocol.Sender {
	return protocol.Sender{UserID: k.me, Key: k.identity(), Device: []byte(k.host.ID())}
}
