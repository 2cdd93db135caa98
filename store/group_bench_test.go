package store

import (
	"context"
	"testing"
	"time"
)

// BenchmarkStoreGroupMessage stores received group messages one at a
// time, each opened with its chain and written with the chain's next
// state in one synced transaction (what a member does per message).
//
//	go test -tags noassets ./store/ -run '^$' -bench StoreGroupMessage
func BenchmarkStoreGroupMessage(b *testing.B) {
	s, _, _ := newTestStore(b)
	ctx := context.Background()
	p := newGroupPeer(b)
	joinGroup(b, s, p)
	chain, err := s.SenderChain(ctx, p.state.Group, 1, otherKey.ID(), p.own.ID())
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 256)
	for b.Loop() {
		m := p.seal(b, string(body), time.Now())
		pl, next, err := chain.Open(m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.StoreGroupMessage(ctx, GroupMessage{
			Group: m.Group, ID: m.MsgID, Epoch: m.Epoch, From: m.Sender, Chain: m.Chain, Iteration: m.Iteration,
			Kind: "text", Body: pl.Body, Raw: m.Marshal(), SentAt: m.Time(),
		}, next); err != nil {
			b.Fatal(err)
		}
		chain = next
	}
}
