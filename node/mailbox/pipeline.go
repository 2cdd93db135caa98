package mailbox

import (
	"bufio"
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/node/mailbox/pb"
	"github.com/parley-chat/parley/protocol"
)

// Pipeline bounds: one deposit stream carries at most MaxPipeline
// envelopes and MaxPipelineBytes bytes of them (at least one envelope);
// DepositAll opens a new stream, after the previous one's results, for
// what is left.
const (
	MaxPipeline      = 256
	MaxPipelineBytes = 4 << 20
)

// DepositAll asks relay to hold envelopes for recipient, in order, over
// one stream (more only past the pipeline bounds): it writes the deposits
// without waiting for their results, then reads the results in order.
// held is how many leading envelopes the relay holds durably. err is nil
// when it holds them all; else the refusal of envelopes[held] (a
// *RefusedError, matching ErrFull, ErrRateLimited, ... with errors.Is),
// or the network's error. The relay holds nothing after a refused
// deposit of the same stream (it closes the stream), so the envelopes
// held are always a prefix: deposit envelopes[held:] again later.
func (c *Client) DepositAll(ctx context.Context, relay peer.ID, recipient protocol.ID, envelopes [][]byte) (held int, err error) {
	for held < len(envelopes) {
		n, size := 0, 0
		for _, e := range envelopes[held:] {
			if len(e) > MaxEnvelopeSize {
				break
			}
			if n == MaxPipeline || (n > 0 && size+len(e) > MaxPipelineBytes) {
				break
			}
			n, size = n+1, size+len(e)
		}
		if n == 0 {
			e := envelopes[held]
			return held, fmt.Errorf("%w: envelope of %d bytes (max %d)", ErrTooLarge, len(e), MaxEnvelopeSize)
		}
		k, err := c.pipeline(ctx, relay, recipient, envelopes[held:held+n])
		held += k
		if err != nil {
			return held, err
		}
	}
	return held, nil
}

// pipeline deposits envelopes over one stream (only the first to a
// relay that does not speak IDPipelined; DepositAll goes on with the
// rest): a goroutine writes them
// (and closes its side), while this one reads the results, so neither
// waits on the other's flow control. After a refusal or a broken stream
// the stream is reset, which ends a write blocked on a relay that stopped
// reading.
func (c *Client) pipeline(ctx context.Context, relay peer.ID, recipient protocol.ID, envelopes [][]byte) (int, error) {
	st, r, done, err := c.open(ctx, relay, IDPipelined, ID)
	if err != nil {
		return 0, err
	}
	defer done()
	if st.Protocol() != IDPipelined {
		// A relay that may hold deposits after a refused one: one at a
		// time, each on its own stream.
		envelopes = envelopes[:1]
	}
	wrote := make(chan error, 1)
	go func() { wrote <- writeDeposits(st, recipient, envelopes) }()
	held := 0
	for ; held < len(envelopes); held++ {
		if err = awaitResult(ctx, r); err != nil {
			break
		}
	}
	if err != nil {
		st.Reset()
	}
	// With every deposit answered, every frame was written: the writer's
	// error can only be its close, which changes nothing held.
	<-wrote
	return held, err
}

// writeDeposits writes one Deposit frame per envelope, buffered, then
// closes the stream for writing.
func writeDeposits(st network.Stream, recipient protocol.ID, envelopes [][]byte) error {
	w := bufio.NewWriterSize(st, 64<<10)
	for _, e := range envelopes {
		f := &pb.ClientFrame{Kind: &pb.ClientFrame_Deposit{Deposit: &pb.Deposit{Recipient: recipient[:], Envelope: e}}}
		if err := writeFrame(w, f, maxClientFrame); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("mailbox: write frame: %w", err)
	}
	return st.CloseWrite()
}
