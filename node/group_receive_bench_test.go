package node

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/protocol"
)

// BenchmarkGroupReceive is one member's own work for a group message
// that arrives on the topic, without the network: the topic validator
// (parse, time, Ed25519 verification, the sender's rate) and the reader
// (open with the sender's stored chain, store the message with the
// chain's next state in one synced transaction, on a real badger store).
// Each op is the next message of another member's chain. It reports
// cpu-us/msg, the process's CPU time a message (the store's sync is
// waited for, not spent: ns/op counts it).
//
//	go test -tags noassets ./node/ -run '^$' -bench GroupReceive -benchtime 2000x
func BenchmarkGroupReceive(b *testing.B) {
	fast := groupguard.Rate{Msgs: 1e9, BurstMsgs: 1 << 30, Bytes: 1e12, BurstBytes: 1 << 40}
	net := newGroupNetLimits(b, 2, false, groupguard.Config{Chain: fast, Peer: fast})
	ctx := context.Background()
	st, err := net.members[0].g.createGroup(ctx, "receive", net.users())
	if err != nil {
		b.Fatal(err)
	}
	net.waitKeyed(st)
	sender, recv := net.members[0], net.members[1]
	own, err := sender.st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(string(make([]byte, groupFanoutSize)))
	topic := protocol.Topic(st)
	from := sender.h.ID()
	var cpu time.Duration
	n := 0
	for b.Loop() {
		m, next, err := own.Seal(protocol.KindText, body, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		own = next
		msg := &pubsub.Message{Message: &pb.Message{Data: m.Marshal(), Topic: &topic}, ReceivedFrom: from}
		c0 := processCPU(b)
		if r := recv.g.validate(ctx, st.Group, st.Epoch, from, msg); r != pubsub.ValidationAccept {
			b.Fatalf("validation: %v", r)
		}
		a, ok := msg.ValidatorData.(verifiedArrival)
		if !ok {
			b.Fatalf("validator data %T", msg.ValidatorData)
		}
		if _, err := recv.g.receiveVerified(ctx, a); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU(b) - c0
		n++
	}
	if n > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-us/msg")
	}
}
