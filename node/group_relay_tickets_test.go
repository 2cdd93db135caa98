package node

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// waitTicket waits until the relay is on st's topic with a ticket of n
// keys.
func (gr *groupRelay) waitTicket(tb testing.TB, st *protocol.GroupState, n int) {
	tb.Helper()
	name := protocol.Topic(st)
	waitFor(tb, 20*time.Second, fmt.Sprintf("the relay carries epoch %d with %d keys", st.Epoch, n), func() bool {
		t := gr.srv.Ticket(name)
		return t != nil && len(t.Keys) == n && slices.Contains(gr.srv.Topics(), name)
	})
}

// waitIssued waits until the relay holds the last ticket admin made for
// st's epoch, the one the next epoch's ticket follows, and returns it.
func (gr *groupRelay) waitIssued(tb testing.TB, admin *groupMember, st *protocol.GroupState) *protocol.RelayTicket {
	tb.Helper()
	var held *protocol.RelayTicket
	waitFor(tb, 20*time.Second, fmt.Sprintf("the relay holds the admin's last ticket of epoch %d", st.Epoch), func() bool {
		rt := admin.g.relays
		rt.mu.Lock()
		last := rt.latest[st.Group][st.Epoch]
		rt.mu.Unlock()
		held = gr.srv.Ticket(protocol.Topic(st))
		return last != nil && held != nil && last.Hash() == held.Hash()
	})
	return held
}
