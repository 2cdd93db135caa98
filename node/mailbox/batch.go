package mailbox

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/node/mailbox/pb"
	"github.com/parley-chat/parley/protocol"
)

// A pipelined deposit stream is stored in batches: the deposits whose
// frames have already arrived when the relay gets to them are held in one
// transaction, one synced write, instead of one each (a depositor's
// backlog of 100 envelopes took 100 syncs in a row). Bounds of a batch:
const (
	maxDepositBatch      = 64
	maxDepositBatchBytes = 1 << 20
	// depositReadBuffer is the read buffer of a deposit stream from its
	// second deposit on, so that a few dozen envelopes of a pipeline can
	// be waiting in it (a stream of one deposit keeps the small one).
	depositReadBuffer = 64 << 10
)

// serveDeposits answers a pipeline of deposits, first the one already
// read. A refusal ends the pipeline: it is answered, and then the stream
// is closed, so no deposit after a refused one is held (the recipient
// gets a depositor's envelopes in the order deposited, with no gap),
// even one already read in the same batch. The depositor deposits the
// rest again on a new stream.
func (s *Server) serveDeposits(st network.Stream, r *bufio.Reader, d *pb.Deposit) {
	from := st.Conn().RemotePeer()
	s.met.depositStream()
	batch, grown := []*pb.Deposit{d}, false
	for {
		// The frames already here join the batch; a frame that cannot be
		// read ends the pipeline after the batch before it.
		var stop error
		size := len(d.GetEnvelope())
		for len(batch) < maxDepositBatch && size < maxDepositBatchBytes && frameBuffered(r) {
			next, err := readDeposit(r)
			if err != nil {
				stop = err
				break
			}
			batch = append(batch, next)
			size += len(next.GetEnvelope())
		}
		held, err := s.depositBatch(from, batch)
		for range held {
			s.met.deposit(codeFor(nil))
			if s.writeResult(st, nil) != nil {
				st.Reset()
				return
			}
		}
		if err == nil && stop != nil {
			s.refuseFrame(st, stop, s.met.deposit)
			return
		}
		if err != nil {
			s.met.deposit(codeFor(err))
			if s.writeResult(st, err) != nil {
				st.Reset()
			}
			return // handle closes the stream; what follows is not read
		}
		st.SetReadDeadline(time.Now().Add(idleTimeout))
		if d, err = readDeposit(r); err != nil {
			s.refuseFrame(st, err, s.met.deposit)
			return
		}
		if !grown {
			// A pipeline, not a single deposit: a read buffer that holds
			// more of it, with what came so far.
			inner := r
			r, grown = bufio.NewReaderSize(inner, depositReadBuffer), true
			if inner.Buffered() > 0 {
				r.Peek(1) // does not wait: inner has bytes
			}
		}
		batch = append(batch[:0], d)
	}
}

// readDeposit reads the next frame of a deposit stream, which must be a
// deposit.
func readDeposit(r *bufio.Reader) (*pb.Deposit, error) {
	var f pb.ClientFrame
	if err := readFrame(r, &f, maxClientFrame); err != nil {
		return nil, err
	}
	d := f.GetDeposit()
	if d == nil {
		return nil, fmt.Errorf("%w: a deposit stream carries deposits only", ErrMalformed)
	}
	return d, nil
}

// frameBuffered reports whether r's buffer holds a whole frame, so that
// reading it does not wait for the network.
func frameBuffered(r *bufio.Reader) bool {
	b, _ := r.Peek(r.Buffered())
	n, k := binary.Uvarint(b)
	return k > 0 && n <= uint64(len(b)-k)
}

// depositBatch holds the deposits of batch in order, in one synced
// write, up to the first it refuses: held is how many it holds, and err
// why the next one is refused (nil when all are held). A write that
// fails holds none of them.
func (s *Server) depositBatch(from peer.ID, batch []*pb.Deposit) (held int, err error) {
	now := s.now()
	accepted := make([]heldDeposit, 0, len(batch))
	for _, d := range batch {
		var h heldDeposit
		if h, err = s.admit(from, d, now); err != nil {
			break
		}
		accepted = append(accepted, h)
	}
	if len(accepted) == 0 {
		return 0, err
	}
	if werr := s.db.putAll(from, accepted, now, s.lim); werr != nil {
		return 0, werr
	}
	s.met.depositWrite()
	for i, h := range accepted {
		if i == 0 || h.user != accepted[i-1].user {
			s.notify(h.user)
		}
	}
	return len(accepted), err
}

// heldDeposit is a deposit admitted and counted in, with its ID.
type heldDeposit struct {
	user     protocol.ID
	id       uint64
	envelope []byte
}

// admit checks one deposit and counts it in (db.reserve), or says why it
// is refused.
func (s *Server) admit(from peer.ID, d *pb.Deposit, now time.Time) (heldDeposit, error) {
	user, err := recipientID(d.GetRecipient())
	if err != nil {
		return heldDeposit{}, err
	}
	env := d.GetEnvelope()
	switch {
	case len(env) == 0:
		return heldDeposit{}, fmt.Errorf("%w: empty envelope", ErrMalformed)
	case len(env) > MaxEnvelopeSize:
		return heldDeposit{}, fmt.Errorf("%w: envelope of %d bytes (max %d)", ErrTooLarge, len(env), MaxEnvelopeSize)
	}
	if ok, wait := s.rate.take(from, now); !ok {
		return heldDeposit{}, &RefusedError{Code: CodeRateLimited, RetryAfter: wait}
	}
	if !s.db.registered(user, now) {
		return heldDeposit{}, &RefusedError{Code: CodeUnknown}
	}
	id, err := s.db.reserve(user, from, int64(len(env)), s.lim)
	if err != nil {
		return heldDeposit{}, err
	}
	return heldDeposit{user: user, id: id, envelope: env}, nil
}

// putAll writes the rows of deposits counted in by reserve, in one synced
// transaction; if it fails, their counts are given back.
func (d *db) putAll(dep peer.ID, hs []heldDeposit, now time.Time, lim Limits) error {
	err := d.bdb.Update(func(txn *badger.Txn) error {
		for _, h := range hs {
			mk, mv, ek, ev := rows(h.user, dep, h.envelope, h.id, now, lim.TTL)
			if err := txn.Set(mk, mv); err != nil {
				return err
			}
			if err := txn.Set(ek, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		d.mu.Lock()
		for _, h := range hs {
			d.sub(h.user, dep, int64(len(h.envelope)))
		}
		d.mu.Unlock()
		return fmt.Errorf("mailbox: storing envelopes: %w", err)
	}
	return nil
}
