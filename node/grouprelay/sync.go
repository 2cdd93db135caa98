package grouprelay

import (
	"bufio"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/protocol"
)

// handleSync answers a group sync request as a member would: the
// requester signs with its own chain key of the epoch, which must be a key
// of the ticket of a topic the relay holds (whatever the topic's state),
// and the relay answers with the ciphertext it stored of the chains asked
// for. Anyone else gets the stream reset and nothing.
func (s *Server) handleSync(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(streamTimeout))
	r, err := protocol.ReadGroupSyncRequest(bufio.NewReader(st))
	if err != nil {
		s.met.sync(false)
		_ = st.Reset()
		return
	}
	s.mu.Lock()
	var t *topic
	if name, ok := s.chains[r.RequesterChain]; ok {
		t = s.topics[name]
	}
	var k topicKey
	ok := t != nil && t.held.ticket.Epoch == r.Epoch && (!t.bound || t.group == r.Group)
	if ok {
		k = t.key
	}
	s.mu.Unlock()
	p := protocol.ChainPublic{Group: r.Group, Epoch: r.Epoch, Sender: r.Requester, Chain: r.RequesterChain}
	if !ok || p.VerifySync(r, []byte(s.host.ID()), s.now()) != nil {
		s.met.sync(false)
		s.log.Debug("group relay: sync request refused", "peer", st.Conn().RemotePeer().String())
		_ = st.Reset()
		return
	}
	var out [][]byte
	for _, w := range r.Wants {
		if len(out) == protocol.MaxSyncMessages {
			break
		}
		msgs, err := s.db.chainMessages(k, w.Chain, w.From, protocol.MaxSyncMessages-len(out))
		if err != nil {
			s.log.Warn("group relay: sync: reading messages", "err", err)
			_ = st.Reset()
			return
		}
		out = append(out, msgs...)
	}
	s.met.sync(true)
	if err := protocol.WriteGroupSyncResponse(st, out); err != nil {
		_ = st.Reset()
	}
}
