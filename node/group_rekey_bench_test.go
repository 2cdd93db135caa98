package node

import (
	"context"
	"crypto/rand"
	"syscall"
	"testing"
	"time"

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
}

func benchRekey(b *testing.B, admin, serial bool) {
	const size = 500
	ctx := context.Background()
	n := startNode(b, testConfig(b, "alice-3072"), "Alice")
	u := unlockedOf(b, n)
	bob := fixtureKey(b, "bob-3072")
	others := rekeyFriends(b, u, bob, size-1)
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
		r0 := cpuTime()
		b.StartTimer()
		t0 := time.Now()
		act()
		call += time.Since(t0)
		waitHandedOut(b, u)
		b.StopTimer()
		cpu += cpuTime() - r0
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
func rekeyFriends(b *testing.B, u *unlocked, admin *protocol.PrivateKey, n int) []protocol.ID {
	keys := []*protocol.PrivateKey{admin, fixtureKey(b, "bob-3072"), fixtureKey(b, "carol-3072"), fixtureKey(b, "carol-2048"), fixtureKey(b, "bob-2048")}
	now := time.Now()
	type kp struct {
		key *protocol.PublicKey
		pk  *protocol.SignedPrekey
	}
	var pairs []kp
	for _, k := range keys {
		pk, err := protocol.GeneratePrekey(k, now.Add(-time.Hour), 30*24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		pairs = append(pairs, kp{k.Public(), &pk.Signed})
	}
	ids := make([]protocol.ID, n)
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
		ids[i] = id
	}
	return ids
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

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitHandedOut waits until u's hand-out jobs are all queued.
func waitHandedOut(tb testing.TB, u *unlocked) {
	tb.Helper()
	waitFor(tb, 2*time.Minute, "hand-outs queued", func() bool {
		hs, err := u.st.Handouts(context.Background())
		return err == nil && len(hs) == 0
	})
}
