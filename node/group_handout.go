package node

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
	"golang.org/x/sync/errgroup"
)

// Hand-outs: what a new epoch sends to the other members (the state, from
// its signer; each member's new sender key), hundreds of controls in a
// large group. adopt writes them as one job with the state
// (store.PutGroupStateHandout) and returns; a single worker (runHandouts)
// works the jobs off in the background, in batches of handoutBatch items:
// a batch's recipients are resolved (friends from the cache, other
// members from the rosterBook, looked up in parallel), its envelopes
// sealed in parallel on every core (an RSA-PSS signature each, the bulk
// of the cost), then queued in the outbox with the job's progress in one
// transaction (store.QueueHandoutsAsync; the next batch is sealed while
// it commits), and the couriers told. So a rekey
// costs one sync per batch rather than one per control, holds no group
// lock and blocks no API call, and survives a restart: the job resumes at
// the first item not queued. A recipient whose key cannot be found now
// (the directory unreachable) stays in the job, tried again with backoff
// up to handoutTries passes (about 50 minutes).

const (
	// handoutBatch is how many controls are sealed and queued together.
	handoutBatch = 64
	// handoutTries bounds the passes over a job's items left behind.
	handoutTries = 16
	// handoutLookups bounds the directory lookups of a batch in flight.
	handoutLookups = 8
)

// handoutWork is the groups part's hand-out state. seal and queued are
// set at wiring (nil: items go one by one through groups.direct, as in
// tests without a node); signal wakes the worker.
type handoutWork struct {
	// seal seals a batch's items with bodies; it returns the envelopes
	// to queue, in item order, and the items to try again later. An item
	// in neither is dropped (a blocked member).
	seal func(ctx context.Context, bodies map[protocol.Kind][]byte, items []store.HandoutItem) ([]store.OutboxEntry, []store.HandoutItem)
	// queued tells the outbox what was queued.
	queued func(es []store.OutboxEntry)
	signal chan struct{}
	// kicks counts the jobs made (and the start, which owes a pass);
	// clear is the count a pass had seen when it found no job left. So
	// every job made before is queued when clear >= kicks (handoutsIdle).
	kicks, clear atomic.Uint64
}

// handoutsIdle reports whether every job made so far has been queued.
func (g *groups) handoutsIdle() bool { return g.ho.clear.Load() >= g.ho.kicks.Load() }

// kickHandouts wakes the worker.
func (g *groups) kickHandouts() {
	g.ho.kicks.Add(1)
	select {
	case g.ho.signal <- struct{}{}:
	default:
	}
}

// handoutJob makes the job of a state this user adopts: the state (when
// this user signed it) and own's sender key to every other member, and
// the state to told (members it removed).
func (g *groups) handoutJob(st *protocol.GroupState, own *protocol.SenderChain, told []protocol.ID) (*store.Handout, error) {
	d, err := own.Distribution(st)
	if err != nil {
		return nil, err
	}
	h := &store.Handout{Group: st.Group, Epoch: st.Epoch, Bodies: map[protocol.Kind][]byte{protocol.KindSenderKey: d.Marshal()}}
	signer := st.Signer == g.me
	if signer {
		h.Bodies[protocol.KindGroupState] = st.Marshal()
	}
	for _, m := range st.Members {
		if m.User == g.me {
			continue
		}
		if signer {
			h.Items = append(h.Items, store.HandoutItem{To: m.User, Kind: protocol.KindGroupState})
		}
		h.Items = append(h.Items, store.HandoutItem{To: m.User, Kind: protocol.KindSenderKey})
	}
	if signer {
		for _, t := range told {
			h.Items = append(h.Items, store.HandoutItem{To: t, Kind: protocol.KindGroupState})
		}
	}
	return h, nil
}

// jobKey names a job: its group and epoch.
type jobKey struct {
	group protocol.GroupID
	epoch uint64
}

// runHandouts works the stored jobs off until ctx ends: at start, when
// kicked, and when a job waiting out its backoff is due.
func (g *groups) runHandouts(ctx context.Context) {
	due := map[jobKey]time.Time{}
	for {
		next := g.handoutPass(ctx, due)
		var wake <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(next.Sub(g.now()))
			wake = t.C
		}
		select {
		case <-ctx.Done():
		case <-g.ho.signal:
		case <-wake:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// handoutPass works every job that is due, and returns when the next
// one waiting is (zero: none).
func (g *groups) handoutPass(ctx context.Context, due map[jobKey]time.Time) time.Time {
	var next time.Time
	for ctx.Err() == nil {
		kicks := g.ho.kicks.Load()
		jobs, err := g.st.Handouts(ctx)
		if err != nil {
			if ctx.Err() == nil {
				g.log.Error("group hand-outs unreadable", "err", err)
			}
			return g.now().Add(time.Minute)
		}
		if len(jobs) == 0 {
			g.ho.clear.Store(kicks)
		}
		worked := false
		next = time.Time{}
		for i := range jobs {
			h := &jobs[i]
			k := jobKey{h.Group, h.Epoch}
			if at, ok := due[k]; ok && g.now().Before(at) {
				if next.IsZero() || at.Before(next) {
					next = at
				}
				continue
			}
			worked = true
			left, err := g.workHandout(ctx, h)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					g.log.Warn("group hand-out stopped", "group", h.Group.String(), "epoch", h.Epoch, "err", err)
					due[k] = g.now().Add(time.Minute)
				}
			case left == nil:
				delete(due, k)
			case left.Tries >= handoutTries:
				g.log.Warn("group hand-out given up", "group", h.Group.String(), "epoch", h.Epoch, "left", len(left.Items))
				if err := g.st.DropHandout(ctx, h.Group, h.Epoch); err != nil && ctx.Err() == nil {
					g.log.Error("group hand-out not dropped", "err", err)
				}
				delete(due, k)
			default:
				due[k] = g.now().Add(min(time.Second<<left.Tries, 5*time.Minute))
			}
		}
		if !worked {
			return next
		}
	}
	return next
}

// workHandout queues h's items batch by batch; it returns the job as
// left (nil: done). A batch carries at most handoutBatch items and about
// the store's HandoutBatchBytes of envelopes (a state of a large group
// is tens of kilobytes). The next batch is sealed while the last one is
// being committed, and queued once it is.
func (g *groups) workHandout(ctx context.Context, h *store.Handout) (*store.Handout, error) {
	budget := g.st.HandoutBatchBytes()
	var (
		pend   *store.Pending
		pendEs []store.OutboxEntry
	)
	// settle waits for the batch in the commit queue and tells the outbox.
	settle := func() error {
		if pend == nil {
			return nil
		}
		err := pend.Wait()
		pend = nil
		if err != nil {
			return err
		}
		if g.ho.queued != nil {
			g.ho.queued(pendEs)
		}
		return nil
	}
	for h.Next < len(h.Items) {
		end, size := h.Next, 0
		for end < len(h.Items) && end-h.Next < handoutBatch {
			size += len(h.Bodies[h.Items[end].Kind]) + handoutOverhead
			if size > budget && end > h.Next {
				break
			}
			end++
		}
		batch := h.Items[h.Next:end]
		var es []store.OutboxEntry
		var again []store.HandoutItem
		if g.ho.seal != nil {
			es, again = g.ho.seal(ctx, h.Bodies, batch)
		} else {
			for _, it := range batch {
				if err := g.direct(ctx, it.To, it.Kind, h.Bodies[it.Kind]); err != nil {
					again = append(again, it)
				}
			}
		}
		if err := settle(); err != nil {
			return handoutFailed(h, err)
		}
		if err := ctx.Err(); err != nil {
			return h, err
		}
		rest := *h
		rest.Next = end
		rest.Later = append(slices.Clone(h.Later), again...)
		if end == len(h.Items) && len(rest.Later) > 0 {
			rest.Tries++
		}
		p, err := g.st.QueueHandoutsAsync(ctx, &rest, es)
		if err != nil {
			return h, err
		}
		pend, pendEs, h = p, es, &rest
	}
	if err := settle(); err != nil {
		return handoutFailed(h, err)
	}
	if h.Done() {
		return nil, nil
	}
	// The next pass works what was left behind.
	return &store.Handout{Group: h.Group, Epoch: h.Epoch, Bodies: h.Bodies, Items: h.Later, Tries: h.Tries}, nil
}

// handoutFailed is what workHandout returns when a batch was not
// written: nothing left for a job dropped meanwhile, else the error (the
// store still holds the job as it was before the batch).
func handoutFailed(h *store.Handout, err error) (*store.Handout, error) {
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return h, err
}

// handoutOverhead is what sealing adds to a control's body (RSA-wrapped
// key and signature, prekey, header), about.
const handoutOverhead = 1 << 10

// sealHandouts is the groups part's hand-out sealer: it finds each
// recipient (friends' keys from the cache; other members' records from
// the rosterBook, looked up handoutLookups at a time) and seals the items
// on every core.
func (u *unlocked) sealHandouts(ctx context.Context, bodies map[protocol.Kind][]byte, items []store.HandoutItem) ([]store.OutboxEntry, []store.HandoutItem) {
	rcpts := map[protocol.ID]protocol.Recipient{}
	var later []store.HandoutItem
	var users []protocol.ID
	seen := map[protocol.ID]bool{}
	for _, it := range items {
		if !seen[it.To] {
			seen[it.To] = true
			users = append(users, it.To)
		}
	}
	var mu sync.Mutex
	missing := map[protocol.ID]bool{}
	parallel(len(users), handoutLookups, func(i int) {
		r, err := u.handoutRecipient(ctx, users[i])
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, ErrNotFriend):
			u.log.Info("group control not handed out", "to", users[i].String(), "err", err)
		case err != nil:
			missing[users[i]] = true
			u.log.Debug("group member's key not found; tried again later", "to", users[i].String(), "err", err)
		default:
			rcpts[users[i]] = r
		}
	})
	out := make([]store.OutboxEntry, len(items))
	sender, now := u.keys.sender(), u.cfg.Now()
	parallel(len(items), runtime.GOMAXPROCS(0), func(i int) {
		it := items[i]
		r, ok := rcpts[it.To]
		if !ok {
			return
		}
		env, err := protocol.Seal(sender, r, it.Kind, bodies[it.Kind], now)
		if err != nil {
			u.log.Warn("group control not sealed", "kind", it.Kind.String(), "to", it.To.String(), "err", err)
			return
		}
		out[i] = store.OutboxEntry{MsgID: env.MsgID, Recipient: it.To, Envelope: env.Marshal()}
	})
	es := out[:0]
	for i, e := range out {
		switch {
		case !e.MsgID.IsZero():
			es = append(es, e)
		case missing[items[i].To]:
			later = append(later, items[i])
		}
	}
	return es, later
}

// queuedHandouts tells the outbox of queued hand-outs, once per recipient.
func (u *unlocked) queuedHandouts(es []store.OutboxEntry) {
	told := map[protocol.ID]bool{}
	for _, e := range es {
		if !told[e.Recipient] {
			told[e.Recipient] = true
			u.outbox.Notify(e.Recipient)
		}
	}
}

// parallel runs f(0..n-1) on up to workers goroutines and waits.
func parallel(n, workers int, f func(i int)) {
	var g errgroup.Group
	g.SetLimit(max(workers, 1))
	for i := range n {
		g.Go(func() error { f(i); return nil })
	}
	_ = g.Wait() // f returns no error
}
