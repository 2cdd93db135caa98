package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// ErrNoMailbox is what Config.Deposit returns (wrapped) for a recipient
// without a mailbox relay.
var ErrNoMailbox = errors.New("outbox: recipient has no mailbox relay")

// deposit hands what is queued after the cursor to the recipient's
// mailbox relays, in order, a window at a time (one Config.Deposit, one
// pipeline), settling each entry held as sent with path mailbox and each
// that does not parse as failed, until the queue is empty or a deposit
// fails: then the entries up to the first not held are settled, and the
// cursor moves past them only, so that one and those after it go again,
// in order. It runs when the recipient could not be reached (no link is
// open, so nothing is in flight), and stops between windows when a Rush
// makes the courier dial next. It records in c.mailbox whether
// everything went.
func (c *courier) deposit(ctx context.Context) {
	dep := c.o.cfg.Deposit
	c.mailbox = false
	if dep == nil {
		return
	}
	if a := c.o.cfg.Allowed; a != nil && !a(c.to) {
		return
	}
	for ctx.Err() == nil {
		es, err := c.o.cfg.Store.OutboxQueue(ctx, c.to, c.cursor, c.o.cfg.Window)
		if err != nil {
			if ctx.Err() == nil {
				c.o.cfg.Logger.Error("outbox read failed", "to", c.to.String(), "err", err)
			}
			return
		}
		if c.dialsNext() {
			// The recipient came online (Rush) while the backlog went to
			// its mailbox: what is left goes on the dial that follows.
			// Asked after the read, so that nothing queued after the Rush
			// is deposited.
			return
		}
		if len(es) == 0 {
			c.mailbox = true
			return
		}
		// Frame every entry; those that do not parse (bad[i]) are settled
		// failed in their place in the order.
		bad := make([]error, len(es))
		var batch []*protocol.Delivery
		for i, e := range es {
			d, err := c.o.cfg.Frame(e)
			if err != nil {
				bad[i] = err
				continue
			}
			batch = append(batch, d)
		}
		var (
			held   int
			failed error
		)
		if len(batch) > 0 {
			held, failed = dep(ctx, c.to, batch)
			held = max(0, min(held, len(batch)))
			if failed == nil && held < len(batch) {
				failed = fmt.Errorf("outbox: deposit held %d of %d", held, len(batch))
			}
			// Counted before the settle makes them leave the queue, so
			// that whoever sees them gone sees them counted.
			c.o.stats.deposit(held)
		}
		// Settle, in order, up to the first entry not held.
		var (
			settles []store.Settle
			last    uint64
			n       int // deposits settled
		)
		for i, e := range es {
			if bad[i] != nil {
				c.o.cfg.Logger.Error("outbox entry does not parse; dropping it", "msg", e.MsgID.String(), "err", bad[i])
				settles = append(settles, store.Settle{MsgID: e.MsgID, Status: store.StatusFailed, Error: "unreadable outbox entry"})
				last = e.Seq
				continue
			}
			if n == held {
				break
			}
			settles = append(settles, store.Settle{MsgID: e.MsgID, Status: store.StatusSent, Path: store.PathMailbox})
			last = e.Seq
			n++
		}
		if len(settles) > 0 {
			// Held by a relay, the entries leave the queue. If this write
			// fails they stay queued and go again (directly or to a
			// mailbox): the recipient stores a copy once (seen IDs).
			if err := c.o.finish(ctx, settles); err != nil {
				if ctx.Err() == nil {
					c.o.cfg.Logger.Error("outbox settle after deposit failed", "to", c.to.String(), "err", err)
				}
				return
			}
			c.cursor = last
		}
		if failed != nil {
			if !errors.Is(failed, ErrNoMailbox) && ctx.Err() == nil {
				c.o.cfg.Logger.Debug("deposit failed", "to", c.to.String(), "held", held, "err", failed)
			}
			return
		}
	}
}
