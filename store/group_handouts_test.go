package store

import (
	"context"
	"errors"
	"testing"

	"github.com/parley-chat/parley/protocol"
)

// TestHandoutJob: a job stored with its state is read back; batches queue
// their envelopes with the progress in one write, items left behind start
// the next pass, the job survives a reopen where it stopped, and once
// done it is gone.
func TestHandoutJob(t *testing.T) {
	ctx := context.Background()
	s, _, c := newTestStore(t)
	p := newGroupPeer(t)
	mine, err := protocol.NewSenderChain(p.state, testKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	d, err := mine.Distribution(p.state)
	if err != nil {
		t.Fatal(err)
	}
	users := make([]protocol.ID, 5)
	for i := range users {
		users[i] = protocol.ID(randBytes(protocol.IDSize))
	}
	h := &Handout{Group: p.state.Group, Epoch: p.state.Epoch, Bodies: map[protocol.Kind][]byte{protocol.KindSenderKey: d.Marshal()}}
	for _, u := range users {
		h.Items = append(h.Items, HandoutItem{To: u, Kind: protocol.KindSenderKey})
	}

	// Refused: a job for another epoch, an item without a body.
	bad := *h
	bad.Epoch++
	if err := s.PutGroupStateHandout(ctx, p.state, mine, &bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("job of another epoch: %v, want ErrInvalid", err)
	}
	bad = *h
	bad.Items = append([]HandoutItem{{To: users[0], Kind: protocol.KindGroupState}}, h.Items...)
	if err := s.PutGroupStateHandout(ctx, p.state, mine, &bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("item without a body: %v, want ErrInvalid", err)
	}
	if _, err := s.Group(ctx, p.state.Group); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused job stored its state: %v", err)
	}

	if err := s.PutGroupStateHandout(ctx, p.state, mine, h); err != nil {
		t.Fatal(err)
	}
	jobs, err := s.Handouts(ctx)
	if err != nil || len(jobs) != 1 || len(jobs[0].Items) != 5 || jobs[0].Next != 0 || string(jobs[0].Bodies[protocol.KindSenderKey]) != string(d.Marshal()) {
		t.Fatalf("Handouts = %+v, %v", jobs, err)
	}

	// A batch of two: one queued, one left for later.
	entry := func(to protocol.ID) OutboxEntry {
		return OutboxEntry{MsgID: MsgID(randBytes(MsgIDSize)), Recipient: to, Envelope: []byte("sealed")}
	}
	j := jobs[0]
	j.Next, j.Later = 2, []HandoutItem{j.Items[1]}
	if err := s.QueueHandouts(ctx, &j, []OutboxEntry{entry(users[0])}); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, c)
	jobs, err = s.Handouts(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].Next != 2 || len(jobs[0].Later) != 1 || jobs[0].Later[0].To != users[1] {
		t.Fatalf("after a batch and a reopen: %+v, %v", jobs, err)
	}
	if q, err := s.OutboxQueue(ctx, users[0], 0, 10); err != nil || len(q) != 1 || !q[0].Control {
		t.Fatalf("queued for the first member: %+v, %v", q, err)
	}

	// An entry whose ID is taken: nothing of the batch is written.
	j = jobs[0]
	dup := entry(users[2])
	if err := s.AddControl(ctx, dup); err != nil {
		t.Fatal(err)
	}
	j.Next = 3
	if err := s.QueueHandouts(ctx, &j, []OutboxEntry{entry(users[3]), dup}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("batch with a taken ID: %v, want ErrDuplicate", err)
	}
	if q, _ := s.OutboxQueue(ctx, users[3], 0, 10); len(q) != 0 {
		t.Fatalf("a failed batch queued %d entries", len(q))
	}

	// The end of the pass with an item left: the next pass is that item.
	j = jobs[0]
	j.Next, j.Tries = 5, 1
	if err := s.QueueHandouts(ctx, &j, []OutboxEntry{entry(users[2]), entry(users[3]), entry(users[4])}); err != nil {
		t.Fatal(err)
	}
	jobs, err = s.Handouts(ctx)
	if err != nil || len(jobs) != 1 || len(jobs[0].Items) != 1 || jobs[0].Items[0].To != users[1] || jobs[0].Next != 0 || len(jobs[0].Later) != 0 || jobs[0].Tries != 1 {
		t.Fatalf("next pass: %+v, %v", jobs, err)
	}
	j = jobs[0]
	j.Next = 1
	if err := s.QueueHandouts(ctx, &j, []OutboxEntry{entry(users[1])}); err != nil {
		t.Fatal(err)
	}
	if jobs, err := s.Handouts(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("a finished job is left: %+v, %v", jobs, err)
	}
	if err := s.QueueHandouts(ctx, &j, []OutboxEntry{entry(users[1])}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("batch of a finished job: %v, want ErrNotFound", err)
	}
}

// TestEarlyKeys: a sender key kept before its state is read back after a
// reopen (keeping it twice is one row), and gone once deleted.
func TestEarlyKeys(t *testing.T) {
	ctx := context.Background()
	s, _, c := newTestStore(t)
	p := newGroupPeer(t)
	from := otherKey.ID()
	if err := s.PutEarlyKey(ctx, from, p.dist); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEarlyKey(ctx, from, p.dist); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, c)
	ks, err := s.EarlyKeys(ctx)
	if err != nil || len(ks) != 1 || ks[0].From != from || string(ks[0].Dist.Marshal()) != string(p.dist.Marshal()) {
		t.Fatalf("EarlyKeys = %+v, %v", ks, err)
	}
	if err := s.DeleteEarlyKeys(ctx, ks); err != nil {
		t.Fatal(err)
	}
	if ks, err := s.EarlyKeys(ctx); err != nil || len(ks) != 0 {
		t.Fatalf("after delete: %+v, %v", ks, err)
	}
}
