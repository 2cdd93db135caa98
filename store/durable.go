package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// durability is the second stage of the commit pipeline. The committer
// writes a group's journal record (write(2), no sync), tells this stage,
// and commits the group's transaction to badger while this stage makes
// the record durable (fdatasync) in its own goroutine: a commit costs the
// longer of the two, not their sum. The next group gathers meanwhile and
// is written once the sync is done (committer.run), so at most the
// journal's last record is ever unsynced.
//
// The price is that badger shows a transaction's writes before its
// record is durable. Nothing leaves the store on that account:
//   - a write's outcome (success, or the error its function returned,
//     which may rest on what earlier writes did) is reported only once
//     every record up to its own is durable (report);
//   - a read (Store.view) returns only once everything that was visible
//     when it ended is durable (settled), so that the courier never puts
//     on the wire, and the API never shows, a write a crash could undo.
//
// Generations number the journal's records from 1 in write order; a
// record is durable once durable ≥ its generation.
type durability struct {
	j *journal
	// sync is j.sync; tests replace it before the first write.
	sync func() error
	kick chan struct{} // a record was written (capacity 1)
	stop chan struct{}
	done chan struct{}

	// visible is the newest generation whose transaction may be seen in
	// badger (set before its commit); durable the newest made durable.
	visible atomic.Uint64
	durable atomic.Uint64

	mu      sync.Mutex
	written uint64    // records written (by the committer)
	pending []outcome // reported once durable reaches their generation
	err     error     // a sync failed: nothing is durable any more
	changed chan struct{}
}

// outcome is a write's result, held until the records up to gen are
// durable.
type outcome struct {
	gen uint64
	w   *write
	err error
}

func newDurability(j *journal) *durability {
	d := &durability{j: j, sync: j.sync, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
	go d.run()
	return d
}

// wrote records that the journal holds record gen (written, not synced)
// and that its transaction may be seen from now on.
func (d *durability) wrote(gen uint64) {
	d.visible.Store(gen)
	d.mu.Lock()
	d.written = gen
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// report hands over the outcomes of a group, to be reported once the
// records up to gen are durable.
func (d *durability) report(gen uint64, ws []*write, err error) {
	d.mu.Lock()
	if d.err != nil {
		err = d.err
	}
	if d.err != nil || gen <= d.durable.Load() {
		d.mu.Unlock()
		for _, w := range ws {
			w.done <- err
		}
		return
	}
	for _, w := range ws {
		d.pending = append(d.pending, outcome{gen: gen, w: w, err: err})
	}
	d.mu.Unlock()
}

func (d *durability) run() {
	defer close(d.done)
	for {
		select {
		case <-d.kick:
		case <-d.stop:
			d.syncOnce() // what the committer wrote last
			return
		}
		d.syncOnce()
	}
}

// syncOnce makes the records written so far durable and reports the
// outcomes that waited for them.
func (d *durability) syncOnce() {
	d.mu.Lock()
	upTo, failed := d.written, d.err != nil
	d.mu.Unlock()
	if failed || upTo <= d.durable.Load() {
		return
	}
	err := d.sync()
	d.mu.Lock()
	var ready []outcome
	if err != nil {
		// fdatasync failed: what it should have written may be lost
		// whatever a retry says, so the store stops taking writes.
		d.err = fmt.Errorf("store: sync failed, the store takes no more writes: %w", err)
		ready, d.pending = d.pending, nil
	} else {
		d.durable.Store(upTo)
		n := 0
		for n < len(d.pending) && d.pending[n].gen <= upTo {
			n++
		}
		ready = append(ready, d.pending[:n]...)
		d.pending = append(d.pending[:0], d.pending[n:]...)
	}
	close(d.changed)
	d.changed = make(chan struct{})
	failure := d.err
	d.mu.Unlock()
	for _, o := range ready {
		e := o.err
		if failure != nil {
			e = failure
		}
		o.w.done <- e
	}
}

// waitIdle returns once no sync is running: every record written is
// durable (or the stage failed).
func (d *durability) waitIdle() {
	for {
		d.mu.Lock()
		idle := d.err != nil || d.durable.Load() >= d.written
		ch := d.changed
		d.mu.Unlock()
		if idle {
			return
		}
		<-ch
	}
}

// broken is the error of a failed sync, nil while the store is sound.
func (d *durability) broken() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// settled returns once everything visible in badger now is durable (or
// the store is broken, or ctx ends).
func (d *durability) settled(ctx context.Context) error {
	gen := d.visible.Load()
	for {
		if d.durable.Load() >= gen {
			return nil
		}
		d.mu.Lock()
		err, ch := d.err, d.changed
		durable := d.durable.Load()
		d.mu.Unlock()
		switch {
		case err != nil:
			return err
		case durable >= gen:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close makes what was written durable, reports the last outcomes and
// ends the stage; the committer has ended.
func (d *durability) close() {
	close(d.stop)
	<-d.done
}
