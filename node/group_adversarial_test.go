package node

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// TestGroupTopicRefusesForgeries: three members on a line 0–1–2, and an
// outsider's host, with no validator of its own, connected to member 1
// only. What the outsider publishes on the group's topic — garbage, a
// tampered copy of a real message, a message of member 1's chain passed
// off as member 0's, one relabelled to another epoch, a replay — is
// refused by member 1's validator, never reaches member 2, and changes no
// one's history.
func TestGroupTopicRefusesForgeries(t *testing.T) {
	net := newGroupNet(t, 3, false)
	ctx := context.Background()
	st, err := net.members[0].g.createGroup(ctx, "three", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	genuine, err := net.members[0].g.sendGroup(ctx, st.Group, "genuine")
	if err != nil {
		t.Fatal(err)
	}
	want := map[protocol.MsgID]string{genuine.ID: "genuine"}
	for i := range net.members {
		net.waitHistory(i, st.Group, want)
	}

	// The forgeries, from what member 1 holds.
	reparse := func(raw []byte) *protocol.GroupMessage {
		m, err := protocol.ParseGroupMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tampered := reparse(genuine.Raw)
	tampered.Ciphertext = bytes.Clone(tampered.Ciphertext)
	tampered.Ciphertext[0] ^= 1
	relabelled := reparse(genuine.Raw)
	relabelled.Epoch = 2
	own, err := net.members[1].st.OwnChain(ctx, st.Group, 1)
	if err != nil {
		t.Fatal(err)
	}
	posing, _, err := own.Seal(protocol.KindText, []byte("member 0 says so"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	posing.Sender, posing.Chain = genuine.From, genuine.Chain
	forged := [][]byte{[]byte("not a group message"), tampered.Marshal(), relabelled.Marshal(), posing.Marshal()}

	// The outsider.
	hk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	oh, err := newHost(hostSpec{key: hk, listen: []string{"/ip4/127.0.0.1/tcp/0"}, low: 50, high: 100})
	if err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); oh.Close() })
	ops, err := newGroupPubSub(octx, oh, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	m1 := net.members[1]
	if err := oh.Connect(ctx, peer.AddrInfo{ID: m1.h.ID(), Addrs: m1.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	ot, err := ops.Join(protocol.Topic(st))
	if err != nil {
		t.Fatal(err)
	}
	osub, err := ot.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer osub.Cancel()
	waitFor(t, 20*time.Second, "the outsider sees member 1 on the topic", func() bool {
		return slices.Contains(ot.ListPeers(), m1.h.ID())
	})
	before := m1.mesh.rejects()
	for _, b := range append(forged, genuine.Raw) {
		if err := ot.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "member 1 rejects every forgery", func() bool {
		return m1.mesh.rejects() >= before+len(forged)
	})
	for i, b := range forged {
		if net.members[2].mesh.saw(b) || net.members[0].mesh.saw(b) {
			t.Fatalf("forgery %d was forwarded past member 1", i)
		}
	}
	// The replayed message, had it come back after pubsub forgot it, is
	// refused when opened, and stored once.
	if _, err := m1.g.receive(ctx, reparse(genuine.Raw)); !isErr(err, protocol.ErrGroupReplay) {
		t.Fatalf("a replay at member 1 = %v, want protocol.ErrGroupReplay", err)
	}
	for i := range net.members {
		net.waitHistory(i, st.Group, want)
	}
}
