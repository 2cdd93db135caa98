package mailbox

import (
	"testing"

	"github.com/parley-chat/parley/protocol"
)

// TestAckDuringScanSendsNothingTwice: an acknowledgement that lands while
// a pass of sendNew scans (its envelope deleted after the scan's snapshot
// was taken) must not make the scan send that envelope again, and the
// next pass forgets it. Real badger: the scan's snapshot still holds the
// deleted envelope, which is what made a subscriber get one twice.
func TestAckDuringScanSendsNothingTwice(t *testing.T) {
	w := newWorld(t, noLimits)
	var to protocol.ID
	d := w.srv.db
	first, err := d.put(to, "depositor", []byte("first"), w.clock.Now(), w.srv.lim)
	if err != nil {
		t.Fatal(err)
	}
	second, err := d.put(to, "depositor", []byte("second"), w.clock.Now(), w.srv.lim)
	if err != nil {
		t.Fatal(err)
	}
	sent := newSentSet()
	sent.add(first) // sent in an earlier pass, not yet acknowledged

	// The acknowledgement of first lands as the scan reaches its first
	// key, as readAcks does it: deletion committed, then marked.
	acked := false
	skip := func(id uint64) bool {
		if !acked {
			acked = true
			if n, err := d.remove(to, []uint64{first}); err != nil || n != 1 {
				t.Fatalf("remove = %d, %v", n, err)
			}
			sent.acked([]uint64{first})
		}
		return sent.has(id)
	}
	items, err := d.scan(to, 0, fetchBatch, skip)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, it := range items {
		got = append(got, it.id)
	}
	if len(got) != 1 || got[0] != second {
		t.Fatalf("the scan gave IDs %v, want only the second envelope's, %d: the first (%d) was acknowledged mid-scan", got, second, first)
	}
	sent.add(second)

	// The next pass forgets the acknowledged ID (it is gone from the
	// database) and still skips the pending one.
	sent.forgetAcked()
	if sent.has(first) {
		t.Error("the acknowledged envelope is still remembered after the next pass began")
	}
	if !sent.has(second) {
		t.Error("the pending envelope was forgotten")
	}
	items, err = d.scan(to, 0, fetchBatch, sent.has)
	if err != nil || len(items) != 0 {
		t.Fatalf("a later pass found %d items (%v), want none", len(items), err)
	}

	// An acknowledgement of an ID never sent adds nothing.
	sent.acked([]uint64{second + 100})
	sent.forgetAcked()
	if sent.has(second + 100) {
		t.Error("an ID never sent was remembered")
	}
}
