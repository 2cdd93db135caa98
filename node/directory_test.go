package node

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
)

// startRelays starts n relays on loopback, each bootstrapping from the
// ones before it, and closes them when the test ends.
func startRelays(tb testing.TB, n int) []*Relay {
	tb.Helper()
	var rs []*Relay
	var boot []string
	for i := 0; i < n; i++ {
		r, err := StartRelay(context.Background(), RelayConfig{
			DataDir:   tb.TempDir(),
			Listen:    []string{"/ip4/127.0.0.1/tcp/0"},
			Bootstrap: boot,
			Logger:    testLogger(tb),
		})
		if err != nil {
			tb.Fatalf("StartRelay %d: %v", i, err)
		}
		tb.Cleanup(func() { r.Close() })
		rs = append(rs, r)
		boot = append(boot, r.Addrs()[0])
	}
	return rs
}

// generatedKeys makes n distinct RSA-2048 keys, in parallel.
func generatedKeys(tb testing.TB, n int) []*protocol.PrivateKey {
	tb.Helper()
	keys := make([]*protocol.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = protocol.GenerateKey(2048) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return keys
}

// dirConfig is a node config that joins the DHT through boot.
func dirConfig(tb testing.TB, key *protocol.PrivateKey, boot ...string) Config {
	cfg := testConfig(tb, "alice-2048")
	cfg.NewKey = func(int) (*protocol.PrivateKey, error) { return key, nil }
	cfg.Bootstrap = boot
	cfg.DHTServer = true
	return cfg
}

// waitPublished waits until n's record is in the DHT.
func waitPublished(tb testing.TB, n *Node) {
	tb.Helper()
	s := unlockedOf(tb, n)
	waitFor(tb, 30*time.Second, "record published", func() bool { return s.pub.published.Load() != 0 })
}

// TestDirectoryNetwork runs 3 relays and 30 users on loopback: every user
// publishes and finds every other by ID, bad records are refused by the
// storing peers, a rolled-back record is ignored, and two users who claim
// one name are both found.
func TestDirectoryNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("33 libp2p hosts")
	}
	if raceDetector {
		// Under the race detector 33 hosts take minutes on two cores;
		// make test runs this test once more without it.
		t.Skip("33 libp2p hosts: run without -race (make test does)")
	}
	const users = 30
	relays := startRelays(t, 3)
	keys := generatedKeys(t, users)
	nodes := make([]*Node, users)
	ids := make([]protocol.ID, users)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range nodes {
		name := fmt.Sprintf("user %02d", i)
		if i == users-1 {
			name = "User 00" // claims the same name as user 0
		}
		cfg := dirConfig(t, keys[i], relays[i%len(relays)].Addrs()[0])
		wg.Go(func() { nodes[i] = startNode(t, cfg, name) })
	}
	wg.Wait()
	for i, n := range nodes {
		waitPublished(t, n)
		ids[i] = meOf(t, n).UserID
	}
	t.Logf("%d users registered and published in %v", users, time.Since(start).Round(time.Millisecond))

	// Every user finds every other by user ID.
	start = time.Now()
	errs := make(chan error, users*users)
	for i, n := range nodes {
		wg.Go(func() {
			for j, id := range ids {
				if i == j {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				e, err := n.LookupUser(ctx, id)
				cancel()
				switch {
				case err != nil:
					errs <- fmt.Errorf("user %d looks up user %d: %w", i, j, err)
				case e.UserID != id || e.Fingerprint != id.Fingerprint() || len(e.Devices) != 1:
					errs <- fmt.Errorf("user %d looks up user %d: got %+v", i, j, e)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d lookups in %v", users*(users-1), time.Since(start).Round(time.Millisecond))

	// Two users claim "user 00": a third finds both, told apart by their
	// fingerprints, and nobody else.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := nodes[5].SearchName(ctx, "  USER 00 ")
	if err != nil {
		t.Fatalf("SearchName: %v", err)
	}
	got := map[protocol.ID]string{}
	for _, r := range res {
		got[r.UserID] = r.Fingerprint
	}
	if len(res) != 2 || got[ids[0]] != ids[0].Fingerprint() || got[ids[users-1]] != ids[users-1].Fingerprint() {
		t.Errorf("search for user 00 = %+v, want users 0 and %d", res, users-1)
	}

	t.Run("BadRecordsNotStored", func(t *testing.T) { testBadRecordsRefused(t, relays, nodes, keys) })
}

// testBadRecordsRefused puts invalid and rolled-back records through an
// attacker's DHT node whose own validator accepts anything: the honest
// peers refuse to store them, and lookups keep returning the real record.
func testBadRecordsRefused(t *testing.T, relays []*Relay, nodes []*Node, keys []*protocol.PrivateKey) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	evil, err := dht.New(h, dht.Mode(dht.ModeServer), dht.ProtocolPrefix(directory.ProtocolPrefix),
		dht.NamespacedValidator(directory.Namespace, acceptAll{}),
		dht.QueryFilter(func(any, peer.AddrInfo) bool { return true }),
		dht.RoutingTableFilter(func(any, peer.ID) bool { return true }),
		dht.BootstrapPeers(peer.AddrInfo{ID: relays[0].ID(), Addrs: relays[0].host.Addrs()}))
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	for _, r := range relays {
		if err := h.Connect(ctx, peer.AddrInfo{ID: r.ID(), Addrs: r.host.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	<-evil.ForceRefresh()

	victim := unlockedOf(t, nodes[1])
	real, err := nodes[2].LookupUser(ctx, victim.me)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	input := func(who *unlocked, seq uint64) directory.RecordInput {
		dev, err := directory.SignDevice(who.pub.hostPriv, who.me)
		if err != nil {
			t.Fatal(err)
		}
		return directory.RecordInput{Name: "user 01", Devices: []directory.Device{dev}, Seq: seq, Lifetime: time.Hour}
	}
	sign := func(key *protocol.PrivateKey, in directory.RecordInput, at time.Time) []byte {
		rec, err := directory.NewRecord(key, in, at)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Marshal()
	}
	// Signed by another user's key, over the victim's user ID: NewRecord
	// refuses to make it, so forge it by swapping the user ID in place.
	other := unlockedOf(t, nodes[3])
	wrongKey := forgeUserID(t, sign(keys[3], input(other, real.Seq+10), now), other.me, victim.me)
	expired := sign(victim.keys.identity(), input(victim, real.Seq+20), now.Add(-2*time.Hour))
	rolledBack := sign(victim.keys.identity(), input(victim, real.Seq-1), now)
	for _, c := range []struct {
		name string
		rec  []byte
	}{{"wrong key", wrongKey}, {"expired", expired}, {"rolled back", rolledBack}} {
		if err := evil.PutValue(ctx, directory.Key(victim.me), c.rec); err != nil {
			t.Logf("%s: attacker's PutValue: %v", c.name, err)
		}
		for i, n := range []*Node{nodes[0], nodes[2], nodes[7]} {
			e, err := n.LookupUser(ctx, victim.me)
			if err != nil || e.Seq != real.Seq {
				t.Errorf("%s: lookup %d after the attacker's put = %+v, %v; want seq %d", c.name, i, e, err, real.Seq)
			}
		}
		for i, r := range relays {
			if b, err := r.dir.Kad().GetValue(ctx, directory.Key(victim.me)); err != nil || string(b) == string(c.rec) {
				t.Errorf("%s: relay %d serves the attacker's record (err %v)", c.name, i, err)
			}
		}
	}
}

// forgeUserID replaces user ID from by to throughout an encoded record.
func forgeUserID(tb testing.TB, rec []byte, from, to protocol.ID) []byte {
	tb.Helper()
	out := bytes.ReplaceAll(rec, from[:], to[:])
	if bytes.Equal(out, rec) {
		tb.Fatal("user ID not found in the record")
	}
	return out
}

// acceptAll is an attacker's validator: it stores and forwards anything.
type acceptAll struct{}

func (acceptAll) Validate(string, []byte) error        { return nil }
func (acceptAll) Select(string, [][]byte) (int, error) { return 0, nil }
