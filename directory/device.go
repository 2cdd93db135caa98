package directory

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// LabelDevice is the domain label of a device's signature: a device's
// libp2p host key signs LabelDevice ‖ user ID (32 bytes) to agree to serve
// that user. It is not a prefix of any other Parley label.
const LabelDevice = "parley/v1/device"

// deviceSigSize is the size of an Ed25519 signature.
const deviceSigSize = 64

// Device is one of a user's devices: a libp2p peer ID whose key is inlined
// (Ed25519), with that key's signature over LabelDevice ‖ user ID.
type Device struct {
	Peer peer.ID
	Sig  []byte
}

// SignDevice makes the device entry of the host whose key is host, for
// user. The key must be Ed25519 (Parley's host keys are).
func SignDevice(host crypto.PrivKey, user protocol.ID) (Device, error) {
	if host == nil || host.Type() != crypto.Ed25519 {
		return Device{}, fmt.Errorf("%w: device host key must be Ed25519", ErrMalformed)
	}
	id, err := peer.IDFromPrivateKey(host)
	if err != nil {
		return Device{}, fmt.Errorf("device peer ID: %w", err)
	}
	sig, err := host.Sign(deviceMessage(user))
	if err != nil {
		return Device{}, fmt.Errorf("signing device: %w", err)
	}
	return Device{Peer: id, Sig: sig}, nil
}

func deviceMessage(user protocol.ID) []byte {
	return append([]byte(LabelDevice), user[:]...)
}

// Verify checks that d's signature is by the key inlined in its peer ID,
// an Ed25519 key, over LabelDevice ‖ user. Failures wrap ErrBadDevice.
func (d Device) Verify(user protocol.ID) error {
	pub, err := d.Peer.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("%w: device %s: no inlined key: %v", ErrBadDevice, d.Peer, err)
	}
	if pub.Type() != crypto.Ed25519 {
		return fmt.Errorf("%w: device %s: %v key, want Ed25519", ErrBadDevice, d.Peer, pub.Type())
	}
	if len(d.Sig) != deviceSigSize {
		return fmt.Errorf("%w: device %s: signature of %d bytes", ErrBadDevice, d.Peer, len(d.Sig))
	}
	ok, err := pub.Verify(deviceMessage(user), d.Sig)
	if err != nil || !ok {
		return fmt.Errorf("%w: device %s", ErrBadDevice, d.Peer)
	}
	return nil
}
