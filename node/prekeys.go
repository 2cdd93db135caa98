package node

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/parley-chat/parley/protocol"
)

// prekeySlack is how long a prekey stays valid after its rotation is due,
// so a friend with our previous card can still use it while the new card
// travels to them.
const prekeySlack = 24 * time.Hour

// prekeyCheck is how often the prekey loop looks for rotation and expiry.
const prekeyCheck = time.Hour

// ensurePrekey makes sure a current prekey exists and is younger than the
// rotation period; it retires the one it replaces, to be deleted once no
// envelope sealed to it can still be accepted.
func (s *session) ensurePrekey(ctx context.Context) error {
	recs, err := s.st.Prekeys(ctx)
	if err != nil {
		return fmt.Errorf("node: prekeys: %w", err)
	}
	now := s.cfg.Now()
	owner := s.identity().Public().ID()
	var cur *protocol.Prekey
	var stale []uint64
	for _, r := range recs {
		if !r.Current() {
			continue
		}
		// A prekey signed by a key before a rotation is replaced too.
		if cur == nil && now.Sub(r.Prekey.Signed.NotBefore) < s.cfg.PrekeyRotation && now.Before(r.Prekey.Signed.NotAfter) &&
			r.Prekey.Signed.Owner == owner {
			cur = r.Prekey
		} else {
			stale = append(stale, r.Prekey.ID())
		}
	}
	rotated := false
	if cur == nil {
		pk, err := protocol.GeneratePrekey(s.identity(), now, s.cfg.PrekeyRotation+prekeySlack)
		if err != nil {
			return fmt.Errorf("node: generate prekey: %w", err)
		}
		if err := s.st.PutPrekey(ctx, pk); err != nil {
			return fmt.Errorf("node: save prekey: %w", err)
		}
		cur, rotated = pk, true
	}
	for _, id := range stale {
		// An envelope sealed to it may arrive until MaxAge after the
		// prekey's last valid instant.
		r, err := s.st.Prekey(ctx, id)
		if err != nil {
			return fmt.Errorf("node: prekey: %w", err)
		}
		if _, err := s.st.RetirePrekey(ctx, id, r.Prekey.Signed.NotAfter.Add(s.cfg.MaxAge)); err != nil {
			return fmt.Errorf("node: retire prekey: %w", err)
		}
	}
	if _, err := s.st.PurgePrekeys(ctx); err != nil {
		return fmt.Errorf("node: purge prekeys: %w", err)
	}
	s.mu.Lock()
	s.prekey = cur
	if rotated {
		s.card = nil
	}
	s.mu.Unlock()
	if rotated && s.outbox != nil {
		s.log.Info("prekey rotated", "prekey", cur.ID())
		s.announceCard(ctx)
		s.kickPublish()
	}
	return nil
}

// prekeyLoop rotates and purges prekeys until ctx ends.
func (s *session) prekeyLoop(ctx context.Context) {
	t := time.NewTicker(prekeyCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.ensurePrekey(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("prekey maintenance failed", "err", err)
			}
			s.purgeRetired(ctx)
		}
	}
}

// prekeyByID is the Opener's prekey lookup: current and retired prekeys
// until they are purged.
func (s *session) prekeyByID(id uint64) (*protocol.Prekey, error) {
	s.mu.Lock()
	cur := s.prekey
	s.mu.Unlock()
	if cur != nil && cur.ID() == id {
		return cur, nil // the common case, without a store read
	}
	r, err := s.st.Prekey(s.life, id)
	if err != nil {
		return nil, protocol.ErrUnknownPrekey
	}
	return r.Prekey, nil
}

// cardMaxAge is how long the own card is reused before it is signed again
// (its address list may have changed).
const cardMaxAge = time.Minute

// ownCard returns the user's signed card: name, device, current
// addresses and current prekey.
func (s *session) ownCard() (*protocol.Card, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	c, name, pk, key, genesis, chain := s.card, s.name, s.prekey, s.key, s.genesis, s.chain
	s.mu.Unlock()
	if c != nil && now.Sub(c.IssuedAt) < cardMaxAge && now.Sub(c.IssuedAt) >= 0 {
		return c, nil
	}
	var signed *protocol.SignedPrekey
	if pk != nil {
		signed = &pk.Signed
	}
	c, err := protocol.NewChainedCard(key, genesis, chain, name, [][]byte{[]byte(s.host.ID())}, s.cardAddrs(), signed, now)
	if err != nil {
		return nil, fmt.Errorf("node: sign own card: %w", err)
	}
	s.mu.Lock()
	s.card = c
	s.mu.Unlock()
	return c, nil
}

// cardAddrs are the listen addresses a card carries: public ones first,
// then private, then loopback, at most protocol.MaxCardAddrs.
func (s *session) cardAddrs() []string {
	var pub, priv, loop []string
	for _, a := range s.host.Addrs() {
		str := a.String()
		if len(str) > protocol.MaxAddrSize {
			continue
		}
		switch {
		case manet.IsIPLoopback(a):
			loop = append(loop, str)
		case manet.IsPublicAddr(a):
			pub = append(pub, str)
		default:
			priv = append(priv, str)
		}
	}
	all := append(append(pub, priv...), loop...)
	if len(all) > protocol.MaxCardAddrs {
		all = all[:protocol.MaxCardAddrs]
	}
	return all
}

// cardAddrInfo turns a card's devices and addresses into dialable peers.
// An address with a /p2p component counts only for that device.
func cardAddrInfo(c *protocol.Card) []peer.AddrInfo {
	var infos []peer.AddrInfo
	for _, d := range c.Devices {
		id, err := peer.IDFromBytes(d)
		if err != nil {
			continue
		}
		info := peer.AddrInfo{ID: id}
		for _, s := range c.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				continue
			}
			transport, pid := peer.SplitAddr(a)
			if transport == nil || (pid != "" && pid != id) {
				continue
			}
			info.Addrs = append(info.Addrs, transport)
		}
		infos = append(infos, info)
	}
	return infos
}
