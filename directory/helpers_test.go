package directory

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/pb"
	"github.com/parley-chat/parley/protocol/protocoltest"
)

// t0 is the fixed "now" of the tests: whole seconds, like record times.
var t0 = time.Date(2026, time.March, 14, 15, 9, 26, 0, time.UTC)

// hostKey returns a deterministic Ed25519 libp2p host key numbered n.
func hostKey(tb testing.TB, n uint64) crypto.PrivKey {
	tb.Helper()
	var seed [32]byte
	seed[0] = byte(n)
	k, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(seed))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func key(tb testing.TB, name string) *protocol.PrivateKey {
	tb.Helper()
	return protocoltest.Key(tb, name)
}

// device signs host key n as a device of user.
func device(tb testing.TB, n uint64, user protocol.ID) Device {
	tb.Helper()
	d, err := SignDevice(hostKey(tb, n), user)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// prekey returns a prekey of owner valid from an hour before t0 for 30 days.
func prekey(tb testing.TB, owner protocol.Signer) *protocol.SignedPrekey {
	tb.Helper()
	pk, err := protocol.GeneratePrekey(owner, t0.Add(-time.Hour), 30*24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return &pk.Signed
}

var testRelays = []string{
	"/ip4/198.51.100.20/udp/4001/quic-v1/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK",
	"/ip4/198.51.100.20/tcp/4001/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK",
}

// input is a full record input for a user who never rotated: two devices,
// two relays, a prekey.
func input(tb testing.TB, k *protocol.PrivateKey, seq uint64) RecordInput {
	tb.Helper()
	return RecordInput{
		Name:     "Alice Liddell",
		Devices:  []Device{device(tb, 1, k.ID()), device(tb, 2, k.ID())},
		Relays:   testRelays,
		Prekey:   prekey(tb, k),
		Seq:      seq,
		Lifetime: 24 * time.Hour,
	}
}

func mustRecord(tb testing.TB, signer protocol.Signer, in RecordInput, now time.Time) *Record {
	tb.Helper()
	r, err := NewRecord(signer, in, now)
	if err != nil {
		tb.Fatalf("NewRecord: %v", err)
	}
	return r
}

// rotate signs a rotation of user from old to next.
func rotate(tb testing.TB, user protocol.ID, old, next *protocol.PrivateKey, seq uint64) *protocol.Rotation {
	tb.Helper()
	r, err := protocol.NewRotation(user, old, next, seq, t0)
	if err != nil {
		tb.Fatalf("NewRotation: %v", err)
	}
	return r
}

// checkErr fails unless err wraps every one of want.
func errorsIs(err, target error) bool { return errors.Is(err, target) }

func checkErr(tb testing.TB, what string, err error, want ...error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s: nil error, want %v", what, want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			tb.Fatalf("%s: %v, want %v", what, err, w)
		}
	}
}

// resigned returns the encoding of a copy of r changed by f and signed by
// signer over its canonical form: what an attacker holding signer can make.
func resigned(tb testing.TB, r *Record, signer protocol.Signer, f func(c *Record)) []byte {
	tb.Helper()
	c := *r
	c.devices = append([]Device(nil), r.devices...)
	c.relays = append([]string(nil), r.relays...)
	c.chain = append([]*protocol.Rotation(nil), r.chain...)
	f(&c)
	sig, err := signer.Sign(LabelRecord, c.canonical())
	if err != nil {
		tb.Fatal(err)
	}
	c.signature = sig
	return marshal(c.toPB())
}

// reencoded returns the encoding of r's wire message changed by f, without
// re-signing.
func reencoded(tb testing.TB, r *Record, f func(m *pb.UserRecord)) []byte {
	tb.Helper()
	m := r.toPB()
	f(m)
	return marshal(m)
}

// rotated returns a record of the user whose genesis key is genesis, after
// rotating through next, signed by the last key.
func rotated(tb testing.TB, genesis *protocol.PrivateKey, seq uint64, next ...*protocol.PrivateKey) (*Record, []*protocol.Rotation) {
	tb.Helper()
	var chain []*protocol.Rotation
	cur := genesis
	for i, k := range next {
		chain = append(chain, rotate(tb, genesis.ID(), cur, k, uint64(i+1)))
		cur = k
	}
	in := input(tb, genesis, seq)
	in.Prekey = prekey(tb, cur)
	in.Genesis, in.Chain = genesis.Public(), chain
	return mustRecord(tb, cur, in, t0), chain
}
