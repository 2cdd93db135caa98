package directory

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/protocoltest"
)

// netNode is one DHT server of an in-process network on loopback: a real
// libp2p host (TCP, Noise or TLS, yamux) with an Ed25519 identity.
type netNode struct {
	host host.Host
	priv crypto.PrivKey
	dht  *DHT
}

func (n *netNode) info() peer.AddrInfo { return peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()} }

// newNetHost starts a libp2p host on 127.0.0.1 with a fresh Ed25519 key.
func newNetHost(tb testing.TB) (host.Host, crypto.PrivKey) {
	tb.Helper()
	priv, _, err := crypto.GenerateEd25519Key(crand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		tb.Fatalf("libp2p.New: %v", err)
	}
	return h, priv
}

// startNetNode starts an honest DHT server (Server, ManualRefresh) that
// joins through boot, and connects to boot before returning, so that the
// first refresh has someone to ask. The DHT is closed before the host when
// tb ends.
func startNetNode(tb testing.TB, ctx context.Context, boot ...peer.AddrInfo) *netNode {
	tb.Helper()
	h, priv := newNetHost(tb)
	d, err := NewDHT(h, Config{Server: true, ManualRefresh: true, Bootstrap: boot})
	if err != nil {
		h.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Close()
		h.Close()
	})
	for _, b := range boot {
		if err := h.Connect(ctx, b); err != nil {
			tb.Fatalf("connect to bootstrap peer %s: %v", b.ID, err)
		}
	}
	return &netNode{host: h, priv: priv, dht: d}
}

// converge refreshes the routing tables of kads until each holds at least
// min peers, and returns the number of refresh rounds it took. It fails tb
// at ctx's deadline. A round refreshes the lagging tables one at a time:
// concurrent refreshes make pairs of nodes dial each other at once, and on
// loopback each such refresh then took about a second instead of a few
// milliseconds. Tables fill asynchronously (a peer is added after
// identify), so after each round it waits a little for the condition
// before refreshing again.
func converge(tb testing.TB, ctx context.Context, kads []*dht.IpfsDHT, min int) int {
	tb.Helper()
	lagging := func() []*dht.IpfsDHT {
		var out []*dht.IpfsDHT
		for _, k := range kads {
			if k.RoutingTable().Size() < min {
				out = append(out, k)
			}
		}
		return out
	}
	for round := 0; ; round++ {
		lag := lagging()
		if len(lag) == 0 {
			return round
		}
		if ctx.Err() != nil {
			sizes := make([]int, len(kads))
			for i, k := range kads {
				sizes[i] = k.RoutingTable().Size()
			}
			tb.Fatalf("routing tables did not reach %d peers after %d rounds: sizes %v", min, round, sizes)
		}
		for _, k := range lag {
			// Errors (a bucket whose query found no one) are expected
			// while the tables fill; the sizes decide.
			select {
			case <-k.ForceRefresh():
			case <-ctx.Done():
			}
		}
		pollUntil(ctx, time.Second, func() bool { return len(lagging()) == 0 })
	}
}

// pollUntil waits until cond holds, at most d or until ctx ends, and
// reports whether it held.
func pollUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return cond()
		}
	}
	return true
}

// acceptAll is an attacker's validator: it stores and forwards anything,
// and prefers whatever it was given last.
type acceptAll struct{}

func (acceptAll) Validate(string, []byte) error        { return nil }
func (acceptAll) Select(string, [][]byte) (int, error) { return 0, nil }

// startAttacker starts a DHT server speaking Parley's DHT protocol with
// kad-dht directly, whose validator accepts anything, so that its PutValue
// sends whatever it is given to the closest peers. It returns the DHT and
// its value store, to check what the attacker holds (and serves).
func startAttacker(tb testing.TB, ctx context.Context, boot peer.AddrInfo) (*dht.IpfsDHT, datastore.Batching) {
	tb.Helper()
	h, _ := newNetHost(tb)
	values := dssync.MutexWrap(datastore.NewMapDatastore())
	d, err := dht.New(h,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(ProtocolPrefix),
		dht.NamespacedValidator(Namespace, acceptAll{}),
		dht.ValueDatastore(values),
		dht.QueryFilter(func(any, peer.AddrInfo) bool { return true }),
		dht.RoutingTableFilter(func(any, peer.ID) bool { return true }),
		dht.DisableAutoRefresh(),
		dht.BootstrapPeers(boot),
	)
	if err != nil {
		h.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Close()
		h.Close()
	})
	if err := h.Connect(ctx, boot); err != nil {
		tb.Fatalf("attacker: connect to %s: %v", boot.ID, err)
	}
	return d, values
}

// storedValues returns the values under user's key in a DHT value store,
// read from the datastore itself (not through the network).
func storedValues(tb testing.TB, ctx context.Context, values datastore.Read, user protocol.ID) [][]byte {
	tb.Helper()
	res, err := values.Query(ctx, query.Query{})
	if err != nil {
		tb.Fatal(err)
	}
	entries, err := res.Rest()
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, e := range entries {
		var rec recpb.Record
		if proto.Unmarshal(e.Value, &rec) == nil && string(rec.GetKey()) == Key(user) {
			out = append(out, rec.GetValue())
		}
	}
	return out
}

// checkStored fails tb unless every node stores exactly want under user's
// key.
func checkStored(tb testing.TB, ctx context.Context, what string, nodes []*netNode, user protocol.ID, want []byte) {
	tb.Helper()
	for i, n := range nodes {
		got := storedValues(tb, ctx, n.dht.values, user)
		if len(got) != 1 || !bytes.Equal(got[0], want) {
			tb.Errorf("%s: node %d stores %d values under %s, not exactly the expected record", what, i, len(got), Key(user))
		}
	}
}

// checkLookups fails tb unless a Lookup from every node returns want.
func checkLookups(tb testing.TB, ctx context.Context, what string, nodes []*netNode, want *Record) {
	tb.Helper()
	for i, n := range nodes {
		got, err := n.dht.Lookup(ctx, want.UserID())
		switch {
		case err != nil:
			tb.Errorf("%s: lookup from node %d: %v", what, i, err)
		case got.Seq() != want.Seq() || !bytes.Equal(got.Marshal(), want.Marshal()):
			tb.Errorf("%s: lookup from node %d returned seq %d, want the real record of seq %d", what, i, got.Seq(), want.Seq())
		}
	}
}

// forgeRecord signs r, as it stands, with signer and encodes it: a record
// NewRecord would refuse to build, whose outer signature is nevertheless
// valid for signer's key. r's times must be whole seconds.
func forgeRecord(tb testing.TB, signer protocol.Signer, r *Record) []byte {
	tb.Helper()
	sig, err := signer.Sign(LabelRecord, r.canonical())
	if err != nil {
		tb.Fatal(err)
	}
	r.signature = sig
	return marshal(r.toPB())
}

// TestNetworkRefusesBadRecords runs eight honest DHT servers and one
// attacker on loopback. The attacker's DHT accepts anything and PutValues,
// under a real user's key, records that are signed by the wrong key,
// expired, carry a broken rotation chain, roll the user back, or are too
// large: no honest server stores any of them, and a lookup from every
// honest node still returns the real record, although the attacker itself
// holds and serves its forgery. The user's own publications (from two of
// their devices) reach every server, and the newest sequence number wins.
func TestNetworkRefusesBadRecords(t *testing.T) {
	const honestN = 8
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	nodes := []*netNode{startNetNode(t, ctx)}
	for len(nodes) < honestN {
		nodes = append(nodes, startNetNode(t, ctx, nodes[0].info()))
	}
	evil, evilValues := startAttacker(t, ctx, nodes[0].info())
	kads := []*dht.IpfsDHT{evil}
	for _, n := range nodes {
		kads = append(kads, n.dht.Kad())
	}
	// Nine servers, fewer than a bucket (20): everyone knows everyone,
	// and every put goes to every server.
	start := time.Now()
	rounds := converge(t, ctx, kads, honestN)
	t.Logf("routing tables full (%d peers each) after %d refresh rounds, %v", honestN, rounds, time.Since(start))

	alice, mallory, other := protocoltest.Key(t, "alice-2048"), protocoltest.Key(t, "carol-2048"), protocoltest.Key(t, "bob-2048")
	user, k := alice.ID(), Key(alice.ID())
	now := time.Unix(time.Now().Unix(), 0)
	pk, err := protocol.GeneratePrekey(alice, now.Add(-time.Minute), 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The user has two devices, nodes 1 and 5; both publish.
	var devices []Device
	for _, n := range []*netNode{nodes[1], nodes[5]} {
		dev, err := SignDevice(n.priv, user)
		if err != nil {
			t.Fatal(err)
		}
		devices = append(devices, dev)
	}
	record := func(signer *protocol.PrivateKey, seq uint64, issued time.Time, life time.Duration) *Record {
		t.Helper()
		in := RecordInput{Name: "Alice", Seq: seq, Lifetime: life}
		if signer == alice {
			in.Devices, in.Prekey = devices, &pk.Signed
		}
		in.Relays = []string{fmt.Sprintf("%s/p2p/%s", nodes[0].host.Addrs()[0], nodes[0].host.ID())}
		r, err := NewRecord(signer, in, issued)
		if err != nil {
			t.Fatalf("NewRecord seq %d: %v", seq, err)
		}
		return r
	}
	rec1, rec2 := record(alice, 1, now, 24*time.Hour), record(alice, 2, now, 24*time.Hour)
	for _, r := range []*Record{rec1, rec2} {
		if err := nodes[1].dht.Publish(ctx, r); err != nil {
			t.Fatalf("publish seq %d: %v", r.Seq(), err)
		}
		checkStored(t, ctx, fmt.Sprintf("publish seq %d", r.Seq()), nodes, user, r.Marshal())
	}
	checkLookups(t, ctx, "after publication", nodes, rec2)
	if t.Failed() {
		t.FailNow()
	}

	// Control: a valid record put by the attacker is stored by every
	// honest server, so the refusals below are their validators' doing,
	// not a put that never arrived.
	bob := record(other, 1, now, time.Hour)
	if err := evil.PutValue(ctx, Key(other.ID()), bob.Marshal()); err != nil {
		t.Fatalf("attacker's put of a valid record: %v", err)
	}
	checkStored(t, ctx, "attacker's valid put (control)", nodes, other.ID(), bob.Marshal())

	// The forgeries carry sequence numbers above the real record's 2, so
	// a server that skipped a check would prefer them; the rollback is the
	// user's own seq 1, the oversized value the real record padded.
	wrongKey := forgeRecord(t, mallory, &Record{ // claims alice's key, signed by mallory
		userID: user, name: "Alice", key: alice.Public(), seq: 60,
		issuedAt: now, expiresAt: now.Add(time.Hour),
	})
	// A link that claims to move alice to mallory's key but is signed by
	// bob's key in alice's place; mallory signs the record itself, so its
	// outer signature is valid.
	link, err := protocol.NewRotation(user, other, mallory, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	link.OldKey = user
	brokenChain := forgeRecord(t, mallory, &Record{
		userID: user, name: "Alice", key: mallory.Public(), genesis: alice.Public(),
		chain: []*protocol.Rotation{link}, seq: 100,
		issuedAt: now, expiresAt: now.Add(time.Hour),
	})
	expired := record(alice, 80, now.Add(-2*time.Hour), time.Hour).Marshal()
	// The real record with an unknown field of 16 KiB appended.
	oversized := protowire.AppendTag(rec2.Marshal(), 1000, protowire.BytesType)
	oversized = protowire.AppendBytes(oversized, make([]byte, MaxRecordSize))
	v := Validator{}
	attacks := []struct {
		name  string
		value []byte
		want  error // from the validator; nil: valid but older
	}{
		{"oversized", oversized, ErrTooLarge},
		{"expired", expired, ErrExpired},
		{"rolled back", rec1.Marshal(), nil},
		{"wrong key", wrongKey, ErrBadSignature},
		{"broken chain", brokenChain, ErrBadChain},
	}
	for _, a := range attacks {
		err := v.Validate(k, a.value)
		if a.want == nil {
			if i, serr := v.Select(k, [][]byte{a.value, rec2.Marshal()}); err != nil || i != 1 || serr != nil {
				t.Fatalf("%s: Validate = %v, Select = %d, %v; want valid and not selected", a.name, err, i, serr)
			}
		} else if !errors.Is(err, a.want) {
			t.Fatalf("%s: Validate = %v, want %v", a.name, err, a.want)
		}
		if err := evil.PutValue(ctx, k, a.value); err != nil {
			t.Fatalf("%s: attacker's PutValue: %v", a.name, err)
		}
		// PutValue returns once every peer has answered, so the stores
		// are final here.
		checkStored(t, ctx, a.name, nodes, user, rec2.Marshal())
		if got := storedValues(t, ctx, evilValues, user); len(got) != 1 || !bytes.Equal(got[0], a.value) {
			t.Fatalf("%s: the attacker does not hold its own forgery", a.name)
		}
	}
	// The attacker now holds and serves the broken chain of seq 100.
	checkLookups(t, ctx, "after the attacks", nodes, rec2)

	// The other device publishes seq 3: every server replaces seq 2 with
	// it, and an attacker's replay of seq 2 is now a rollback.
	rec3 := record(alice, 3, now, 24*time.Hour)
	if err := nodes[5].dht.Publish(ctx, rec3); err != nil {
		t.Fatalf("publish seq 3: %v", err)
	}
	checkStored(t, ctx, "publish seq 3", nodes, user, rec3.Marshal())
	if err := evil.PutValue(ctx, k, rec2.Marshal()); err != nil {
		t.Fatalf("attacker's replay of seq 2: %v", err)
	}
	checkStored(t, ctx, "replay of seq 2", nodes, user, rec3.Marshal())
	checkLookups(t, ctx, "after seq 3", nodes, rec3)
}
