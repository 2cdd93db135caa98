package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// TestCommitQueueCloseCommitsQueued closes the store while writes wait in
// the queue: Close commits them, and every later write fails with
// ErrClosed.
func TestCommitQueueCloseCommitsQueued(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	release := holdWriter(t, s)
	var ws []queuedWrite
	for i := range 10 {
		m, e := outgoingMsg(friend, fmt.Sprint("queued ", i))
		ws = append(ws, queueOut(t, s, m, e))
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Let the writer go only once the queue is closed, so that it finds
	// the writes left in the queue after the stop.
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped := false
		select {
		case <-s.commits.stop:
			stopped = true
		default:
		}
		if stopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close never closed the commit queue")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, w := range ws {
		if err := w.p.Wait(); err != nil {
			t.Fatalf("write %d queued before Close: %v", i, err)
		}
	}

	// Every write after Close fails with ErrClosed.
	m, e := outgoingMsg(friend, "too late")
	if _, err := s.AddOutgoing(ctx, m, e); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddOutgoing after Close: %v", err)
	}
	if _, p, err := s.QueueOutgoing(ctx, m, e, nil); !errors.Is(err, ErrClosed) || p != nil {
		t.Fatalf("QueueOutgoing after Close: %v, %v", p, err)
	}
	if _, err := s.StoreReceived(ctx, incoming(friend, "too late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("StoreReceived after Close: %v", err)
	}
	if err := s.AddControl(ctx, OutboxEntry{MsgID: randMsgID(), Recipient: friend, Envelope: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddControl after Close: %v", err)
	}
	if _, err := s.ResealOutbox(ctx, ws[0].m.ID, []byte("x"), false, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("ResealOutbox after Close: %v", err)
	}
	if _, _, err := s.FinishOutboxes(ctx, []Settle{{MsgID: ws[0].m.ID, Status: StatusSent}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("FinishOutboxes after Close: %v", err)
	}
	if err := s.MarkRead(ctx, DirectConversation(friend)); !errors.Is(err, ErrClosed) {
		t.Fatalf("MarkRead after Close: %v", err)
	}
	if _, err := s.OutboxQueue(ctx, friend, 0, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("OutboxQueue after Close: %v", err)
	}
	if _, err := s.OutboxRecipients(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("OutboxRecipients after Close: %v", err)
	}
	if _, err := s.queue(ctx, func(*badger.Txn) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("queue after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = openTest(t, dir, c)
	if ids, _ := queueIDs(t, s, friend, 0, 100); !slices.Equal(ids, msgIDs(ws)) {
		t.Fatalf("queue after reopen: %v, want the %d writes queued before Close", ids, len(ws))
	}
	if got := allMessages(t, s, DirectConversation(friend)); len(got) != len(ws) {
		t.Fatalf("%d messages after reopen, want %d", len(got), len(ws))
	}
}

// TestCommitQueueCloseRace closes the store under concurrent writers:
// each write either succeeds, and is there after reopen, or fails with
// ErrClosed and left nothing.
func TestCommitQueueCloseRace(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      []MsgID
		pending []queuedWrite
		count   atomic.Int64
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				m, e := outgoingMsg(friend, fmt.Sprint(g, "/", i))
				if g%2 == 0 {
					if _, err := s.AddOutgoing(ctx, m, e); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("AddOutgoing: %v", err)
						}
						return
					}
					mu.Lock()
					ok = append(ok, m.ID)
					mu.Unlock()
				} else {
					m, p, err := s.QueueOutgoing(ctx, m, e, nil)
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("QueueOutgoing: %v", err)
						}
						return
					}
					mu.Lock()
					pending = append(pending, queuedWrite{m, p})
					mu.Unlock()
					if i%4 == 3 {
						p.Wait() // now and then, so the queue does not run far ahead
					}
				}
				count.Add(1)
			}
		})
	}
	for count.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, w := range pending {
		if err := w.p.Wait(); err != nil {
			t.Fatalf("a write queued before Close: %v", err)
		}
		ok = append(ok, w.m.ID)
	}
	if t.Failed() {
		t.FailNow()
	}

	s = openTest(t, dir, c)
	msgs := allMessages(t, s, DirectConversation(friend))
	if len(msgs) != len(ok) {
		t.Fatalf("%d messages after reopen, want the %d that succeeded", len(msgs), len(ok))
	}
	for _, id := range ok {
		if _, err := s.OutboxEntry(ctx, id); err != nil {
			t.Fatalf("entry of a successful write after reopen: %v", err)
		}
	}
	t.Logf("%d writes before Close", len(ok))
}

// TestCommitQueueCancelledCaller cancels a caller of update (AddControl)
// whose write waits in the queue: the caller gets its context's error at
// once, and the write still commits, before the writes queued after it.
func TestCommitQueueCancelledCaller(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	friend := randUser()
	cctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	release := holdWriter(t, s)
	ctl := OutboxEntry{MsgID: randMsgID(), Recipient: friend, Envelope: []byte("given up on")}
	res := make(chan error, 1)
	go func() { res <- s.AddControl(cctx, ctl) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.commits.queue) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the write never reached the queue")
		}
		time.Sleep(time.Millisecond)
	}
	// Once queued, a write is not taken back: the caller waits for its
	// outcome, so that an error always means nothing was written.
	cancel()
	release()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("AddControl cancelled after queueing: %v, want its committed outcome", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued write never finished")
	}
	// A write queued after it commits after it.
	m2, e2 := outgoingMsg(friend, "after")
	if _, err := s.AddOutgoing(t.Context(), m2, e2); err != nil {
		t.Fatal(err)
	}
	if ids, _ := queueIDs(t, s, friend, 0, 10); !slices.Equal(ids, []MsgID{ctl.MsgID, m2.ID}) {
		t.Fatalf("queue %v, want the cancelled write, then the next", ids)
	}
	// A context cancelled before the call queues nothing.
	m3, e3 := outgoingMsg(friend, "never queued")
	if _, err := s.AddOutgoing(cctx, m3, e3); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddOutgoing with a cancelled context: %v", err)
	}
	if _, p, err := s.QueueOutgoing(cctx, m3, e3, nil); !errors.Is(err, context.Canceled) || p != nil {
		t.Fatalf("QueueOutgoing with a cancelled context: %v, %v", p, err)
	}
	if messageStored(t, s, m3.ID) || outboxStored(t, s, m3.ID) {
		t.Fatal("a write with a cancelled context was stored")
	}
}

// bigOutgoing is an outgoing message of about 2×size bytes of rows (body
// and envelope), each row under badger's value threshold.
func bigOutgoing(to protocol.ID, i, size int) (Message, OutboxEntry) {
	m, e := outgoingMsg(to, "")
	m.Body = bytes.Repeat([]byte{'a' + byte(i%26)}, size)
	e.Envelope = bytes.Repeat([]byte{'A' + byte(i%26)}, size)
	return m, e
}

// TestCommitQueueTooBigGroup gathers writes whose sum is several times
// what one badger transaction holds into one group: the queue commits
// them in as many transactions as needed, in order, and all succeed.
func TestCommitQueueTooBigGroup(t *testing.T) {
	t.Parallel()
	s := newSmallStore(t)
	friend := randUser()
	const n, size = 40, 6 << 10 // ≈ 16 KB of rows a write, ≈ 650 KB in all
	c0, w0 := s.CommitStats()
	release := holdWriter(t, s)
	var ws []queuedWrite
	for i := range n {
		m, e := bigOutgoing(friend, i, size)
		ws = append(ws, queueOut(t, s, m, e))
	}
	release()
	for i, w := range ws {
		if err := w.p.Wait(); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	c1, w1 := s.CommitStats()
	commits, writes := c1-c0-1, w1-w0-1 // without the held write
	t.Logf("%d big writes in %d commits", writes, commits)
	if writes != n || commits < 2 || commits >= n {
		t.Fatalf("%d writes in %d commits, want %d in more than one and fewer than %d", writes, commits, n, n)
	}
	ids, es := queueIDs(t, s, friend, 0, 2*n)
	if !slices.Equal(ids, msgIDs(ws)) {
		t.Fatal("queue order is not the order of the writes")
	}
	for i, e := range es {
		if len(e.Envelope) != size || e.Envelope[0] != 'A'+byte(i%26) {
			t.Fatalf("entry %d: envelope of %d bytes", i, len(e.Envelope))
		}
	}
	msgs := allMessages(t, s, DirectConversation(friend))
	if len(msgs) != n {
		t.Fatalf("%d messages, want %d", len(msgs), n)
	}
	if cv, err := s.Conversation(t.Context(), DirectConversation(friend)); err != nil || cv.LastMessage != ws[n-1].m.ID {
		t.Fatalf("conversation %+v, %v: want the last write last", cv, err)
	}
}

// TestCommitQueueTooBigConcurrent has many goroutines write large
// messages at once, far more than one transaction holds: all succeed.
func TestCommitQueueTooBigConcurrent(t *testing.T) {
	t.Parallel()
	s := newSmallStore(t)
	ctx := t.Context()
	friend := randUser()
	const workers, each, size = 16, 5, 6 << 10
	_, w0 := s.CommitStats() // the identity's write at Create
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for g := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				m, e := bigOutgoing(friend, g*each+i, size)
				if _, err := s.AddOutgoing(ctx, m, e); err != nil {
					t.Errorf("AddOutgoing %d/%d: %v", g, i, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if got := allMessages(t, s, DirectConversation(friend)); len(got) != workers*each {
		t.Fatalf("%d messages, want %d", len(got), workers*each)
	}
	if ids, _ := queueIDs(t, s, friend, 0, 2*workers*each); len(ids) != workers*each {
		t.Fatalf("%d queued entries, want %d", len(ids), workers*each)
	}
	commits, writes := s.CommitStats()
	writes -= w0
	t.Logf("%d big writes in %d commits", writes, commits)
	if writes != workers*each {
		t.Fatalf("CommitStats writes = %d, want %d", writes, workers*each)
	}
}

// TestCommitQueueWriteTooBig puts a write too big for any transaction in
// a group: it fails alone (badger.ErrTxnTooBig), leaving nothing, and the
// writes around it commit.
func TestCommitQueueWriteTooBig(t *testing.T) {
	t.Parallel()
	s := newSmallStore(t)
	friend := randUser()
	release := holdWriter(t, s)
	ma, ea := bigOutgoing(friend, 0, 4<<10)
	a := queueOut(t, s, ma, ea)
	mh, eh := bigOutgoing(friend, 1, 100<<10) // two rows of ≈ 135 KB: more than 157 KB
	huge := queueOut(t, s, mh, eh)
	mb, eb := bigOutgoing(friend, 2, 4<<10)
	b := queueOut(t, s, mb, eb)
	release()
	if err := a.p.Wait(); err != nil {
		t.Fatalf("write before the big one: %v", err)
	}
	if err := b.p.Wait(); err != nil {
		t.Fatalf("write after the big one: %v", err)
	}
	if err := huge.p.Wait(); !errors.Is(err, badger.ErrTxnTooBig) {
		t.Fatalf("write too big for a transaction: %v, want ErrTxnTooBig", err)
	}
	if messageStored(t, s, mh.ID) || outboxStored(t, s, mh.ID) {
		t.Fatal("the write too big left rows behind")
	}
	if ids, _ := queueIDs(t, s, friend, 0, 10); !slices.Equal(ids, []MsgID{ma.ID, mb.ID}) {
		t.Fatalf("queue %v, want the two writes that fit", ids)
	}
}
