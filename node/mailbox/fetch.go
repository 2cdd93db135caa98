package mailbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/node/mailbox/pb"
	"github.com/parley-chat/parley/protocol"
)

// fetchBatch is how many envelopes the relay reads from its database at a
// time while sending.
const fetchBatch = 64

// serveFetch serves one fetch: it authorises the peer, sends the held
// envelopes, a CaughtUp frame, and with subscribe each new deposit at
// once, while a second goroutine deletes the envelopes the peer
// acknowledges.
func (s *Server) serveFetch(ctx context.Context, st network.Stream, r *bufio.Reader, f *pb.Fetch) {
	user, err := recipientID(f.GetRecipient())
	if err == nil {
		err = s.authorise(ctx, user, st.Conn().RemotePeer())
	}
	s.met.fetch(codeFor(err))
	if werr := s.writeResult(st, err); err != nil || werr != nil {
		return
	}
	var wake <-chan struct{}
	if f.GetSubscribe() {
		ch, stop := s.subscribe(user) // before the first scan: no deposit falls between
		defer stop()
		wake = ch
		// A subscriber's connection is not one to trim.
		p, tag := st.Conn().RemotePeer(), fmt.Sprintf("mailbox-%p", ch)
		s.host.ConnManager().Protect(p, tag)
		defer s.host.ConnManager().Unprotect(p, tag)
	}
	sent := newSentSet()
	ended := make(chan error, 1)
	go func() {
		ended <- s.readAcks(st, r, user, !f.GetSubscribe(), sent.acked)
	}()
	first := true
	for {
		n, err := s.sendNew(st, user, sent)
		if err == nil && first {
			first = false
			st.SetWriteDeadline(time.Now().Add(writeTimeout))
			err = writeFrame(st, &pb.ServerFrame{Kind: &pb.ServerFrame_CaughtUp{CaughtUp: &pb.CaughtUp{Held: uint64(n)}}}, maxServerFrame)
		}
		if err != nil {
			s.log.Debug("mailbox fetch: sending", "err", err)
			st.Reset()
			<-ended
			return
		}
		select {
		case <-wake: // nil without subscribe
		case err := <-ended:
			if err != nil {
				s.log.Debug("mailbox fetch ended", "err", err)
				st.Reset()
			}
			return
		case <-ctx.Done():
			st.Reset()
			<-ended
			return
		}
	}
}

// sendNew sends user's held envelopes not yet sent in this session and
// returns how many it sent.
func (s *Server) sendNew(st network.Stream, user protocol.ID, sent *sentSet) (int, error) {
	sent.forgetAcked()
	n := 0
	for from := uint64(0); ; {
		items, err := s.db.scan(user, from, fetchBatch, sent.has)
		if err != nil {
			return n, err
		}
		for _, it := range items {
			sent.add(it.id)
			st.SetWriteDeadline(time.Now().Add(writeTimeout))
			f := &pb.ServerFrame{Kind: &pb.ServerFrame_Item{Item: &pb.Item{Id: it.id, Envelope: it.envelope, DepositedAt: it.deposited.Unix()}}}
			if err := writeFrame(st, f, maxServerFrame); err != nil {
				return n, err
			}
			n++
			from = it.id + 1
		}
		if len(items) < fetchBatch {
			return n, nil
		}
	}
}

// readAcks deletes the envelopes the peer acknowledges until the stream
// ends: nil when the peer closed it cleanly, else why it failed. With
// idle, a peer that sends nothing for idleTimeout is cut off.
func (s *Server) readAcks(st network.Stream, r *bufio.Reader, user protocol.ID, idle bool, acked func([]uint64)) error {
	for {
		if idle {
			st.SetReadDeadline(time.Now().Add(idleTimeout))
		} else {
			st.SetReadDeadline(time.Time{})
		}
		var f pb.ClientFrame
		err := readFrame(r, &f, maxClientFrame)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		a := f.GetAck()
		switch {
		case a == nil:
			return fmt.Errorf("%w: a fetch stream carries acks only", ErrMalformed)
		case len(a.GetIds()) > maxAckIDs:
			return fmt.Errorf("%w: ack of %d IDs (max %d)", ErrTooLarge, len(a.GetIds()), maxAckIDs)
		}
		n, err := s.db.remove(user, a.GetIds())
		if err != nil {
			return err
		}
		s.met.ack(n)
		acked(a.GetIds())
	}
}

// sentSet is what one fetch session has sent: each envelope is pending
// until acknowledged, then acknowledged until the next pass of sendNew.
// A scan reads a snapshot, so one that began before an acknowledged
// envelope was deleted still finds it; keeping it in the set until a pass
// that starts after the deletion keeps it from going out twice.
type sentSet struct {
	mu      sync.Mutex
	pending map[uint64]bool // false once acknowledged
}

func newSentSet() *sentSet { return &sentSet{pending: map[uint64]bool{}} }

// add records id as sent.
func (s *sentSet) add(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[id] = true
}

// has reports whether id was sent in this session and not forgotten.
func (s *sentSet) has(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	return ok
}

// acked marks ids acknowledged, once their deletion is committed; an ID
// never sent adds nothing.
func (s *sentSet) acked(ids []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.pending[id]; ok {
			s.pending[id] = false
		}
	}
}

// forgetAcked drops the acknowledged IDs: their deletion was committed
// before they were marked, so no scan that starts after this sees them.
func (s *sentSet) forgetAcked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.pending, func(_ uint64, pending bool) bool { return !pending })
}
