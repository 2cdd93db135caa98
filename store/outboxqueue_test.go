package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/parley-chat/parley/protocol"
)

// TestOutboxQueueOrder covers the outbox queues: Seq follows the order of
// the writes, OutboxQueue reads one recipient's queue in that order from
// a Seq on, OutboxRecipients lists each recipient once, FinishOutboxes
// settles many entries, and resealing keeps an entry's place.
func TestOutboxQueueOrder(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	ctx := t.Context()
	a, b, ctlOnly := randUser(), randUser(), randUser()

	// Interleaved writes to a and b, queued one after another.
	var as, bs, all []queuedWrite
	for i := range 6 {
		ma, ea := outgoingMsg(a, fmt.Sprint("a", i))
		wa := queueOut(t, s, ma, ea)
		mb, eb := outgoingMsg(b, fmt.Sprint("b", i))
		wb := queueOut(t, s, mb, eb)
		as, bs, all = append(as, wa), append(bs, wb), append(all, wa, wb)
	}
	for _, w := range all {
		if err := w.p.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	for i, w := range all {
		seq := entrySeq(t, s, w.m.ID)
		if seq <= last {
			t.Fatalf("write %d has Seq %d, after %d", i, seq, last)
		}
		last = seq
	}
	ctlA := OutboxEntry{MsgID: randMsgID(), Recipient: a, Envelope: []byte("contact accept")}
	ctlC := OutboxEntry{MsgID: randMsgID(), Recipient: ctlOnly, Envelope: []byte("contact request")}
	for _, e := range []OutboxEntry{ctlA, ctlC} {
		if err := s.AddControl(ctx, e); err != nil {
			t.Fatal(err)
		}
	}

	wantA := append(msgIDs(as), ctlA.MsgID)
	idsA, esA := queueIDs(t, s, a, 0, 100)
	if !slices.Equal(idsA, wantA) {
		t.Fatalf("a's queue %v, want %v", idsA, wantA)
	}
	if e := esA[len(esA)-1]; !e.Control || string(e.Envelope) != "contact accept" {
		t.Fatalf("control entry in the queue: %+v", e)
	}
	if e := esA[0]; e.Control || string(e.Envelope) != "envelope of a0" {
		t.Fatalf("first entry in the queue: %+v", e)
	}
	if idsB, _ := queueIDs(t, s, b, 0, 100); !slices.Equal(idsB, msgIDs(bs)) {
		t.Fatalf("b's queue %v, want %v", idsB, msgIDs(bs))
	}
	if ids, _ := queueIDs(t, s, ctlOnly, 0, 100); !slices.Equal(ids, []MsgID{ctlC.MsgID}) {
		t.Fatalf("control-only queue %v", ids)
	}

	// after is a Seq (exclusive), limit caps the page.
	seqA2 := esA[2].Seq
	if ids, _ := queueIDs(t, s, a, seqA2, 100); !slices.Equal(ids, wantA[3:]) {
		t.Fatalf("a's queue after a2: %v, want %v", ids, wantA[3:])
	}
	if ids, _ := queueIDs(t, s, a, seqA2, 2); !slices.Equal(ids, wantA[3:5]) {
		t.Fatalf("a's queue after a2, 2 entries: %v, want %v", ids, wantA[3:5])
	}
	if ids, _ := queueIDs(t, s, a, seqA2-1, 1); !slices.Equal(ids, wantA[2:3]) {
		t.Fatalf("a's queue after Seq(a2)-1: %v, want a2", ids)
	}
	// a2 was queued before b2, so b's queue after Seq(a2) starts at b2.
	if ids, _ := queueIDs(t, s, b, seqA2, 100); !slices.Equal(ids, msgIDs(bs[2:])) {
		t.Fatalf("b's queue after Seq(a2): %v, want %v", ids, msgIDs(bs[2:]))
	}
	if ids, _ := queueIDs(t, s, a, esA[len(esA)-1].Seq, 100); len(ids) != 0 {
		t.Fatalf("a's queue after its last entry: %v", ids)
	}
	if ids, _ := queueIDs(t, s, randUser(), 0, 100); len(ids) != 0 {
		t.Fatalf("queue of a stranger: %v", ids)
	}
	if _, err := s.OutboxQueue(ctx, a, 0, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("OutboxQueue with limit 0: %v", err)
	}

	wantRecipients := func(want ...protocol.ID) {
		t.Helper()
		got, err := s.OutboxRecipients(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sortedIDs(got), sortedIDs(want)) {
			t.Fatalf("OutboxRecipients = %v, want %v", got, want)
		}
	}
	wantRecipients(a, b, ctlOnly)

	// Resealing keeps the entry's Seq and place.
	e2, err := s.ResealOutbox(ctx, as[2].m.ID, []byte("sealed again"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e2.Seq != esA[2].Seq || string(e2.Envelope) != "sealed again" || !e2.Session {
		t.Fatalf("resealed entry %+v, want Seq %d", e2, esA[2].Seq)
	}
	idsA, esA2 := queueIDs(t, s, a, 0, 100)
	if !slices.Equal(idsA, wantA) {
		t.Fatalf("a's queue after reseal: %v, want %v", idsA, wantA)
	}
	if string(esA2[2].Envelope) != "sealed again" || !esA2[2].Session || esA2[1].Session || string(esA2[1].Envelope) != "envelope of a1" {
		t.Fatalf("queue does not show the resealed entry: %+v / %+v", esA2[1], esA2[2])
	}
	if _, err := s.ResealOutbox(ctx, randMsgID(), []byte("x"), false, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ResealOutbox of no entry: %v, want ErrNotFound", err)
	}
	if _, err := s.ResealOutbox(ctx, as[2].m.ID, nil, false, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ResealOutbox with no envelope: %v, want ErrInvalid", err)
	}

	// FinishOutboxes: a message entry, a control entry, the same entry
	// twice, an unknown one, a failure.
	gone := randMsgID()
	msgs, errs, err := s.FinishOutboxes(ctx, []Settle{
		{MsgID: as[0].m.ID, Status: StatusDelivered, Path: PathDirect},
		{MsgID: ctlC.MsgID, Status: StatusDelivered},
		{MsgID: as[0].m.ID, Status: StatusDelivered, Path: PathDirect},
		{MsgID: gone, Status: StatusSent},
		{MsgID: bs[0].m.ID, Status: StatusFailed, Path: PathRelay, Error: "gave up"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 5 || len(errs) != 5 {
		t.Fatalf("FinishOutboxes returned %d messages and %d errors for 5 settles", len(msgs), len(errs))
	}
	if errs[0] != nil || msgs[0].ID != as[0].m.ID || msgs[0].Status != StatusDelivered || msgs[0].Path != PathDirect {
		t.Fatalf("finished message: %+v, %v", msgs[0], errs[0])
	}
	if errs[1] != nil || msgs[1].ID != (MsgID{}) {
		t.Fatalf("finished control entry: %+v, %v", msgs[1], errs[1])
	}
	for _, i := range []int{2, 3} {
		if !errors.Is(errs[i], ErrNotFound) || msgs[i].ID != (MsgID{}) {
			t.Fatalf("settle %d (already finished or unknown): %+v, %v, want ErrNotFound", i, msgs[i], errs[i])
		}
	}
	if errs[4] != nil || msgs[4].Status != StatusFailed || msgs[4].Error != "gave up" || msgs[4].Path != PathRelay {
		t.Fatalf("failed message: %+v, %v", msgs[4], errs[4])
	}
	for _, id := range []MsgID{as[0].m.ID, ctlC.MsgID, bs[0].m.ID} {
		if _, err := s.OutboxEntry(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("entry %s after FinishOutboxes: %v", id, err)
		}
	}
	if m, err := s.Message(ctx, as[0].m.ID); err != nil || m.Status != StatusDelivered || m.Path != PathDirect {
		t.Fatalf("stored message after delivery: %+v, %v", m, err)
	}
	if m, err := s.Message(ctx, bs[0].m.ID); err != nil || m.Status != StatusFailed || m.Error != "gave up" {
		t.Fatalf("stored message after failure: %+v, %v", m, err)
	}
	if ids, _ := queueIDs(t, s, a, 0, 100); !slices.Equal(ids, wantA[1:]) {
		t.Fatalf("a's queue after finishing a0: %v, want %v", ids, wantA[1:])
	}
	if ids, _ := queueIDs(t, s, b, 0, 100); !slices.Equal(ids, msgIDs(bs[1:])) {
		t.Fatalf("b's queue after finishing b0: %v", ids)
	}
	wantRecipients(a, b)

	// Finishing again reports every entry as gone, and changes nothing.
	msgs, errs, err = s.FinishOutboxes(ctx, []Settle{{MsgID: as[0].m.ID, Status: StatusRead}, {MsgID: ctlC.MsgID, Status: StatusSent}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range errs {
		if !errors.Is(errs[i], ErrNotFound) || msgs[i].ID != (MsgID{}) {
			t.Fatalf("settle %d again: %+v, %v, want ErrNotFound", i, msgs[i], errs[i])
		}
	}
	if m, err := s.Message(ctx, as[0].m.ID); err != nil || m.Status != StatusDelivered {
		t.Fatalf("message finished twice: %+v, %v", m, err)
	}
	// An invalid settle fails the call, before anything is written.
	if _, _, err := s.FinishOutboxes(ctx, []Settle{{MsgID: as[1].m.ID, Status: StatusDelivered}, {MsgID: as[3].m.ID, Status: "bogus"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("FinishOutboxes with a bad status: %v", err)
	}
	if _, err := s.OutboxEntry(ctx, as[1].m.ID); err != nil {
		t.Fatalf("entry after a rejected FinishOutboxes: %v", err)
	}
	if msgs, errs, err := s.FinishOutboxes(ctx, nil); err != nil || len(msgs) != 0 || len(errs) != 0 {
		t.Fatalf("FinishOutboxes(nil) = %v, %v, %v", msgs, errs, err)
	}

	// When b's queue is empty, b is no longer a recipient.
	var settles []Settle
	for _, w := range bs[1:] {
		settles = append(settles, Settle{MsgID: w.m.ID, Status: StatusSent, Path: PathMailbox})
	}
	if _, errs, err := s.FinishOutboxes(ctx, settles); err != nil || slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		t.Fatalf("finishing b's queue: %v, %v", errs, err)
	}
	wantRecipients(a)
	if ids, _ := queueIDs(t, s, b, 0, 100); len(ids) != 0 {
		t.Fatalf("b's queue after finishing it: %v", ids)
	}
}

// TestOutboxRecipientsMany checks OutboxRecipients over many recipients
// with queues of different lengths.
func TestOutboxRecipientsMany(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	var want []protocol.ID
	var pend []queuedWrite
	for i := range 30 {
		to := randUser()
		want = append(want, to)
		for j := range i % 4 {
			m, e := outgoingMsg(to, fmt.Sprint(i, "/", j))
			pend = append(pend, queueOut(t, s, m, e))
		}
		if i%4 == 0 {
			if err := s.AddControl(t.Context(), OutboxEntry{MsgID: randMsgID(), Recipient: to, Envelope: []byte("ctl")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, w := range pend {
		if err := w.p.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.OutboxRecipients(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sortedIDs(got), sortedIDs(want)) {
		t.Fatalf("OutboxRecipients: %d recipients, want %d", len(got), len(want))
	}
}

// TestOutboxSeqAfterReopen checks that after a restart new entries get
// larger Seqs than the entries from before, which keep theirs.
func TestOutboxSeqAfterReopen(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	a, b := randUser(), randUser()
	var before []queuedWrite
	for i := range 5 {
		for _, to := range []protocol.ID{a, b} {
			m, e := outgoingMsg(to, fmt.Sprint("before ", i))
			before = append(before, queueOut(t, s, m, e))
		}
	}
	seqs := map[MsgID]uint64{}
	var maxSeq uint64
	for _, w := range before {
		if err := w.p.Wait(); err != nil {
			t.Fatal(err)
		}
		seqs[w.m.ID] = entrySeq(t, s, w.m.ID)
		maxSeq = max(maxSeq, seqs[w.m.ID])
	}
	oldA, _ := queueIDs(t, s, a, 0, 100)

	s = reopen(t, s, c)
	for id, seq := range seqs {
		if got := entrySeq(t, s, id); got != seq {
			t.Fatalf("entry %s has Seq %d after reopen, had %d", id, got, seq)
		}
	}
	var after []queuedWrite
	for i := range 3 {
		m, e := outgoingMsg(a, fmt.Sprint("after ", i))
		after = append(after, queueOut(t, s, m, e))
	}
	ctl := OutboxEntry{MsgID: randMsgID(), Recipient: b, Envelope: []byte("ctl after")}
	if err := s.AddControl(ctx, ctl); err != nil {
		t.Fatal(err)
	}
	last := maxSeq
	for _, w := range after {
		if err := w.p.Wait(); err != nil {
			t.Fatal(err)
		}
		seq := entrySeq(t, s, w.m.ID)
		if seq <= last {
			t.Fatalf("entry written after reopen has Seq %d, not above %d", seq, last)
		}
		last = seq
	}
	if seq := entrySeq(t, s, ctl.MsgID); seq <= last {
		t.Fatalf("control entry written after reopen has Seq %d, not above %d", seq, last)
	}
	if ids, _ := queueIDs(t, s, a, 0, 100); !slices.Equal(ids, append(oldA, msgIDs(after)...)) {
		t.Fatalf("a's queue after reopen: %v, want the old entries, then the new", ids)
	}
	// And once more, with the new entries on disk.
	s = reopen(t, s, c)
	m, e := outgoingMsg(a, "after the second reopen")
	if _, err := s.AddOutgoing(ctx, m, e); err != nil {
		t.Fatal(err)
	}
	if seq := entrySeq(t, s, m.ID); seq <= entrySeq(t, s, ctl.MsgID) {
		t.Fatalf("entry written after the second reopen has Seq %d, not above %d", seq, entrySeq(t, s, ctl.MsgID))
	}
}
