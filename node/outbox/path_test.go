package outbox

import (
	"slices"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestRelayedThenDirect: while the only connection is relayed, messages
// go on a stream over it and settle with path relay; once a direct
// connection exists (a hole punch), the courier ends the relayed stream
// with nothing in flight and sends the next messages on a new stream,
// path direct, nothing sent twice.
func TestRelayedThenDirect(t *testing.T) {
	to := protocol.ID{3}
	st := newMemStore()
	var punched atomic.Bool
	r := &receiver{
		scripts: []func(int, store.MsgID) ([]protocol.Ack, bool){ackAll},
		limited: func() bool { return !punched.Load() },
	}
	cfg := testConfig(st, r)
	cfg.Better = func(str network.Stream) bool { return str.Conn().Stat().Limited && punched.Load() }
	o, _, _ := run(t, cfg, r)

	relayed := st.add(to, 5)
	o.Rush(to)
	waitDrained(t, st, to)
	for _, e := range relayed {
		if p := st.path(e.MsgID); p != store.PathRelay {
			t.Errorf("entry %d delivered over the relayed stream with path %q, want relay", e.Seq, p)
		}
	}

	punched.Store(true)
	direct := st.add(to, 5)
	o.Rush(to)
	waitDrained(t, st, to)
	for _, e := range direct {
		if p := st.path(e.MsgID); p != store.PathDirect {
			t.Errorf("entry %d sent after the punch with path %q, want direct", e.Seq, p)
		}
	}
	carried := r.carried()
	if len(carried) != 2 || !slices.Equal(carried[0], ids(relayed)) || !slices.Equal(carried[1], ids(direct)) {
		t.Errorf("streams carried %x, want the first five on the relayed one and the next five on the direct one", carried)
	}
	if got, want := o.Stats(), (Stats{Sent: 10}); got != want {
		t.Errorf("Stats = %+v, want %+v (nothing sent twice)", got, want)
	}
}
