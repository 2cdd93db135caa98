package outbox

import (
	"slices"
	"testing"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestRetryRefusal: a refusal that is for good (AckNotAFriend) is settled
// as failed, unless Retry says it may pass later: then the entry stays
// queued and goes again, in its place, on a new stream, and is delivered
// when the recipient takes it.
func TestRetryRefusal(t *testing.T) {
	for _, retry := range []bool{false, true} {
		to := protocol.ID{5}
		st := newMemStore()
		es := st.add(to, 2)
		refuse := func(_ int, id store.MsgID) ([]protocol.Ack, bool) {
			return []protocol.Ack{{MsgID: id, Code: protocol.AckNotAFriend}}, false
		}
		r := &receiver{scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){refuse, ackAll}}
		cfg := testConfig(st, r)
		var asked []protocol.AckCode
		cfg.Retry = func(e store.OutboxEntry, code protocol.AckCode) bool {
			asked = append(asked, code) // only the courier's reader calls it, one at a time
			return retry
		}
		run(t, cfg, r)
		waitDrained(t, st, to)
		want := store.StatusFailed
		if retry {
			want = store.StatusDelivered
		}
		for _, e := range es {
			if got := st.status(e.MsgID); got != want {
				t.Errorf("retry %v: entry %x is %q, want %q", retry, e.MsgID[:1], got, want)
			}
		}
		// Refused for good: one stream, both refused on it. Retried: the
		// stream ends at the refusal, and the next carries both, in order.
		c := r.carried()
		switch {
		case !retry && (len(c) != 1 || !slices.Equal(c[0], ids(es))):
			t.Errorf("refused for good: streams carried %x", c)
		case retry && (len(c) < 2 || !slices.Equal(c[len(c)-1], ids(es))):
			t.Errorf("retried: streams carried %x", c)
		}
		if len(asked) == 0 || asked[0] != protocol.AckNotAFriend {
			t.Errorf("retry %v: Retry asked about %v", retry, asked)
		}
	}
}
