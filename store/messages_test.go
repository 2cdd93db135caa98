package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

func TestStoreReceived(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	from := randUser()
	in := incoming(from, "hello")
	got, err := s.StoreReceived(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.Direction != In || !got.ReceivedAt.Equal(c.Now()) || got.Status != StatusDelivered {
		t.Fatalf("defaults not filled in: %+v", got)
	}
	m, err := s.Message(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != in.ID || m.From != from || string(m.Body) != "hello" || !m.ReceivedAt.Equal(c.Now()) ||
		!m.SentAt.Equal(in.SentAt) || m.Kind != "text" {
		t.Fatalf("Message = %+v", m)
	}
	conv, err := s.Conversation(ctx, DirectConversation(from))
	if err != nil {
		t.Fatal(err)
	}
	if conv.Unread != 1 || conv.LastMessage != in.ID || conv.LastPreview != "hello" || !conv.LastAt.Equal(c.Now()) {
		t.Fatalf("Conversation = %+v", conv)
	}
	if seen, err := s.Seen(ctx, in.ID); err != nil || !seen {
		t.Fatalf("Seen = %v, %v", seen, err)
	}
	if _, err := s.Message(ctx, randMsgID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Message(unknown): %v", err)
	}
	bad := incoming(from, "x")
	bad.Direction = Out
	if _, err := s.StoreReceived(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("outgoing direction: %v", err)
	}
	bad = incoming(from, "x")
	bad.ID = MsgID{}
	if _, err := s.StoreReceived(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero ID: %v", err)
	}
}

func TestStoreReceivedDuplicate(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	from := randUser()
	m := incoming(from, "once")
	if _, err := s.StoreReceived(ctx, m); err != nil {
		t.Fatal(err)
	}
	convBefore, err := s.Conversation(ctx, m.Conversation)
	if err != nil {
		t.Fatal(err)
	}
	c.Add(time.Minute)
	again := m
	again.Body = []byte("twice")
	if _, err := s.StoreReceived(ctx, again); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second StoreReceived: %v, want ErrDuplicate", err)
	}
	convAfter, err := s.Conversation(ctx, m.Conversation)
	if err != nil {
		t.Fatal(err)
	}
	if convAfter != convBefore {
		t.Fatalf("conversation changed: %+v -> %+v", convBefore, convAfter)
	}
	page := mustPage(t, s, m.Conversation)
	if len(page) != 1 || string(page[0].Body) != "once" {
		t.Fatalf("messages after duplicate: %+v", page)
	}
	// An ID only marked seen (a receipt, say) is a duplicate too.
	receipt := randMsgID()
	if err := s.MarkSeen(ctx, receipt); err != nil {
		t.Fatal(err)
	}
	dup := incoming(from, "replayed")
	dup.ID = receipt
	if _, err := s.StoreReceived(ctx, dup); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("StoreReceived of a seen ID: %v, want ErrDuplicate", err)
	}
}

// TestConcurrentDuplicates races two stores of the same message ID:
// exactly one succeeds.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	from := randUser()
	const rounds = 10
	for r := range rounds {
		m := incoming(from, fmt.Sprint("round ", r))
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  [2]error
		)
		for i := range errs {
			wg.Go(func() {
				<-start
				_, errs[i] = s.StoreReceived(ctx, m)
			})
		}
		close(start)
		wg.Wait()
		ok, dup := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrDuplicate):
				dup++
			default:
				t.Fatalf("round %d: %v", r, err)
			}
		}
		if ok != 1 || dup != 1 {
			t.Fatalf("round %d: %d successes and %d duplicates, want 1 and 1", r, ok, dup)
		}
	}
	conv, err := s.Conversation(ctx, DirectConversation(from))
	if err != nil {
		t.Fatal(err)
	}
	if conv.Unread != rounds || len(mustPage(t, s, conv.ID)) != rounds {
		t.Fatalf("unread %d, want %d", conv.Unread, rounds)
	}
}

// TestConcurrentReceivers has several goroutines store different messages
// into one conversation: conflicts are retried and no update is lost.
func TestConcurrentReceivers(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	from := randUser()
	const workers, each = 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := s.StoreReceived(t.Context(), incoming(from, "concurrent")); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	conv, err := s.Conversation(t.Context(), DirectConversation(from))
	if err != nil {
		t.Fatal(err)
	}
	if conv.Unread != workers*each {
		t.Fatalf("unread %d, want %d", conv.Unread, workers*each)
	}
}

func TestStoreReceivedBatch(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	a, b := randUser(), randUser()
	old := incoming(a, "already here")
	if _, err := s.StoreReceived(ctx, old); err != nil {
		t.Fatal(err)
	}
	batch := []Message{incoming(a, "1"), incoming(b, "2"), old, incoming(a, "3")}
	batch = append(batch, batch[1]) // repeated within the batch
	bad := incoming(a, "bad")
	bad.Conversation = ConversationID{}
	batch = append(batch, bad)
	res, err := s.StoreReceivedBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []error{nil, nil, ErrDuplicate, nil, ErrDuplicate, ErrInvalid}
	for i := range want {
		if !errors.Is(res[i], want[i]) || (want[i] == nil) != (res[i] == nil) {
			t.Errorf("result %d: %v, want %v", i, res[i], want[i])
		}
	}
	ca, _ := s.Conversation(ctx, DirectConversation(a))
	cb, _ := s.Conversation(ctx, DirectConversation(b))
	if ca.Unread != 3 || cb.Unread != 1 {
		t.Fatalf("unread a=%d b=%d, want 3 and 1", ca.Unread, cb.Unread)
	}
	if got := len(mustPage(t, s, DirectConversation(a))); got != 3 {
		t.Fatalf("%d messages from a, want 3", got)
	}
}

// TestPagination walks a conversation whose messages share timestamps, in
// pages, and checks newest-first order with no gap and no repeat.
func TestPagination(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	conv := DirectConversation(friend)
	const total = 237
	var batch []Message
	for i := range total {
		if i%10 == 0 {
			c.Add(time.Millisecond) // ten messages per timestamp
		}
		if i%7 == 3 {
			// Outgoing messages sort by SentAt.
			out := Message{ID: randMsgID(), Conversation: conv, From: testKey.ID(), To: friend, Body: []byte(fmt.Sprint(i)), SentAt: c.Now()}
			if _, err := s.AddOutgoing(ctx, out, OutboxEntry{Recipient: friend, Envelope: []byte{1}}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		batch = append(batch, incoming(friend, fmt.Sprint(i)))
		if len(batch) == 10 || i == total-1 {
			if _, err := s.StoreReceivedBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	// Noise in another conversation.
	if _, err := s.StoreReceived(ctx, incoming(randUser(), "elsewhere")); err != nil {
		t.Fatal(err)
	}

	seen := map[MsgID]bool{}
	var prev []byte
	cursor := Cursor("")
	pages := 0
	for {
		msgs, next, err := s.Messages(ctx, conv, cursor, 25)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(msgs) == 0 || len(msgs) > 25 {
			t.Fatalf("page %d has %d messages", pages, len(msgs))
		}
		for _, m := range msgs {
			if m.Conversation != conv || seen[m.ID] {
				t.Fatalf("page %d: message %s repeated or foreign", pages, m.ID)
			}
			seen[m.ID] = true
			k := sortKey(m.SortTime(), m.ID)
			if prev != nil && bytes.Compare(k, prev) >= 0 {
				t.Fatalf("page %d: not newest first", pages)
			}
			prev = k
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != total || pages != (total+24)/25 {
		t.Fatalf("walked %d messages in %d pages, want %d in %d", len(seen), pages, total, (total+24)/25)
	}
	if _, _, err := s.Messages(ctx, conv, "not a cursor!", 10); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := s.Messages(ctx, conv, "", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero limit: %v", err)
	}
	if msgs, next, err := s.Messages(ctx, randConv(), "", 10); err != nil || len(msgs) != 0 || next != "" {
		t.Fatalf("empty conversation: %v %v %q", msgs, err, next)
	}
}

func TestUpdateStatus(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	send := func() MsgID {
		m := Message{ID: randMsgID(), Conversation: DirectConversation(friend), From: testKey.ID(), To: friend, Body: []byte("hi")}
		got, err := s.AddOutgoing(ctx, m, OutboxEntry{Recipient: friend, Envelope: []byte("env")})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != StatusPending || got.Direction != Out {
			t.Fatalf("AddOutgoing defaults: %+v", got)
		}
		return m.ID
	}
	step := func(id MsgID, st Status, p Path, e string, want Status, wantPath Path) {
		t.Helper()
		m, err := s.UpdateStatus(ctx, id, st, p, e)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := s.Message(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != want || stored.Status != want || stored.Path != wantPath {
			t.Fatalf("after %s: returned %s, stored %s/%s, want %s/%s", st, m.Status, stored.Status, stored.Path, want, wantPath)
		}
	}
	id := send()
	step(id, StatusSent, PathRelay, "", StatusSent, PathRelay)
	step(id, StatusDelivered, "", "", StatusDelivered, PathRelay)
	step(id, StatusSent, PathDirect, "", StatusDelivered, PathRelay) // never back
	step(id, StatusFailed, "", "late", StatusDelivered, PathRelay)
	step(id, StatusRead, "", "", StatusRead, PathRelay)

	id = send()
	step(id, StatusFailed, "", "no route", StatusFailed, "")
	if m, _ := s.Message(ctx, id); m.Error != "no route" {
		t.Fatalf("error text %q", m.Error)
	}
	step(id, StatusPending, "", "", StatusPending, "") // retry
	step(id, StatusSent, PathMailbox, "", StatusSent, PathMailbox)

	if _, err := s.UpdateStatus(ctx, id, "lost", "", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown status: %v", err)
	}
	if _, err := s.UpdateStatus(ctx, randMsgID(), StatusSent, "", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown message: %v", err)
	}
}

func TestMarkReadAndConversationOrder(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	a, b, d := randUser(), randUser(), randUser()
	for _, u := range []struct {
		user protocol.ID
		n    int
	}{{a, 3}, {b, 1}, {d, 2}} {
		for range u.n {
			c.Add(time.Second)
			if _, err := s.StoreReceived(ctx, incoming(u.user, "m")); err != nil {
				t.Fatal(err)
			}
		}
	}
	order := func(want ...protocol.ID) {
		t.Helper()
		convs, err := s.Conversations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(convs) != len(want) {
			t.Fatalf("%d conversations, want %d", len(convs), len(want))
		}
		for i, u := range want {
			if convs[i].ID != DirectConversation(u) {
				t.Fatalf("conversation %d is not the expected one", i)
			}
		}
	}
	order(d, b, a)
	c.Add(time.Second)
	if _, err := s.StoreReceived(ctx, incoming(a, "latest")); err != nil {
		t.Fatal(err)
	}
	order(a, d, b)
	// A message that sorts earlier does not become the last one.
	early := incoming(b, "early")
	early.ReceivedAt = c.Now().Add(-time.Hour)
	if _, err := s.StoreReceived(ctx, early); err != nil {
		t.Fatal(err)
	}
	order(a, d, b)
	cb, _ := s.Conversation(ctx, DirectConversation(b))
	if cb.Unread != 2 || cb.LastPreview != "m" {
		t.Fatalf("conversation b: %+v", cb)
	}

	ca, _ := s.Conversation(ctx, DirectConversation(a))
	if ca.Unread != 4 {
		t.Fatalf("unread %d, want 4", ca.Unread)
	}
	if err := s.MarkRead(ctx, DirectConversation(a)); err != nil {
		t.Fatal(err)
	}
	ca, _ = s.Conversation(ctx, DirectConversation(a))
	if ca.Unread != 0 || ca.LastPreview != "latest" {
		t.Fatalf("after MarkRead: %+v", ca)
	}
	if err := s.MarkRead(ctx, randConv()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkRead(unknown): %v", err)
	}
}

func TestPreview(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte("é"), PreviewSize) // 2 bytes a rune
	if p := Preview(long); len(p) > PreviewSize || len(p) < PreviewSize-1 || !bytes.HasPrefix(long, []byte(p)) {
		t.Fatalf("preview of %d bytes", len(p))
	}
	if p := Preview([]byte{0xff, 0xfe}); p != "" {
		t.Fatalf("preview of binary: %q", p)
	}
}
