package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Tests of the commit queue (commit.go) and of the outbox queues
// (OutboxQueue, OutboxRecipients, FinishOutboxes, Seq) that it orders.

// outgoingMsg is an outgoing text message to a friend and its outbox entry.
func outgoingMsg(to protocol.ID, body string) (Message, OutboxEntry) {
	m := Message{ID: randMsgID(), Conversation: DirectConversation(to), From: testKey.ID(), To: to, Kind: "text", Body: []byte(body)}
	return m, OutboxEntry{Recipient: to, Envelope: []byte("envelope of " + body)}
}

// queuedWrite is a QueueOutgoing call and its outcome.
type queuedWrite struct {
	m Message
	p *Pending
}

func queueOut(t *testing.T, s *Store, m Message, e OutboxEntry) queuedWrite {
	t.Helper()
	m, p, err := s.QueueOutgoing(t.Context(), m, e, nil)
	if err != nil {
		t.Fatalf("QueueOutgoing: %v", err)
	}
	return queuedWrite{m, p}
}

// holdWriter parks the commit queue's one writer inside a write of its
// own, so that everything queued until release is called is gathered into
// the next group. release (also run at cleanup) waits until the parked
// write is committed.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	var startOnce sync.Once
	done, err := s.queue(t.Context(), func(*badger.Txn) error {
		startOnce.Do(func() { close(started) })
		<-unblock
		return nil
	})
	if err != nil {
		t.Fatalf("queueing the held write: %v", err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never ran the held write")
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(unblock)
			if err := <-done; err != nil {
				t.Errorf("held write: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// allMessages pages through a whole conversation.
func allMessages(t *testing.T, s *Store, conv ConversationID) []Message {
	t.Helper()
	var out []Message
	var cur Cursor
	for {
		page, next, err := s.Messages(t.Context(), conv, cur, MaxPageSize)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		cur = next
	}
}

// queueIDs returns the IDs of to's queue (from after) and checks that its
// Seqs rise and that every entry is to's.
func queueIDs(t *testing.T, s *Store, to protocol.ID, after uint64, limit int) ([]MsgID, []OutboxEntry) {
	t.Helper()
	es, err := s.OutboxQueue(t.Context(), to, after, limit)
	if err != nil {
		t.Fatalf("OutboxQueue: %v", err)
	}
	ids := make([]MsgID, len(es))
	last := after
	for i, e := range es {
		if e.Recipient != to {
			t.Fatalf("entry %d of %s's queue is for %s", i, to, e.Recipient)
		}
		if e.Seq <= last {
			t.Fatalf("entry %d of the queue has Seq %d after %d", i, e.Seq, last)
		}
		last = e.Seq
		ids[i] = e.MsgID
	}
	return ids, es
}

func msgIDs(ws []queuedWrite) []MsgID {
	ids := make([]MsgID, len(ws))
	for i, w := range ws {
		ids[i] = w.m.ID
	}
	return ids
}

func entrySeq(t *testing.T, s *Store, id MsgID) uint64 {
	t.Helper()
	e, err := s.OutboxEntry(t.Context(), id)
	if err != nil {
		t.Fatalf("OutboxEntry %s: %v", id, err)
	}
	if e.Seq == 0 {
		t.Fatalf("entry %s has no Seq", id)
	}
	return e.Seq
}

func sortedIDs(ids []protocol.ID) []protocol.ID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b protocol.ID) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// newSmallStore is a store with badger's smallest memtable (1 MiB), so
// that a transaction holds at most about 157 KB (15% of it).
func newSmallStore(t *testing.T) *Store {
	t.Helper()
	o := testOptions(newClock())
	o.MemTableSize = 1 << 20
	s, err := Create(t.TempDir(), testPass, testKey, o)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCommitQueueSameConversation has 100 goroutines write 20 times each
// into one conversation, half of them sending (AddOutgoing) and half
// receiving (StoreReceived): no write fails (no conflict), no update of
// the conversation row is lost, and the writes shared commits.
func TestCommitQueueSameConversation(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	conv := DirectConversation(friend)
	const workers, each = 100, 20
	c0, w0 := s.CommitStats() // the identity's write at Create
	// Every message has its own sort time, so the conversation's last
	// message is known whatever order the writes commit in.
	base := c.Now().Add(-time.Hour)
	at := func(g, i int) time.Time { return base.Add(time.Duration(g*each+i) * time.Millisecond) }

	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		out   = map[MsgID]bool{} // sent message IDs
		in    = map[MsgID]bool{} // received message IDs
	)
	for g := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				if g%2 == 0 {
					m, e := outgoingMsg(friend, fmt.Sprintf("out %d/%d", g, i))
					m.SentAt = at(g, i)
					if _, err := s.AddOutgoing(ctx, m, e); err != nil {
						t.Errorf("AddOutgoing %d/%d: %v", g, i, err)
						return
					}
					mu.Lock()
					out[m.ID] = true
					mu.Unlock()
				} else {
					m := incoming(friend, fmt.Sprintf("in %d/%d", g, i))
					m.ReceivedAt = at(g, i)
					if _, err := s.StoreReceived(ctx, m); err != nil {
						t.Errorf("StoreReceived %d/%d: %v", g, i, err)
						return
					}
					mu.Lock()
					in[m.ID] = true
					mu.Unlock()
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The last message is the one with the latest sort time: the last
	// write of the last (odd, receiving) goroutine.
	msgs := allMessages(t, s, conv)
	if len(msgs) != workers*each {
		t.Fatalf("%d messages in the conversation, want %d", len(msgs), workers*each)
	}
	seen := map[MsgID]bool{}
	for _, m := range msgs {
		if seen[m.ID] || !(in[m.ID] || out[m.ID]) {
			t.Fatalf("message %s listed twice or never written", m.ID)
		}
		seen[m.ID] = true
	}
	newest := msgs[0]
	if !newest.SortTime().Equal(at(workers-1, each-1)) || !in[newest.ID] {
		t.Fatalf("newest message %s at %v, want the last received one at %v", newest.ID, newest.SortTime(), at(workers-1, each-1))
	}
	cv, err := s.Conversation(ctx, conv)
	if err != nil {
		t.Fatal(err)
	}
	if cv.Unread != len(in) || cv.Unread != workers/2*each {
		t.Fatalf("unread %d, want %d", cv.Unread, workers/2*each)
	}
	if cv.LastMessage != newest.ID || !cv.LastAt.Equal(newest.SortTime()) || cv.LastPreview != string(newest.Body) {
		t.Fatalf("conversation %+v, want last message %s at %v", cv, newest.ID, newest.SortTime())
	}

	// Every outgoing message has one entry in the friend's queue, with
	// its own Seq.
	ids, _ := queueIDs(t, s, friend, 0, 2*workers*each)
	if len(ids) != len(out) {
		t.Fatalf("%d queued entries, want %d", len(ids), len(out))
	}
	for _, id := range ids {
		if !out[id] {
			t.Fatalf("queued entry %s is no sent message", id)
		}
	}

	commits, writes := s.CommitStats()
	commits, writes = commits-c0, writes-w0
	t.Logf("%d writes in %d commits (%.1f writes/commit)", writes, commits, float64(writes)/float64(commits))
	if writes != workers*each {
		t.Fatalf("CommitStats writes = %d, want %d", writes, workers*each)
	}
	if commits <= 0 || commits >= writes {
		t.Fatalf("CommitStats = %d commits for %d writes: no group commit", commits, writes)
	}
}

var errBoom = errors.New("boom")

// TestCommitQueueFailedWrite puts failing writes in one group with good
// ones: each failing one gets its own error and leaves nothing behind
// (not even for the writes after it in the group), the others commit, in
// one transaction.
func TestCommitQueueFailedWrite(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	conv := DirectConversation(friend)
	old, oldE := outgoingMsg(friend, "already stored")
	if _, err := s.AddOutgoing(ctx, old, oldE); err != nil {
		t.Fatal(err)
	}
	c0, w0 := s.CommitStats()

	release := holdWriter(t, s)
	ma, ea := outgoingMsg(friend, "a")
	a := queueOut(t, s, ma, ea)
	dupOld := queueOut(t, s, old, OutboxEntry{Recipient: friend, Envelope: []byte("again")})
	mb, eb := outgoingMsg(friend, "b")
	b := queueOut(t, s, mb, eb)
	// A write that writes a row and then fails.
	boomKey := []byte("\x00test-boom")
	boom, err := s.queue(ctx, func(txn *badger.Txn) error {
		if err := txn.Set(boomKey, []byte("x")); err != nil {
			return err
		}
		return fmt.Errorf("failing on purpose: %w", errBoom)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The write after it must not see its row.
	probeKey := []byte("\x00test-probe")
	var sawBoom bool
	probe, err := s.queue(ctx, func(txn *badger.Txn) error {
		ok, err := exists(txn, boomKey)
		sawBoom = ok
		if err != nil {
			return err
		}
		return txn.Set(probeKey, []byte("y"))
	})
	if err != nil {
		t.Fatal(err)
	}
	dupB := mb
	dupB.Body = []byte("b, again, in the same group")
	dupInGroup := queueOut(t, s, dupB, OutboxEntry{Recipient: friend, Envelope: []byte("b again")})
	mc, ec := outgoingMsg(friend, "c")
	cw := queueOut(t, s, mc, ec)
	release()

	for _, w := range []queuedWrite{a, b, cw} {
		if err := w.p.Wait(); err != nil {
			t.Fatalf("good write %q: %v", w.m.Body, err)
		}
	}
	if err := dupOld.p.Wait(); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate of a stored message: %v, want ErrDuplicate", err)
	}
	if err := dupInGroup.p.Wait(); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate within the group: %v, want ErrDuplicate", err)
	}
	if err := dupInGroup.p.Wait(); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second Wait: %v, want the same ErrDuplicate", err)
	}
	if err := <-boom; !errors.Is(err, errBoom) {
		t.Fatalf("failing write: %v, want errBoom", err)
	}
	if err := <-probe; err != nil || sawBoom {
		t.Fatalf("write after the failing one: %v, saw its row: %v", err, sawBoom)
	}

	// The failing writes left nothing; the duplicates did not overwrite.
	err = s.view(ctx, func(txn *badger.Txn) error {
		if ok, err := exists(txn, boomKey); err != nil || ok {
			return fmt.Errorf("failed write's row: %v, %v", ok, err)
		}
		if ok, err := exists(txn, probeKey); err != nil || !ok {
			return fmt.Errorf("probe write's row: %v, %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Message(ctx, old.ID); err != nil || string(got.Body) != "already stored" {
		t.Fatalf("stored message after its duplicate: %q, %v", got.Body, err)
	}
	if got, err := s.Message(ctx, mb.ID); err != nil || string(got.Body) != "b" {
		t.Fatalf("message b after its duplicate: %q, %v", got.Body, err)
	}
	if e, err := s.OutboxEntry(ctx, mb.ID); err != nil || string(e.Envelope) != string(eb.Envelope) {
		t.Fatalf("entry of b after its duplicate: %q, %v", e.Envelope, err)
	}
	if got := allMessages(t, s, conv); len(got) != 4 {
		t.Fatalf("%d messages, want 4 (old, a, b, c)", len(got))
	}
	// Queue order is write order, without the failed writes.
	ids, _ := queueIDs(t, s, friend, 0, 100)
	if want := []MsgID{old.ID, ma.ID, mb.ID, mc.ID}; !slices.Equal(ids, want) {
		t.Fatalf("queue %v, want %v", ids, want)
	}
	// All four writes sent the same time: the last one applied is last.
	if cv, err := s.Conversation(ctx, conv); err != nil || cv.LastMessage != mc.ID {
		t.Fatalf("conversation %+v, %v: want last message c", cv, err)
	}

	// The held write and the group: two commits, 1 + 4 writes.
	c1, w1 := s.CommitStats()
	if c1-c0 != 2 || w1-w0 != 5 {
		t.Fatalf("CommitStats moved by %d commits and %d writes, want 2 and 5", c1-c0, w1-w0)
	}
}

// TestCommitQueueConcurrentDuplicates races duplicates of stored messages
// against new ones: each duplicate gets ErrDuplicate, the rest succeed.
func TestCommitQueueConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	conv := DirectConversation(friend)
	var olds []Message
	for i := range 5 {
		m := incoming(friend, fmt.Sprint("old ", i))
		if _, err := s.StoreReceived(ctx, m); err != nil {
			t.Fatal(err)
		}
		olds = append(olds, m)
	}
	const workers = 40
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for g := range workers {
		wg.Go(func() {
			<-start
			switch {
			case g%4 == 0: // a received duplicate
				m := olds[g/4%len(olds)]
				m.Body = []byte("replayed")
				if _, err := s.StoreReceived(ctx, m); !errors.Is(err, ErrDuplicate) {
					t.Errorf("replayed message: %v, want ErrDuplicate", err)
				}
			case g%4 == 1: // an outgoing message under a received ID
				m, e := outgoingMsg(friend, "reused ID")
				m.ID = olds[g/4%len(olds)].ID
				if _, err := s.AddOutgoing(ctx, m, e); !errors.Is(err, ErrDuplicate) {
					t.Errorf("outgoing message with a stored ID: %v, want ErrDuplicate", err)
				}
			case g%2 == 0:
				if _, err := s.StoreReceived(ctx, incoming(friend, "new")); err != nil {
					t.Errorf("StoreReceived: %v", err)
				}
			default:
				m, e := outgoingMsg(friend, "new")
				if _, err := s.AddOutgoing(ctx, m, e); err != nil {
					t.Errorf("AddOutgoing: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	msgs := allMessages(t, s, conv)
	if want := len(olds) + workers/2; len(msgs) != want {
		t.Fatalf("%d messages, want %d", len(msgs), want)
	}
	for _, m := range msgs {
		if string(m.Body) == "replayed" || string(m.Body) == "reused ID" {
			t.Fatalf("a duplicate was stored: %+v", m)
		}
	}
	cv, err := s.Conversation(ctx, conv)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(olds) + workers/4; cv.Unread != want {
		t.Fatalf("unread %d, want %d", cv.Unread, want)
	}
	if ids, _ := queueIDs(t, s, friend, 0, 100); len(ids) != workers/4 {
		t.Fatalf("%d queued entries, want %d", len(ids), workers/4)
	}
}
