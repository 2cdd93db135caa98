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
// then it is deleted. Friends learn the new key from the directory record
// (published at once) and from the new card sent to them; their nodes
// accept it because the chain leads from the key they pinned.

// identity is the current identity key.
func (s *session) identity() *protocol.PrivateKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// oldKey is the Opener's lookup of retired identity keys.
func (s *session) oldKey(id protocol.ID) *protocol.PrivateKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.retired[id]; ok && s.cfg.Now().Before(r.until) {
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
func (s *session) loadKeys(ctx context.Context) error {
	if _, err := s.st.PurgeRetiredKeys(ctx, s.cfg.Now()); err != nil {
		return fmt.Errorf("node: purge retired keys: %w", err)
	}
	chain, err := s.st.KeyChain(ctx)
	if err != nil {
		return fmt.Errorf("node: key chain: %w", err)
	}
	old, err := s.st.RetiredKeys(ctx)
	if err != nil {
		return fmt.Errorf("node: retired keys: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.genesis, s.chain = s.st.GenesisKey(), chain
	for _, r := range old {
		s.retired[r.Key.Public().ID()] = retiredKey{key: r.Key, until: r.Until}
	}
	return nil
}

// RotateKey replaces the identity key by a new one (of the same size),
// signed by the old one, and tells the directory and every friend.
func (n *Node) RotateKey(ctx context.Context) error {
	s, err := n.session()
	if err != nil {
		return err
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	cur := s.identity()
	next, err := s.cfg.NewKey(cur.Public().Bits())
	if err != nil {
		return fmt.Errorf("node: generate identity key: %w", err)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	seq := uint64(1)
	if len(s.chain) > 0 {
		seq = s.chain[len(s.chain)-1].Seq + 1
	}
	s.mu.Unlock()
	r, err := protocol.NewRotation(s.me, cur, next, seq, now)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	until := now.Add(s.cfg.KeyGrace)
	// The rotation is on disk from here: finish even if the caller goes.
	ctx = context.WithoutCancel(ctx)
	if err := s.st.RotateIdentity(ctx, next, r, until); err != nil {
		return fmt.Errorf("node: rotate identity: %w", err)
	}
	s.mu.Lock()
	s.key = next
	s.chain = append(s.chain, r)
	s.retired[cur.Public().ID()] = retiredKey{key: cur, until: until}
	s.card = nil
	s.mu.Unlock()
	s.log.Info("identity key rotated", "key", next.Public().ID().String(), "seq", seq)
	// A prekey signed by the old key goes; ensurePrekey makes a new one,
	// publishes the record and sends friends the new card.
	if err := s.ensurePrekey(ctx); err != nil {
		return err
	}
	s.kickPublish()
	return nil
}

// purgeRetired forgets retired keys whose grace period is over.
func (s *session) purgeRetired(ctx context.Context) {
	now := s.cfg.Now()
	s.mu.Lock()
	for id, r := range s.retired {
		if !now.Before(r.until) {
			delete(s.retired, id)
		}
	}
	s.mu.Unlock()
	if _, err := s.st.PurgeRetiredKeys(ctx, now); err != nil {
		s.log.Warn("retired keys not purged", "err", err)
	}
}
