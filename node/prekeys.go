package node

import (
	"context"
	"fmt"
	"slices"
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
func (k *keyring) ensurePrekey(ctx context.Context) error {
	recs, err := k.st.Prekeys(ctx)
	if err != nil {
		return fmt.Errorf("node: prekeys: %w", err)
	}
	now := k.cfg.Now()
	owner := k.identity().Public().ID()
	var cur *protocol.Prekey
	var stale []uint64
	for _, r := range recs {
		if !r.Current() {
			continue
		}
		// A prekey signed by a key before a rotation is replaced too.
		if cur == nil && now.Sub(r.Prekey.Signed.NotBefore) < k.cfg.PrekeyRotation && now.Before(r.Prekey.Signed.NotAfter) &&
			r.Prekey.Signed.Owner == owner {
			cur = r.Prekey
		} else {
			stale = append(stale, r.Prekey.ID())
		}
	}
	rotated := false
	if cur == nil {
		pk, err := protocol.GeneratePrekey(k.identity(), now, k.cfg.PrekeyRotation+prekeySlack)
		if err != nil {
			return fmt.Errorf("node: generate prekey: %w", err)
		}
		if err := k.st.PutPrekey(ctx, pk); err != nil {
			return fmt.Errorf("node: save prekey: %w", err)
		}
		cur, rotated = pk, true
	}
	for _, id := range stale {
		// An envelope sealed to it may arrive until MaxAge after the
		// prekey's last valid instant.
		r, err := k.st.Prekey(ctx, id)
		if err != nil {
			return fmt.Errorf("node: prekey: %w", err)
		}
		if _, err := k.st.RetirePrekey(ctx, id, r.Prekey.Signed.NotAfter.Add(k.cfg.MaxAge)); err != nil {
			return fmt.Errorf("node: retire prekey: %w", err)
		}
	}
	if _, err := k.st.PurgePrekeys(ctx); err != nil {
		return fmt.Errorf("node: purge prekeys: %w", err)
	}
	k.mu.Lock()
	k.prekey = cur
	if rotated {
		k.card = nil
	}
	k.mu.Unlock()
	if rotated && k.changed != nil {
		k.log.Info("prekey rotated", "prekey", cur.ID())
		k.changed(ctx)
	}
	return nil
}

// serve rotates and purges prekeys until ctx ends.
func (k *keyring) serve(ctx context.Context) error {
	t := time.NewTicker(prekeyCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := k.ensurePrekey(ctx); err != nil && ctx.Err() == nil {
				k.log.Error("prekey maintenance failed", "err", err)
			}
			k.purgeRetired(ctx)
		}
	}
}

// prekeyByID is the Opener's prekey lookup: current and retired prekeys
// until they are purged.
func (k *keyring) prekeyByID(id uint64) (*protocol.Prekey, error) {
	k.mu.Lock()
	cur := k.prekey
	k.mu.Unlock()
	if cur != nil && cur.ID() == id {
		return cur, nil // the common case, without a store read
	}
	r, err := k.st.Prekey(context.Background(), id) // the Opener gives no context; a local read
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
func (k *keyring) ownCard() (*protocol.Card, error) {
	now := k.cfg.Now()
	k.mu.Lock()
	c, name, pk, key, genesis, chain := k.card, k.name, k.prekey, k.key, k.genesis, k.chain
	k.mu.Unlock()
	if c != nil && now.Sub(c.IssuedAt) < cardMaxAge && now.Sub(c.IssuedAt) >= 0 {
		return c, nil
	}
	var signed *protocol.SignedPrekey
	if pk != nil {
		signed = &pk.Signed
	}
	c, err := protocol.NewChainedCard(key, genesis, chain, name, [][]byte{[]byte(k.host.ID())}, k.cardAddrs(), signed, now)
	if err != nil {
		return nil, fmt.Errorf("node: sign own card: %w", err)
	}
	k.mu.Lock()
	k.card = c
	k.mu.Unlock()
	return c, nil
}

// cardAddrs are the addresses a card carries: public listen addresses
// first, then circuit addresses through the relays holding a slot for
// this device, then private, then loopback, at most
// protocol.MaxCardAddrs.
func (k *keyring) cardAddrs() []string {
	var pub, circuit, priv, loop []string
	if k.circuits != nil {
		for _, a := range k.circuits() {
			if str := a.String(); len(str) <= protocol.MaxAddrSize {
				circuit = append(circuit, str)
			}
		}
	}
	for _, a := range k.host.Addrs() {
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
	all := slices.Concat(pub, circuit, priv, loop)
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
