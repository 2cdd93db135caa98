package mailbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	p2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/parley-chat/parley/node/mailbox/pb"
	"github.com/parley-chat/parley/protocol"
)

// Handler takes one envelope fetched from a mailbox. It returns nil only
// once the envelope is stored durably — or is refused for good (it does
// not open, it is a replay): then the relay deletes it. An error leaves
// the envelope at the relay, to be fetched again; the fetch ends.
type Handler func(ctx context.Context, envelope []byte) error

// Client is the user node's side of the mailbox protocol, over its host.
type Client struct {
	host host.Host
}

// NewClient returns a client that opens streams from h.
func NewClient(h host.Host) *Client { return &Client{host: h} }

// open opens a mailbox stream to relay that ctx resets, on the first of
// ids (default ID) the relay speaks.
func (c *Client) open(ctx context.Context, relay peer.ID, ids ...p2pproto.ID) (network.Stream, *bufio.Reader, func(), error) {
	if len(ids) == 0 {
		ids = []p2pproto.ID{ID}
	}
	st, err := c.host.NewStream(ctx, relay, ids...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mailbox: opening stream to %s: %w", relay, err)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	return st, bufio.NewReader(st), func() { stop(); st.Close() }, nil
}

// request writes f and reads the Result.
func request(ctx context.Context, st network.Stream, r *bufio.Reader, f *pb.ClientFrame) error {
	if err := writeFrame(st, f, maxClientFrame); err != nil {
		return err
	}
	return awaitResult(ctx, r)
}

// awaitResult reads one Result: nil for CodeOK, its *RefusedError, or the
// stream's error.
func awaitResult(ctx context.Context, r *bufio.Reader) error {
	var sf pb.ServerFrame
	if err := readFrame(r, &sf, maxServerFrame); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mailbox: %w", ctx.Err())
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("mailbox: reading result: %w", err)
	}
	res := sf.GetResult()
	if res == nil {
		return fmt.Errorf("%w: expected a result", ErrProtocol)
	}
	return refusal(res)
}

// Deposit asks relay to hold envelope for recipient. It returns nil once
// the relay holds it durably, a *RefusedError (matching ErrFull,
// ErrSenderQuota, ErrRateLimited, ErrUnknown, ...) if it refused, or the
// network's error. It is DepositAll of one envelope.
func (c *Client) Deposit(ctx context.Context, relay peer.ID, recipient protocol.ID, envelope []byte) error {
	_, err := c.DepositAll(ctx, relay, recipient, [][]byte{envelope})
	return err
}

// Register asks relay to accept deposits for user, whose device this host
// must be (listed in user's current directory record). A fetch registers
// too; registration lasts the relay's registration period after the last.
func (c *Client) Register(ctx context.Context, relay peer.ID, user protocol.ID) error {
	st, r, done, err := c.open(ctx, relay)
	if err != nil {
		return err
	}
	defer done()
	return request(ctx, st, r, &pb.ClientFrame{Kind: &pb.ClientFrame_Register{Register: &pb.Register{Recipient: user[:]}}})
}

// Fetch takes every envelope relay holds for user, hands each to handle
// and acknowledges it when handle returns nil. It returns how many it
// handled.
func (c *Client) Fetch(ctx context.Context, relay peer.ID, user protocol.ID, handle Handler) (int, error) {
	return c.fetch(ctx, relay, user, false, handle, nil)
}

// Subscribe is Fetch that goes on: after the envelopes held, the relay
// pushes each new deposit at once. caughtUp, if not nil, is called once
// the envelopes held when it began are handled. It returns when ctx ends
// (ctx's error), handle fails, or the stream breaks; callers loop with a
// backoff (as the node's mailboxes part does).
func (c *Client) Subscribe(ctx context.Context, relay peer.ID, user protocol.ID, handle Handler, caughtUp func()) error {
	_, err := c.fetch(ctx, relay, user, true, handle, caughtUp)
	return err
}

func (c *Client) fetch(ctx context.Context, relay peer.ID, user protocol.ID, subscribe bool, handle Handler, caughtUp func()) (int, error) {
	st, r, done, err := c.open(ctx, relay)
	if err != nil {
		return 0, err
	}
	defer done()
	if err := request(ctx, st, r, &pb.ClientFrame{Kind: &pb.ClientFrame_Fetch{Fetch: &pb.Fetch{Recipient: user[:], Subscribe: subscribe}}}); err != nil {
		return 0, err
	}
	n := 0
	for {
		var sf pb.ServerFrame
		if err := readFrame(r, &sf, maxServerFrame); err != nil {
			switch {
			case ctx.Err() != nil:
				return n, fmt.Errorf("mailbox: %w", ctx.Err())
			case errors.Is(err, io.EOF) && !subscribe:
				return n, nil // the relay closed after our close
			case errors.Is(err, io.EOF):
				return n, fmt.Errorf("mailbox: relay ended the subscription: %w", io.ErrUnexpectedEOF)
			}
			return n, fmt.Errorf("mailbox: fetching: %w", err)
		}
		switch k := sf.GetKind().(type) {
		case *pb.ServerFrame_Item:
			if err := handle(ctx, k.Item.GetEnvelope()); err != nil {
				// Close, not reset: the acks already written must arrive.
				st.CloseWrite()
				return n, fmt.Errorf("mailbox: handling envelope: %w", err)
			}
			n++
			ack := &pb.ClientFrame{Kind: &pb.ClientFrame_Ack{Ack: &pb.Ack{Ids: []uint64{k.Item.GetId()}}}}
			if err := writeFrame(st, ack, maxClientFrame); err != nil {
				return n, err
			}
		case *pb.ServerFrame_CaughtUp:
			if caughtUp != nil {
				caughtUp()
				caughtUp = nil
			}
			if !subscribe {
				if err := st.CloseWrite(); err != nil {
					return n, fmt.Errorf("mailbox: closing fetch: %w", err)
				}
			}
		default:
			st.Reset()
			return n, fmt.Errorf("%w: unexpected frame in a fetch", ErrProtocol)
		}
	}
}
