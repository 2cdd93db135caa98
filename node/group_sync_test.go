package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/parley-chat/parley/protocol"
)

// TestGroupCatchUp: three members on a line 0–1–2. Member 2 drops off,
// misses 20 messages, comes back and, when member 1 shows up on the
// topic again, asks it for them over /parley/group-sync/1.0.0: it stores
// all 20, each once, and a second sync brings nothing new. A request posing as another member is refused.
func TestGroupCatchUp(t *testing.T) {
	net := newGroupNet(t, 3, false)
	ctx := context.Background()
	st, err := net.members[0].g.createGroup(ctx, "catch up", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	mid, late := net.members[1], net.members[2]
	// Cut off for good until reconnected below: neither side keeps the
	// other's addresses to dial again (a redial mid-way made it receive
	// some of the messages it was to miss).
	late.h.Peerstore().ClearAddrs(mid.h.ID())
	mid.h.Peerstore().ClearAddrs(late.h.ID())
	if err := late.h.Network().ClosePeer(mid.h.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "member 2 is cut off", func() bool {
		return late.h.Network().Connectedness(mid.h.ID()) != network.Connected
	})
	want := map[protocol.MsgID]string{}
	for i := range 20 {
		body := fmt.Sprintf("missed %d", i)
		sent, err := net.members[0].g.sendGroup(ctx, st.Group, body)
		if err != nil {
			t.Fatal(err)
		}
		want[sent.ID] = body
	}
	net.waitHistory(0, st.Group, want)
	net.waitHistory(1, st.Group, want)
	if h := late.history(t, st.Group); len(h) != 0 {
		t.Fatalf("the member who was away holds %d messages", len(h))
	}

	// Back on the line, member 2 sees member 1 join the topic and asks.
	net.connect(1, 2)
	net.waitHistory(2, st.Group, want)
	if n, err := late.g.syncGroup(ctx, st.Group, mid.h.ID()); err != nil || n != 0 {
		t.Fatalf("a second sync stored %d (%v), want 0", n, err)
	}
	net.waitHistory(2, st.Group, want)

	// Member 2's request, relabelled as member 0's: refused, nothing sent.
	own, err := late.st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := net.members[0].st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	req, err := own.SyncRequest([]byte(mid.h.ID()), []protocol.GroupSyncWant{{Sender: admin.Sender(), Chain: admin.ID()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req.Requester, req.RequesterChain = admin.Sender(), admin.ID()
	s, err := late.h.NewStream(ctx, mid.h.ID(), groupSyncProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := protocol.WriteGroupSyncRequest(s, req); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	if msgs, err := protocol.ReadGroupSyncResponse(bufio.NewReader(s)); err == nil {
		t.Fatalf("a request posing as another member got %d messages", len(msgs))
	}
}

// TestGroupSyncVerifiesInFull: a message that comes by group sync has
// passed no topic validator, so it is verified in full when opened. Member
// 1's node answers member 2's sync with a message of member 0's chain
// that was never published, its signature altered (its ciphertext still
// opens with the chain key every member holds): refused, nothing stored,
// the chain unmoved. The same message with its signature intact is then
// stored by the same sync.
func TestGroupSyncVerifiesInFull(t *testing.T) {
	net := newGroupNet(t, 3, false)
	ctx := context.Background()
	st, err := net.members[0].g.createGroup(ctx, "sync forgery", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	mid, late := net.members[1], net.members[2]
	own, err := net.members[0].st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	genuine, _, err := own.Seal(protocol.KindText, []byte("never published"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged, err := protocol.ParseGroupMessage(genuine.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	forged.Signature = bytes.Clone(forged.Signature)
	forged.Signature[0] ^= 1
	answer := func(raw []byte) {
		mid.h.SetStreamHandler(groupSyncProtocol, func(s network.Stream) {
			defer s.Close()
			if _, err := protocol.ReadGroupSyncRequest(bufio.NewReader(s)); err != nil {
				_ = s.Reset()
				return
			}
			_ = protocol.WriteGroupSyncResponse(s, [][]byte{raw})
		})
	}
	chainAt := func() uint32 {
		c, err := late.st.SenderChain(ctx, st.Group, st.Epoch, own.Sender(), own.ID())
		if err != nil {
			t.Fatal(err)
		}
		return c.Iteration()
	}
	before := chainAt()

	answer(forged.Marshal())
	if n, err := late.g.syncGroup(ctx, st.Group, mid.h.ID()); err != nil || n != 0 {
		t.Fatalf("a sync answered with a forged signature stored %d (%v), want 0", n, err)
	}
	if _, err := late.g.receive(ctx, forged); !isErr(err, protocol.ErrAuth) {
		t.Fatalf("opening the forged message = %v, want protocol.ErrAuth", err)
	}
	if h := late.history(t, st.Group); len(h) != 0 || chainAt() != before {
		t.Fatalf("after the forgery: %d messages stored, chain at %d (was %d)", len(h), chainAt(), before)
	}

	answer(genuine.Marshal())
	if n, err := late.g.syncGroup(ctx, st.Group, mid.h.ID()); err != nil || n != 1 {
		t.Fatalf("a sync answered with the genuine message stored %d (%v), want 1", n, err)
	}
	net.waitHistory(2, st.Group, map[protocol.MsgID]string{genuine.MsgID: "never published"})
}
