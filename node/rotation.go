package node

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// Key rotation. RotateKey makes a new RSA identity key and a rotation
// statement signed by the old key and counter-signed by the new one; the
// store keeps the chain of them back to the genesis key, so the user ID
// (and the safety numbers, computed over the genesis key) never change.
// The old key keeps opening envelopes sealed to it for Config.KeyGrace,
// then it is deleted; sessions anchored in it (or in a friend's retired
// key) end with the grace too (anchors.go). Friends learn the new key from the directory record
// (published at once) and from the new card sent to them; their nodes
// accept it because the chain leads from the key they pinned.

// identity is the current identity key.
func (k *keyring) identity() *protocol.PrivateKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.key
}

// oldKey is the Opener's lookup of retired identity keys.
func (k *keyring) oldKey(id protocol.ID) *protocol.PrivateKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r, ok := k.retired[id]; ok && k.cfg.Now().Before(r.until) {
		return r.key
	}
	return nil
}

// retiredKey is an identity key in its grace period.
type retiredKey struct {
	key   *protocol.PrivateKey
	until time.Time
}

// loadKeys reads the genesis key, the rotation chain and the retired keys
// from the store, dropping retired keys whose grace period is over.
func (k *keyring) loadKeys(ctx context.Context) error {
	if _, err := k.st.PurgeRetiredKeys(ctx, k.cfg.Now()); err != nil {
		return fmt.Errorf("node: purge retired keys: %w", err)
	}
	chain, err := k.st.KeyChain(ctx)
	if err != nil {
		return fmt.Errorf("node: key chain: %w", err)
	}
	old, err := k.st.RetiredKeys(ctx)
	if err != nil {
		return fmt.Errorf("node: retired keys: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.genesis, k.chain = k.st.GenesisKey(), chain
	for _, r := range old {
		k.retired[r.Key.Public().ID()] = retiredKey{key: r.Key, until: r.Until}
	}
	return nil
}

// RotateKey replaces the identity key by a new one (of the same size),
// signed by the old one, and tells the directory and every friend.
func (n *Node) RotateKey(ctx context.Context) error {
	u, err := n.running()
	if err != nil {
		return err
	}
	// The rotation is on disk once rotate writes it: finish even if the
	// caller goes.
	return u.keys.rotate(context.WithoutCancel(ctx))
}

// rotate makes and stores a new identity key and its rotation statement,
// then a prekey signed by it (which tells friends and the directory).
func (k *keyring) rotate(ctx context.Context) error {
	k.rotateMu.Lock()
	defer k.rotateMu.Unlock()
	cur := k.identity()
	next, err := k.cfg.NewKey(cur.Public().Bits())
	if err != nil {
		return fmt.Errorf("node: generate identity key: %w", err)
	}
	now := k.cfg.Now()
	k.mu.Lock()
	seq := uint64(1)
	if len(k.chain) > 0 {
		seq = k.chain[len(k.chain)-1].Seq + 1
	}
	k.mu.Unlock()
	r, err := protocol.NewRotation(k.me, cur, next, seq, now)
	if err != nil {
		return fail(ErrInvalid, "%v", err)
	}
	until := now.Add(k.cfg.KeyGrace)
	if err := k.st.RotateIdentity(ctx, next, r, until); err != nil {
		return fmt.Errorf("node: rotate identity: %w", err)
	}
	k.mu.Lock()
	k.key = next
	k.chain = append(k.chain, r)
	k.retired[cur.Public().ID()] = retiredKey{key: cur, until: until}
	k.card = nil
	k.mu.Unlock()
	k.log.Info("identity key rotated", "key", next.Public().ID().String(), "seq", seq)
	// A prekey signed by the old key goes; ensurePrekey makes a new one
	// and calls changed (the directory record, friends' cards).
	return k.ensurePrekey(ctx)
}

// purgeRetired forgets retired keys whose grace period is over.
func (k *keyring) purgeRetired(ctx context.Context) {
	now := k.cfg.Now()
	k.mu.Lock()
	for id, r := range k.retired {
		if !now.Before(r.until) {
			delete(k.retired, id)
		}
	}
	k.mu.Unlock()
	if _, err := k.st.PurgeRetiredKeys(ctx, now); err != nil {
		k.log.Warn("retired keys not purged", "err", err)
	}
}
