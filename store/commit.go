package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maxGroup caps the writes gathered into one transaction.
const maxGroup = 256

// maxKeptBatch is the largest journal batch buffer kept for the next
// transaction.
const maxKeptBatch = 1 << 20

const (
	// lazyWait is how long a lazy write waits for an urgent one to ride
	// with before it is committed on its own.
	lazyWait = 2 * time.Millisecond
	// lingerGap and lingerMax bound how long a group waits for more
	// writes when writers are concurrent (see run).
	lingerGap = 150 * time.Microsecond
	lingerMax = time.Millisecond
)

// write is one write waiting in the commit queue: fn runs inside the
// group's transaction; done receives its outcome once the group is
// committed and synced (or fn failed, and nothing of it was written).
type write struct {
	fn   func(txn *badger.Txn) error
	done chan error
	// lazy marks a write nobody waits on urgently (settling acks): it
	// never starts a commit of its own, but rides with the next urgent
	// write's group, or is committed after lazyWait when none comes.
	lazy bool
}

// committer is the store's commit queue, the one writer of the database:
// it gathers the writes waiting at the moment into one badger transaction
// and one journal record, and goes on with the next group while the
// durability stage syncs (group commit, pipelined). Writes run in the order they were queued,
// each one seeing the effect of those before it, so writes never conflict
// with each other and are never retried against each other.
//
// A write whose fn fails is reported to its caller and leaves no trace:
// the group's transaction is dropped and run again without it (the writes
// before it see the same state as before, so they do the same again). A
// group that grows too big for one badger transaction is committed up to
// the write that overflowed it, which starts the next one.
type committer struct {
	db    *badger.DB
	j     *journal
	d     *durability // the pipeline's second stage: syncs, reports outcomes
	log   *slog.Logger
	queue chan *write
	stop  chan struct{}
	done  chan struct{}

	stats commitStats

	// Owned by run: the urgent writes in the last group and how long it
	// took to commit, which decide whether the next group lingers.
	lastGroup  int
	lastCommit time.Duration
	// cur is the journal batch of the transaction being built; ckpt is
	// closed when the running checkpoint ends (nil: none runs).
	cur   *batch
	batch batch // cur's storage, reused from one transaction to the next
	ckpt  chan struct{}
	// crashBeforeBadger, in tests, leaves every transaction in the
	// journal only, as a crash between the journal's sync and badger's
	// commit would (the write reports success).
	crashBeforeBadger bool
}

// commitStats counts the committer's work, for tests and benchmarks.
type commitStats struct {
	mu      sync.Mutex
	commits int // transactions committed
	writes  int // writes committed in them
}

func newCommitter(db *badger.DB, j *journal, log *slog.Logger) *committer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &committer{db: db, j: j, d: newDurability(j), log: log, queue: make(chan *write, maxGroup), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// submit queues fn; the returned channel receives its outcome. The
// store's lock keeps submit and close apart (Store.queue holds it for
// reading, Store.Close for writing).
func (c *committer) submit(fn func(txn *badger.Txn) error, lazy bool) <-chan error {
	w := &write{fn: fn, done: make(chan error, 1), lazy: lazy}
	c.queue <- w
	return w.done
}

// close commits the writes already queued and waits for the writer to
// end; it is called once, when no submit can run.
func (c *committer) close() {
	close(c.stop)
	<-c.done
	c.d.close()
	if c.ckpt != nil {
		<-c.ckpt
	}
}

func (c *committer) run() {
	defer close(c.done)
	group := make([]*write, 0, maxGroup)
	for {
		var w *write
		select {
		case w = <-c.queue:
		case <-c.stop:
			// Nothing is submitted any more: commit what is left.
			for {
				select {
				case w := <-c.queue:
					group = append(group, w)
					if len(group) == maxGroup {
						c.commit(group)
						group = group[:0]
					}
				default:
					if len(group) > 0 {
						c.commit(group)
					}
					return
				}
			}
		}
		// One group's sync at a time: the next group gathers while it
		// runs. Committing groups as they come instead would split
		// writers into many small transactions, each with its own
		// record and badger commit, for the same syncs: CPU that
		// concurrent writers on a small machine do not have.
		c.d.waitIdle()
		group = append(group[:0], w)
		if w.lazy {
			c.await(&group, lazyWait, lazyWait, true)
		}
	gather:
		for len(group) < maxGroup {
			select {
			case w := <-c.queue:
				group = append(group, w)
			default:
				break gather
			}
		}
		// Concurrent writers (the last group had several urgent writes):
		// those the last commit released are sealing their next write
		// now. Wait for them while they keep coming, each within gap of
		// the last, up to half a commit in all, so that they share this
		// sync instead of taking turns in two alternating halves. Only
		// worth it when a commit (its sync) costs much more than the wait.
		if gap := min(lingerGap, c.lastCommit/8); gap > 0 && c.lastGroup > 1 {
			c.await(&group, gap, min(lingerMax, c.lastCommit/2), false)
		}
		c.lastGroup = 0
		for _, w := range group {
			if !w.lazy {
				c.lastGroup++
			}
		}
		start := time.Now()
		c.commit(group)
		c.lastCommit = time.Since(start)
		clear(group)
		group = group[:0]
	}
}

// await adds writes to the group while each comes within gap of the
// last, for at most total in all; with untilUrgent, it stops at the first
// urgent write.
func (c *committer) await(group *[]*write, gap, total time.Duration, untilUrgent bool) {
	deadline := time.Now().Add(total)
	t := time.NewTimer(gap)
	defer t.Stop()
	for len(*group) < maxGroup {
		select {
		case w := <-c.queue:
			*group = append(*group, w)
			d := min(gap, time.Until(deadline))
			if (untilUrgent && !w.lazy) || d <= 0 {
				return
			}
			t.Reset(d) // since Go 1.23, Reset drops a stale tick
		case <-t.C:
			return
		case <-c.stop:
			return
		}
	}
}

// commit writes a group, reporting to every write in it.
func (c *committer) commit(group []*write) {
	group = append([]*write(nil), group...) // commit drops failed writes from its copy
	for len(group) > 0 {
		txn := c.db.NewTransaction(true)
		if cap(c.batch.buf) > maxKeptBatch {
			c.batch.buf = nil // a big transaction's buffer is not kept
		}
		c.cur = &c.batch
		c.batch.buf = c.batch.buf[:0] // the journal seals a copy: reused
		failed, err := -1, error(nil)
		for i, w := range group {
			if err = w.fn(txn); err != nil {
				failed = i
				break
			}
		}
		b := c.cur
		c.cur = nil
		if failed < 0 {
			gen, err := c.commitTxn(txn, b)
			if err == nil {
				c.stats.mu.Lock()
				c.stats.commits++
				c.stats.writes += len(group)
				c.stats.mu.Unlock()
			} else {
				err = fmt.Errorf("store: commit: %w", err)
			}
			c.d.report(gen, group, err)
			return
		}
		txn.Discard()
		switch {
		case errors.Is(err, badger.ErrTxnTooBig) && failed > 0:
			// Commit the writes that fit; the one that overflowed starts
			// the next transaction.
			c.commit(group[:failed])
			group = group[failed:]
		default:
			// The failure may rest on what earlier writes did: it is
			// reported once they are durable.
			c.d.report(c.j.total, group[failed:failed+1], err)
			group = append(group[:failed], group[failed+1:]...)
		}
	}
}

// commitTxn writes txn's journal record, has the durability stage sync
// it, and commits txn to badger meanwhile. It returns the generation the
// outcome waits for: its record's, or the last record's when it has none
// (it may rest on what that one wrote). A transaction badger does not
// take is taken back from the journal.
func (c *committer) commitTxn(txn *badger.Txn, b *batch) (uint64, error) {
	if err := c.d.broken(); err != nil {
		txn.Discard()
		return c.j.total, err
	}
	if len(b.buf) == 0 {
		return c.j.total, txn.Commit()
	}
	c.d.waitIdle() // at most the last record is unsynced (journal.write)
	gen, left, err := c.j.write(b)
	if left > 0 {
		c.checkpoint(left)
	}
	if err != nil {
		txn.Discard()
		return c.j.total, err
	}
	c.d.wrote(gen)
	if c.crashBeforeBadger {
		txn.Discard()
		return gen, nil
	}
	if err := txn.Commit(); err != nil {
		return gen, errors.Join(err, c.j.undo())
	}
	return gen, nil
}

// checkpoint makes badger's files durable and removes the segments up to
// upTo, in the background; the writes in them are all committed to
// badger. One runs at a time: the next waits for the last.
func (c *committer) checkpoint(upTo int) {
	if c.ckpt != nil {
		<-c.ckpt
	}
	done := make(chan struct{})
	c.ckpt = done
	go func() {
		defer close(done)
		if err := c.j.checkpoint(upTo); err != nil {
			c.log.Warn("store: journal checkpoint", "err", err)
		}
		if err := c.j.prepare(); err != nil {
			c.log.Warn("store: journal", "err", err)
		}
	}()
}

// update runs fn in the commit queue and returns once its write is
// committed and synced, or failed and left nothing behind. fn must depend
// on nothing but the transaction (it may run more than once; only its last
// run counts). A caller that gives up (ctx) does not take back a write
// that is already queued: it may still be committed.
func (s *Store) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	done, err := s.queue(ctx, fn)
	if err != nil {
		return err
	}
	return dbErr(<-done)
}

// queue puts fn in the commit queue and returns where its outcome will
// be reported. The order of queue calls is the order of the writes.
func (s *Store) queue(ctx context.Context, fn func(txn *badger.Txn) error) (<-chan error, error) {
	return s.enqueue(ctx, fn, false)
}

// updateLazy is update for a write that may wait for company (see
// write.lazy): it returns once committed and synced, within lazyWait
// plus a commit.
func (s *Store) updateLazy(ctx context.Context, fn func(txn *badger.Txn) error) error {
	done, err := s.enqueue(ctx, fn, true)
	if err != nil {
		return err
	}
	return dbErr(<-done)
}

func (s *Store) enqueue(ctx context.Context, fn func(txn *badger.Txn) error, lazy bool) (<-chan error, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.commits.submit(fn, lazy), nil
}

// Pending is a write queued in the commit queue.
type Pending struct {
	done <-chan error
	once sync.Once
	err  error
}

// Wait returns once the write is committed and synced (nil), or failed
// and left nothing behind (its error). It may be called many times.
func (p *Pending) Wait() error {
	p.once.Do(func() { p.err = dbErr(<-p.done) })
	return p.err
}

// CommitStats reports how many transactions the commit queue committed
// and how many writes they held.
func (s *Store) CommitStats() (commits, writes int) {
	s.commits.stats.mu.Lock()
	defer s.commits.stats.mu.Unlock()
	return s.commits.stats.commits, s.commits.stats.writes
}
