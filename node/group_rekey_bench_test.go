package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// BenchmarkGroupRekey500 measures what a new epoch of a 500-member group
// costs one node, up to its outbox: "member" is a member's node taking a
// state signed by another admin, which makes its new chain and hands its
// sender key to the 499 others; "admin" is the admin's node removing one
// member, which hands the state and its key to the 498 left and the state
// to the removed one. An op ends when every hand-out is sealed and
// durably queued. The node is real (badger on a temp dir, its 3072-bit
// RSA identity, the outbox); the other members are keys only: accepted
// friends whose entries carry a real RSA public key and signed prekey
// (fixture keys, shared by several users, which costs what distinct keys
// cost), with no host, their couriers held so that nothing is dialled.
// Reported: cpu-ms/op (the process's user and system time), commits/op
// (store transactions, each one sync), call-ms/op (until the call that
// makes or takes the state returns: what an API call waits),
// handouts/op and KiB/op queued.
//
// "batched" is the node as it runs (group_handout.go: batches sealed on
// every core, one transaction per batch); "serial" is the way before it,
// run here for the ratio: each control sealed and queued on its own
// (groups.direct, one transaction each), in the caller.
//
//	go test -tags noassets ./node/ -run '^$' -bench GroupRekey500 -benchtime 3x
func BenchmarkGroupRekey500(b *testing.B) {
	for _, role := range []string{"member", "admin"} {
		for _, mode := range []string{"serial", "batched"} {
			b.Run(role+"/"+mode, func(b *testing.B) { benchRekey(b, role == "admin", mode == "serial") })
		}
	}
	b.Run("member/receives", benchRekeyReceive)
}

// benchRekeyReceive is the other half of a member's rekey: the 499 other
// members' new sender keys arriving, as frames on the receive path
// (messenger.receiveFrame: RSA-OAEP and X25519 to open, the signature
// checked, the key stored), eight at a time as from concurrent streams.
// An op ends when the node holds all 500 chains of the epoch.
func benchRekeyReceive(b *testing.B) {
	const size = 500
	ctx := context.Background()
	n := startNode(b, testConfig(b, "alice-3072"), "Alice")
	u := unlockedOf(b, n)
	bob := fixtureKey(b, "bob-3072")
	others, privs := rekeyFriends(b, u, bob, size-1)
	card, err := u.keys.ownCard()
	if err != nil {
		b.Fatal(err)
	}
	me, err := protocol.NewRecipient(u.me, u.keys.identity().Public(), card.Prekey, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	var commits int
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		list := []protocol.GroupMember{{User: u.me, Role: protocol.RoleMember}}
		for _, m := range others[1:] {
			list = append(list, protocol.GroupMember{User: m, Role: protocol.RoleMember})
		}
		st, err := protocol.NewGroupState(bob, bob.ID(), "Big", list, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if err := u.groups.receiveState(ctx, st); err != nil {
			b.Fatal(err)
		}
		waitHandedOut(b, u)
		frames := make([][]byte, len(others))
		parallel(len(others), runtime.GOMAXPROCS(0), func(i int) {
			c, err := protocol.NewSenderChain(st, others[i])
			if err != nil {
				b.Error(err)
				return
			}
			d, err := c.Distribution(st)
			if err != nil {
				b.Error(err)
				return
			}
			env, err := protocol.Seal(protocol.Sender{UserID: others[i], Key: privs[others[i]]}, me, protocol.KindSenderKey, d.Marshal(), time.Now())
			if err != nil {
				b.Error(err)
				return
			}
			var buf bytes.Buffer
			if err := protocol.WriteDelivery(&buf, &protocol.Delivery{Envelope: env.Marshal()}); err != nil {
				b.Error(err)
			}
			frames[i] = buf.Bytes()
		})
		c0, _ := u.st.CommitStats()
		r0 := processCPU(b)
		b.StartTimer()
		parallel(len(frames), 8, func(i int) {
			if in := u.msgs.receiveFrame(ctx, peer.ID("bench"), frames[i]); in.ack.Code != protocol.AckOK {
				b.Errorf("frame refused: %v: %v", in.ack.Code, in.err)
			}
		})
		waitFor(b, 2*time.Minute, "every key stored", func() bool {
			cs, err := u.st.SenderChains(ctx, st.Group, st.Epoch)
			return err == nil && len(cs) == size
		})
		b.StopTimer()
		cpu += processCPU(b) - r0
		c1, _ := u.st.CommitStats()
		commits += c1 - c0
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(commits)/float64(b.N), "commits/op")
}

func benchRekey(b *testing.B, admin, serial bool) {
	const size = 500
	ctx := context.Background()
	n := startNode(b, testConfig(b, "alice-3072"), "Alice")
	u := unlockedOf(b, n)
	bob := fixtureKey(b, "bob-3072")
	others, _ := rekeyFriends(b, u, bob, size-1)
	if serial {
		// No job runs yet: the worker reads ho after the next kick.
		u.groups.ho.seal = nil
	}

	var cpu, bytes, call time.Duration
	var commits, handouts int
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		var act func()
		if admin {
			st, err := u.groups.createGroup(ctx, "Big", others)
			if err != nil {
				b.Fatal(err)
			}
			waitHandedOut(b, u)
			members := make([]protocol.GroupMember, 0, size-1)
			for _, m := range st.Members {
				if m.User != others[i%len(others)] {
					members = append(members, m)
				}
			}
			act = func() {
				if _, err := u.groups.changeMembers(ctx, st.Group, st.Name, members); err != nil {
					b.Fatal(err)
				}
			}
		} else {
			var list []protocol.GroupMember
			for _, m := range append([]protocol.ID{u.me}, others[1:]...) {
				list = append(list, protocol.GroupMember{User: m, Role: protocol.RoleMember})
			}
			st, err := protocol.NewGroupState(bob, bob.ID(), "Big", list, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			act = func() {
				if err := u.groups.receiveState(ctx, st); err != nil {
					b.Fatal(err)
				}
			}
		}
		q0 := queuedBytes(b, u, others)
		c0, _ := u.st.CommitStats()
		r0 := processCPU(b)
		b.StartTimer()
		t0 := time.Now()
		act()
		call += time.Since(t0)
		waitHandedOut(b, u)
		b.StopTimer()
		cpu += processCPU(b) - r0
		c1, _ := u.st.CommitStats()
		commits += c1 - c0
		q1 := queuedBytes(b, u, others)
		bytes += time.Duration(q1.bytes - q0.bytes)
		handouts += q1.count - q0.count
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(call.Milliseconds())/float64(b.N), "call-ms/op")
	b.ReportMetric(float64(commits)/float64(b.N), "commits/op")
	b.ReportMetric(float64(handouts)/float64(b.N), "handouts/op")
	b.ReportMetric(float64(bytes)/1024/float64(b.N), "KiB/op")
}

// rekeyFriends caches n accepted friends of u (keys only, see
// BenchmarkGroupRekey500), the first with admin's real identity, and holds
// their couriers; it returns their user IDs.
func rekeyFriends(b *testing.B, u *unlocked, admin *protocol.PrivateKey, n int) ([]protocol.ID, map[protocol.ID]*protocol.PrivateKey) {
	keys := []*protocol.PrivateKey{admin, fixtureKey(b, "bob-3072"), fixtureKey(b, "carol-3072"), fixtureKey(b, "carol-2048"), fixtureKey(b, "bob-2048")}
	now := time.Now()
	type kp struct {
		priv *protocol.PrivateKey
		key  *protocol.PublicKey
		pk   *protocol.SignedPrekey
	}
	var pairs []kp
	for _, k := range keys {
		pk, err := protocol.GeneratePrekey(k, now.Add(-time.Hour), 30*24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		pairs = append(pairs, kp{k, k.Public(), &pk.Signed})
	}
	ids := make([]protocol.ID, n)
	privs := map[protocol.ID]*protocol.PrivateKey{}
	for i := range n {
		p := pairs[i%len(pairs)]
		id := admin.ID()
		if i > 0 {
			rand.Read(id[:])
		}
		r, err := protocol.NewRecipient(id, p.key, p.pk, now)
		if err != nil {
			b.Fatal(err)
		}
		fe := &friendEntry{f: store.Friend{UserID: id, Status: store.FriendAccepted}, key: p.key, prekey: p.pk, rcpt: r}
		u.friends.mu.Lock()
		u.friends.friends[id] = fe
		u.friends.mu.Unlock()
		u.outbox.Hold(id)
		ids[i], privs[id] = id, p.priv
	}
	return ids, privs
}

type queued struct{ count, bytes int }

// queuedBytes counts what u's outbox holds for users.
func queuedBytes(b *testing.B, u *unlocked, users []protocol.ID) queued {
	var q queued
	for _, id := range users {
		es, err := u.st.OutboxQueue(context.Background(), id, 0, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		q.count += len(es)
		for _, e := range es {
			q.bytes += len(e.Envelope)
		}
	}
	return q
}

// waitHandedOut waits until u's hand-out jobs are all queued.
func waitHandedOut(tb testing.TB, u *unlocked) {
	tb.Helper()
	waitFor(tb, 2*time.Minute, "hand-outs queued", u.groups.handoutsIdle)
}
