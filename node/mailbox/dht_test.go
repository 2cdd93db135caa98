package mailbox

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol/protocoltest"
)

// The relay authorises with its real DHT: Bob's device publishes his
// record, registers and fetches; a stranger is refused.
func TestRealDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relayKey := newKey(t)
	relay := newHost(t, relayKey)
	relayDHT, err := directory.NewDHT(relay, directory.Config{Server: true, ManualRefresh: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relayDHT.Close() })
	srv, err := NewServer(relay, Config{Dir: t.TempDir(), Directory: relayDHT})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	var served sync.WaitGroup
	served.Go(func() { srv.Serve(sctx) })
	t.Cleanup(func() {
		stop()
		served.Wait()
		srv.Close()
	})
	relayInfo := peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}

	bobKey := protocoltest.Key(t, "bob-2048")
	devKey := newKey(t)
	bob := newHost(t, devKey)
	bobDHT, err := directory.NewDHT(bob, directory.Config{Server: true, ManualRefresh: true, Bootstrap: []peer.AddrInfo{relayInfo}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bobDHT.Close() })
	if err := bob.Connect(ctx, relayInfo); err != nil {
		t.Fatal(err)
	}
	for bobDHT.Kad().RoutingTable().Size() == 0 || relayDHT.Kad().RoutingTable().Size() == 0 {
		if ctx.Err() != nil {
			t.Fatal("routing tables stayed empty")
		}
		time.Sleep(10 * time.Millisecond)
	}
	dev, err := directory.SignDevice(devKey, bobKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := directory.NewRecord(bobKey, directory.RecordInput{Name: "bob", Devices: []directory.Device{dev}, Seq: 1, Lifetime: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := bobDHT.Publish(ctx, rec); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	bobClient := NewClient(bob)
	if err := bobClient.Register(ctx, relay.ID(), bobKey.ID()); err != nil {
		t.Fatalf("Register through the real DHT: %v", err)
	}
	alice := newHost(t, newKey(t))
	alice.Peerstore().AddAddrs(relay.ID(), relay.Addrs(), time.Hour)
	if err := NewClient(alice).Deposit(ctx, relay.ID(), bobKey.ID(), []byte("sealed")); err != nil {
		t.Fatalf("Deposit: %v", err)
	}
	_, err = NewClient(alice).Fetch(ctx, relay.ID(), bobKey.ID(), func(context.Context, []byte) error {
		t.Fatal("Alice got Bob's mail")
		return nil
	})
	wantRefused(t, "Alice fetching Bob's mail", err, CodeNotAuthorised, ErrNotAuthorised)
	var got [][]byte
	if _, err := bobClient.Fetch(ctx, relay.ID(), bobKey.ID(), func(_ context.Context, e []byte) error {
		got = append(got, e)
		return nil
	}); err != nil || len(got) != 1 || !bytes.Equal(got[0], []byte("sealed")) {
		t.Fatalf("Bob's fetch: %q, %v", got, err)
	}
}
