package node

import (
	"fmt"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Identity is what a data directory tells about its user without the
// passphrase.
type Identity struct {
	UserID      protocol.ID
	PeerID      string // "" until the node has been unlocked once
	Fingerprint string
}

// ReadIdentity reads the identity in dir: store.ErrNoStore when there is
// none. It needs no passphrase and works while a node runs on dir.
func ReadIdentity(dir string) (Identity, error) {
	info, err := store.ReadInfo(dir)
	if err != nil {
		return Identity{}, err
	}
	ns, err := readState(dir)
	if err != nil {
		return Identity{}, err
	}
	return Identity{UserID: info.UserID, PeerID: ns.PeerID, Fingerprint: info.UserID.Fingerprint()}, nil
}

// String formats the identity for `parley id`.
func (id Identity) String() string {
	peerID := id.PeerID
	if peerID == "" {
		peerID = "(not yet: the node has not run)"
	}
	return fmt.Sprintf("user ID:     %s\npeer ID:     %s\nfingerprint: %s\n", id.UserID, peerID, id.Fingerprint)
}
