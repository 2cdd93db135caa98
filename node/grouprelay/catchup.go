package grouprelay

import (
	"bufio"
	"context"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// Catching up: a relay that was away (down, restarted, cut off) misses
// what members posted meanwhile, and gossipsub does not bring it back.
// So the relay asks every peer that joins one of its topics — after a
// restart, every member it meets again — on RelaySyncID for the messages
// of its ticket's chains from the first iteration it misses, presenting
// its ticket (protocol.RelaySyncRequest; members answer a ticket of their
// epoch and topic signed by an admin chain). What comes back is checked
// as the topic validator checks (check, not live) and stored once (the
// store is keyed by chain and iteration).

// maxFetchRounds bounds the requests to one peer per join: each brings at
// most protocol.MaxSyncMessages.
const maxFetchRounds = 8

// catchUp asks each peer that joins topic name for what the relay missed,
// one peer at a time, until ctx ends.
func (s *Server) catchUp(ctx context.Context, name string, peers *pubsub.TopicEventHandler) {
	for {
		ev, err := peers.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type != pubsub.PeerJoin {
			continue
		}
		n, err := s.fetch(ctx, name, ev.Peer)
		switch {
		case err != nil:
			s.log.Debug("group relay: relay sync failed", "peer", ev.Peer.String(), "err", err)
		case n > 0:
			s.log.Debug("group relay: caught up", "peer", ev.Peer.String(), "messages", n)
		}
	}
}

// fetch asks peer p for the messages of topic name the relay misses and
// stores those that pass check; it returns how many it stored.
func (s *Server) fetch(ctx context.Context, name string, p peer.ID) (int, error) {
	total := 0
	for range maxFetchRounds {
		s.mu.Lock()
		t := s.topics[name]
		var tk *protocol.RelayTicket
		var k topicKey
		if t != nil && t.held.superseded.IsZero() {
			tk, k = t.held.ticket, t.key
		}
		s.mu.Unlock()
		if tk == nil {
			return total, nil
		}
		req := &protocol.RelaySyncRequest{Ticket: tk}
		for _, key := range tk.Keys {
			from, err := s.db.firstMissing(k, key.Chain)
			if err != nil {
				return total, err
			}
			req.Wants = append(req.Wants, protocol.RelaySyncWant{Chain: key.Chain, From: from})
		}
		msgs, err := s.ask(ctx, p, req)
		if err != nil {
			return total, err
		}
		stored := 0
		for _, m := range msgs {
			// Parsed once, as the response was read: the encoding is
			// made again (canonical, so the same bytes) to be stored.
			raw := m.Marshal()
			r, m := s.checkWith(name, p, len(raw), false, func() (*protocol.GroupMessage, error) { return m, nil })
			switch {
			case r != pubsub.ValidationAccept:
				s.met.fetched("refused")
			case s.store(k, m, raw):
				s.met.fetched("stored")
				s.fetchedN.Add(1)
				stored++
			default:
				s.met.fetched("duplicate")
			}
		}
		total += stored
		if stored == 0 || len(msgs) < protocol.MaxSyncMessages {
			return total, nil
		}
	}
	return total, nil
}

// ask sends one relay sync request to p and reads the answer.
func (s *Server) ask(ctx context.Context, p peer.ID, req *protocol.RelaySyncRequest) ([]*protocol.GroupMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	st, err := s.host.NewStream(ctx, p, RelaySyncID)
	if err != nil {
		return nil, fmt.Errorf("grouprelay: relay sync: %w", err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(streamTimeout))
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if err := protocol.WriteRelaySyncRequest(st, req); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("grouprelay: relay sync: %w", err)
	}
	_ = st.CloseWrite()
	msgs, err := protocol.ReadGroupSyncResponse(bufio.NewReader(st))
	if err != nil {
		return nil, fmt.Errorf("grouprelay: relay sync answer: %w", err)
	}
	return msgs, nil
}

// store stores one admitted message of topic k, once; it reports whether
// it was new.
func (s *Server) store(k topicKey, m *protocol.GroupMessage, raw []byte) bool {
	stored, dropped, err := s.db.put(k, m, raw, s.now(), s.lim)
	switch {
	case err != nil:
		s.log.Warn("group relay: storing a message", "err", err)
	case stored:
		s.met.stored()
	}
	if dropped > 0 {
		s.met.dropped("limit", dropped)
	}
	return stored
}
