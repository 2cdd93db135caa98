package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/protocol"
)

// heapGrowthBound bounds how much the heap of the whole test process
// (every host, store and router in it) may grow across a flood.
const heapGrowthBound = 16 << 20

// rawPeer is an attacker's host that speaks gossipsub by hand: it writes
// RPCs of its own making on a stream to one victim, and reads what the
// victim sends it (counting the message IDs it is asked for with IWANT).
type rawPeer struct {
	h host.Host
	s network.Stream

	mu      sync.Mutex
	iwanted int // message IDs the victim asked for
	stray   int // IDs asked for that were not advertised (no bogusPrefix)
}

// bogusPrefix starts every message ID the attacker advertises.
const bogusPrefix = "bogus"

// newRawPeer starts an attacker's host, connects it to victim and
// subscribes it to topic.
func newRawPeer(t *testing.T, victim host.Host, topic string) *rawPeer {
	t.Helper()
	hk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHost(hostSpec{key: hk, listen: []string{"/ip4/127.0.0.1/tcp/0"}, low: 50, high: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	r := &rawPeer{h: h}
	// The victim's router opens its own stream to us: read it, or the
	// victim would not count us as a pubsub peer (nor score us).
	h.SetStreamHandler(pubsub.GossipSubID_v11, func(s network.Stream) {
		defer s.Reset()
		br := bufio.NewReader(s)
		for {
			var rpc pb.RPC
			if err := readRPC(br, &rpc); err != nil {
				return
			}
			r.mu.Lock()
			for _, w := range rpc.GetControl().GetIwant() {
				for _, id := range w.GetMessageIDs() {
					r.iwanted++
					if !strings.HasPrefix(id, bogusPrefix) {
						r.stray++
					}
				}
			}
			r.mu.Unlock()
		}
	})
	ctx := context.Background()
	if err := h.Connect(ctx, peer.AddrInfo{ID: victim.ID(), Addrs: victim.Addrs()}); err != nil {
		t.Fatal(err)
	}
	r.s, err = h.NewStream(ctx, victim.ID(), pubsub.GossipSubID_v11)
	if err != nil {
		t.Fatal(err)
	}
	r.send(t, &pb.RPC{Subscriptions: []*pb.RPC_SubOpts{{Subscribe: proto.Bool(true), Topicid: proto.String(topic)}}})
	return r
}

func readRPC(br *bufio.Reader, rpc *pb.RPC) error {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return err
	}
	return proto.Unmarshal(b, rpc)
}

// send writes one RPC, length-prefixed as gossipsub frames them.
func (r *rawPeer) send(t *testing.T, rpc *pb.RPC) {
	t.Helper()
	b, err := proto.Marshal(rpc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...)); err != nil {
		t.Fatalf("attacker's write: %v", err)
	}
}

// publish sends msgs on topic, ten to an RPC.
func (r *rawPeer) publish(t *testing.T, topic string, msgs [][]byte) {
	t.Helper()
	for batch := range slices.Chunk(msgs, 10) {
		rpc := &pb.RPC{}
		for _, data := range batch {
			rpc.Publish = append(rpc.Publish, &pb.Message{Data: data, Topic: proto.String(topic)})
		}
		r.send(t, rpc)
	}
}

func (r *rawPeer) iwants() (asked, stray int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.iwanted, r.stray
}

// heapNow is the live heap after a collection.
func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// checkHeap fails if the heap grew more than heapGrowthBound since before.
func checkHeap(t *testing.T, before uint64, what string) {
	t.Helper()
	after := heapNow()
	grew := int64(after) - int64(before)
	t.Logf("%s: heap %d KiB before, %d KiB after (%+d KiB)", what, before>>10, after>>10, grew>>10)
	if grew > heapGrowthBound {
		t.Fatalf("%s: the heap grew by %d MiB (bound %d MiB)", what, grew>>20, heapGrowthBound>>20)
	}
}

// waitHolds waits until member i's history holds each of want (and
// perhaps more).
func (net *groupNet) waitHolds(i int, id protocol.GroupID, want map[protocol.MsgID]string) {
	net.t.Helper()
	waitFor(net.t, 30*time.Second, fmt.Sprintf("member %d holds all %d honest messages", i, len(want)), func() bool {
		have := map[protocol.MsgID]string{}
		for _, m := range net.members[i].history(net.t, id) {
			have[m.ID] = string(m.Body)
		}
		for id, body := range want {
			if have[id] != body {
				return false
			}
		}
		return true
	})
}

// waitGraylisted waits until member m's router scores p below the
// graylist threshold.
func waitGraylisted(t *testing.T, m *groupMember, p peer.ID) float64 {
	t.Helper()
	var score float64
	waitFor(t, 20*time.Second, "the attacker is graylisted", func() bool {
		s, ok := m.g.guard.Score(p)
		score = s
		return ok && s < groupguard.GraylistThreshold
	})
	return score
}

// groupOfFour starts four members on a line 0–1–2–3 in one group.
func groupOfFour(t *testing.T) (*groupNet, *protocol.GroupState) {
	t.Helper()
	net := newGroupNet(t, 4, false)
	st, err := net.members[0].g.createGroup(context.Background(), "four", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	return net, st
}

// sendHonest has member i post body and adds it to want.
func (net *groupNet) sendHonest(i int, id protocol.GroupID, body string, want map[protocol.MsgID]string) {
	net.t.Helper()
	sent, err := net.members[i].g.sendGroup(context.Background(), id, body)
	if err != nil {
		net.t.Fatalf("member %d sends %q: %v", i, body, err)
	}
	want[sent.ID] = body
}

// TestGroupFloodOfForgeries: an attacker's host, subscribed to a group's
// topic and connected to member 1 only, sends 1,000 forged messages
// (garbage, tampered copies of a real message, messages of one member's
// chain passed off as another's, messages on chains nobody holds) while
// members 0 and 3 keep posting. Every forgery stops at member 1: none is
// accepted there or seen by anyone else; member 1's router graylists the
// attacker; every honest message reaches every member; the heap stays
// bounded.
func TestGroupFloodOfForgeries(t *testing.T) {
	net, st := groupOfFour(t)
	ctx := context.Background()
	m1 := net.members[1]
	topic := protocol.Topic(st)
	want := map[protocol.MsgID]string{}
	net.sendHonest(0, st.Group, "before", want)
	net.waitHolds(3, st.Group, want)
	genuine, _, err := m1.st.GroupMessages(ctx, st.Group, "", 1)
	if err != nil || len(genuine) != 1 {
		t.Fatalf("member 1's copy of the first message: %v", err)
	}
	own1, err := m1.st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}

	// 1,000 distinct forgeries.
	forged := make([][]byte, 0, 1000)
	for i := range 1000 {
		switch i % 4 {
		case 0: // garbage
			forged = append(forged, fmt.Appendf(nil, "not a group message %d", i))
		case 1: // a tampered copy: the signature fails
			m, err := protocol.ParseGroupMessage(genuine[0].Raw)
			if err != nil {
				t.Fatal(err)
			}
			m.Ciphertext = slices.Clone(m.Ciphertext)
			binary.BigEndian.PutUint32(m.Ciphertext, uint32(i))
			forged = append(forged, m.Marshal())
		case 2: // member 1's chain posing as member 0's: the signature fails
			m, _, err := own1.Seal(protocol.KindText, fmt.Appendf(nil, "member 0 says %d", i), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			m.Sender, m.Chain = genuine[0].From, genuine[0].Chain
			forged = append(forged, m.Marshal())
		case 3: // a chain nobody holds
			m, err := protocol.ParseGroupMessage(genuine[0].Raw)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = rand.Read(m.Chain[:])
			forged = append(forged, m.Marshal())
		}
	}

	attacker := newRawPeer(t, m1.h, topic)
	waitFor(t, 10*time.Second, "member 1 sees the attacker on the topic", func() bool {
		return slices.Contains(m1.g.topic(st.Group).topic.ListPeers(), attacker.h.ID())
	})
	before := heapNow()
	dropped0, rejected0 := m1.g.guard.Stats().PeerDropped, m1.mesh.rejects()
	for round := range 10 {
		attacker.publish(t, topic, forged[round*100:(round+1)*100])
		net.sendHonest(0, st.Group, fmt.Sprintf("from 0 during the flood, %d", round), want)
		net.sendHonest(3, st.Group, fmt.Sprintf("from 3 during the flood, %d", round), want)
	}
	for i := range net.members {
		net.waitHolds(i, st.Group, want)
	}
	// Every forgery reached member 1 and was accounted for there: dropped
	// over the attacker's rate before the router saw it, or read (then
	// refused by the validator, or dropped unread once graylisted).
	score := waitGraylisted(t, m1, attacker.h.ID())
	waitFor(t, 10*time.Second, "member 1 accounts for all 1,000", func() bool {
		recv, _ := m1.mesh.counts(attacker.h.ID())
		return uint64(recv)+m1.g.guard.Stats().PeerDropped-dropped0 == 1000
	})
	recv, delivered := m1.mesh.counts(attacker.h.ID())
	dropped := m1.g.guard.Stats().PeerDropped - dropped0
	t.Logf("member 1: %d forgeries dropped over the rate, %d read, %d rejected by the validator; attacker's score %.0f",
		dropped, recv, m1.mesh.rejects()-rejected0, score)
	if delivered != 0 {
		t.Fatalf("member 1 accepted %d forgeries", delivered)
	}
	if m1.mesh.rejects()-rejected0 < 6 {
		t.Fatalf("member 1 rejected %d forgeries, fewer than graylisting takes", m1.mesh.rejects()-rejected0)
	}
	for i, m := range net.members {
		if i == 1 {
			continue
		}
		for j, f := range forged {
			if m.mesh.saw(f) {
				t.Fatalf("forgery %d got past member 1 to member %d", j, i)
			}
		}
	}
	// Nothing but the honest messages was stored anywhere.
	for i := range net.members {
		net.waitHistory(i, st.Group, want)
	}
	checkHeap(t, before, "1,000 forgeries")
}

// TestGroupFloodOverRate: a member's chain key in an attacker's host
// (connected to member 1 only) posts 1,000 valid messages at once. Member
// 1 admits the attacker's peer burst, and of that what the chain's rate
// allows; the rest stops there. Members 0 and 2 store no more of the
// chain's messages than its rate allows; the attacker is graylisted;
// every honest message reaches every member; the heap stays bounded.
func TestGroupFloodOverRate(t *testing.T) {
	net, st := groupOfFour(t)
	ctx := context.Background()
	m1, mallory := net.members[1], net.members[3]
	topic := protocol.Topic(st)
	chain, err := mallory.st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	spam := make([][]byte, 0, 1000)
	for i := range 1000 {
		m, next, err := chain.Seal(protocol.KindText, fmt.Appendf(nil, "spam %d", i), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		chain = next
		spam = append(spam, m.Marshal())
	}
	attacker := newRawPeer(t, m1.h, topic)
	waitFor(t, 10*time.Second, "member 1 sees the attacker on the topic", func() bool {
		return slices.Contains(m1.g.topic(st.Group).topic.ListPeers(), attacker.h.ID())
	})

	want := map[protocol.MsgID]string{}
	before := heapNow()
	start := time.Now()
	for round := range 10 {
		attacker.publish(t, topic, spam[round*100:(round+1)*100])
		net.sendHonest(0, st.Group, fmt.Sprintf("from 0 during the spam, %d", round), want)
		net.sendHonest(2, st.Group, fmt.Sprintf("from 2 during the spam, %d", round), want)
	}
	for i := range net.members {
		net.waitHolds(i, st.Group, want)
	}
	score := waitGraylisted(t, m1, attacker.h.ID())
	elapsed := time.Since(start)
	lim := m1.g.guard.Config()
	// What the chain's rate allows over the flood, with a message of
	// slack for the refill while the test looks.
	allowed := lim.Chain.BurstMsgs + int(lim.Chain.Msgs*elapsed.Seconds()) + 1
	_, delivered := m1.mesh.counts(attacker.h.ID())
	t.Logf("member 1 took %d of 1,000 over %v (chain allows %d); %d dropped over the peer's rate; attacker's score %.0f",
		delivered, elapsed.Round(time.Millisecond), allowed, m1.g.guard.Stats().PeerDropped, score)
	if delivered > allowed {
		t.Fatalf("member 1 accepted %d of the chain's messages, more than its rate allows (%d)", delivered, allowed)
	}
	for _, i := range []int{0, 2} {
		spammed := 0
		for _, m := range net.members[i].history(t, st.Group) {
			if m.From == mallory.key.ID() {
				spammed++
			}
		}
		if spammed > allowed {
			t.Fatalf("member %d stored %d of the chain's messages, more than its rate allows (%d)", i, spammed, allowed)
		}
	}
	checkHeap(t, before, "1,000 over the rate")
}

// TestGroupIHaveFlood: an attacker's host on a group's topic, connected
// to member 1 only, advertises bogus message IDs (IHAVE, a thousand to an
// RPC) and asks for bogus ones (IWANT), wave after wave, while members 0
// and 2 keep posting. Member 1 asks for at most MaxIHaveLength IDs per
// heartbeat, and only ones advertised; the broken promises soon cost the
// attacker its score; every honest message reaches every member; the heap
// stays bounded.
func TestGroupIHaveFlood(t *testing.T) {
	net := newGroupNet(t, 3, false)
	st, err := net.members[0].g.createGroup(context.Background(), "three", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	m1 := net.members[1]
	topic := protocol.Topic(st)
	attacker := newRawPeer(t, m1.h, topic)
	waitFor(t, 10*time.Second, "member 1 sees the attacker on the topic", func() bool {
		return slices.Contains(m1.g.topic(st.Group).topic.ListPeers(), attacker.h.ID())
	})
	// bogus are n message IDs of our hash's size, each starting with
	// prefix.
	bogus := func(n int, prefix string) []string {
		ids := make([]string, n)
		for i := range ids {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			ids[i] = prefix + string(b[len(prefix):])
		}
		return ids
	}

	want := map[protocol.MsgID]string{}
	before := heapNow()
	start := time.Now()
	deadline := start.Add(25 * time.Second)
	// The attacker sends a wave every 100 ms: ten IHAVEs and ten IWANTs
	// of a thousand IDs each (an RPC must stay under the size cap).
	pace := time.NewTicker(100 * time.Millisecond)
	defer pace.Stop()
	waves := 0
	for {
		for range 10 {
			attacker.send(t, &pb.RPC{Control: &pb.ControlMessage{
				Ihave: []*pb.ControlIHave{{TopicID: proto.String(topic), MessageIDs: bogus(groupguard.MaxIHaveLength, bogusPrefix)}},
			}})
			attacker.send(t, &pb.RPC{Control: &pb.ControlMessage{
				Iwant: []*pb.ControlIWant{{MessageIDs: bogus(groupguard.MaxIHaveLength, "")}},
			}})
		}
		net.sendHonest(waves%2*2, st.Group, fmt.Sprintf("during the IHAVE flood, %d", waves), want)
		for i := range net.members {
			net.waitHolds(i, st.Group, want)
		}
		waves++
		if s, ok := m1.g.guard.Score(attacker.h.ID()); ok && s < 0 {
			t.Logf("after %d waves (%v) the attacker's score is %.0f", waves, time.Since(start).Round(time.Millisecond), s)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the attacker's broken promises never cost it its score")
		}
		<-pace.C
	}
	asked, stray := attacker.iwants()
	elapsed := time.Since(start) // after the count: every ID counted was asked for by now
	heartbeats := int(elapsed/pubsub.GossipSubHeartbeatInterval) + 2
	t.Logf("%d waves of 10 IHAVEs of %d IDs over %v: member 1 asked for %d IDs (at most %d per heartbeat, %d heartbeats)",
		waves, groupguard.MaxIHaveLength, elapsed.Round(time.Millisecond), asked, groupguard.MaxIHaveLength, heartbeats)
	if asked > groupguard.MaxIHaveLength*heartbeats {
		t.Fatalf("member 1 asked for %d IDs in %d heartbeats, over %d per heartbeat", asked, heartbeats, groupguard.MaxIHaveLength)
	}
	if stray != 0 {
		t.Fatalf("member 1 asked for %d IDs nobody advertised", stray)
	}
	for i := range net.members {
		net.waitHistory(i, st.Group, want)
	}
	checkHeap(t, before, "IHAVE/IWANT flood")
}

// TestGroupRemovedMemberRefused: after a removal, the removed member's
// node, still connected and joined to the new epoch's topic by hand,
// posts with its old sender key: as it is (epoch 1) and relabelled to
// the new epoch. Member 1 refuses both (the first is rejected: its epoch
// does not match the topic), forwards neither, and nobody stores them;
// the remaining members keep talking.
func TestGroupRemovedMemberRefused(t *testing.T) {
	net := newGroupNet(t, 3, false)
	ctx := context.Background()
	admin, m1, gone := net.members[0], net.members[1], net.members[2]
	st, err := admin.g.createGroup(ctx, "three", net.users())
	if err != nil {
		t.Fatal(err)
	}
	net.waitKeyed(st)
	old, err := gone.st.OwnChain(ctx, st.Group, st.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	stay := slices.DeleteFunc(slices.Clone(st.Members), func(m protocol.GroupMember) bool { return m.User == gone.key.ID() })
	st2, err := admin.g.changeMembers(ctx, st.Group, st.Name, stay)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the removed member learns of it", func() bool {
		gr, err := gone.st.Group(ctx, st.Group)
		return err == nil && gr.Removed
	})
	net.waitKeyed(st2)
	topic2 := protocol.Topic(st2)
	spy, err := gone.g.ps.Join(topic2)
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	sub, err := spy.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	waitFor(t, 10*time.Second, "member 1 sees the removed member on the new topic", func() bool {
		return slices.Contains(m1.g.topic(st.Group).topic.ListPeers(), gone.h.ID())
	})

	asIs, next, err := old.Seal(protocol.KindText, []byte("still here, epoch 1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	relabelled, _, err := next.Seal(protocol.KindText, []byte("still here, epoch 2"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	relabelled.Epoch = st2.Epoch
	rejected := m1.mesh.rejects()
	posts := [][]byte{asIs.Marshal(), relabelled.Marshal()}
	for _, b := range posts {
		if err := spy.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "member 1 validates both", func() bool { return m1.mesh.saw(posts[0]) && m1.mesh.saw(posts[1]) })
	waitFor(t, 10*time.Second, "member 1 rejects the epoch-1 post", func() bool { return m1.mesh.rejects() > rejected })
	want := map[protocol.MsgID]string{}
	net.sendHonest(0, st.Group, "after the removal", want)
	net.sendHonest(1, st.Group, "after the removal, from 1", want)
	for i := range 2 {
		net.waitHistory(i, st.Group, want)
	}
	for i, b := range posts {
		if admin.mesh.saw(b) {
			t.Fatalf("post %d with the old key was forwarded past member 1", i)
		}
	}
	if _, delivered := m1.mesh.counts(gone.h.ID()); delivered != 0 {
		t.Fatalf("member 1 accepted %d posts with the old key", delivered)
	}
	for i := range 2 {
		for _, m := range net.members[i].history(t, st.Group) {
			if m.From == gone.key.ID() {
				t.Fatalf("member %d stored a post of the removed member: %q", i, m.Body)
			}
		}
	}
}
