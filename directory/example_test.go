package directory_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
)

// A user publishes a record, rotates to a new key, and publishes again: the
// new record and card are signed by the new key, carry the genesis key and
// the chain, and keep the user ID. Select prefers the newer record, and a
// friend who pinned the genesis key finds it in the new record's chain.
func Example_rotation() {
	now := time.Now()
	genesis, err := protocol.GenerateKey(protocol.MinRSABits)
	if err != nil {
		panic(err)
	}
	user := genesis.ID()
	host, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		panic(err)
	}
	dev, err := directory.SignDevice(host, user)
	if err != nil {
		panic(err)
	}
	first, err := directory.NewRecord(genesis, directory.RecordInput{
		Name: "Alice", Devices: []directory.Device{dev}, Seq: 1, Lifetime: 24 * time.Hour,
	}, now)
	if err != nil {
		panic(err)
	}

	// Rotate: the old key signs, the new key counter-signs.
	next, err := protocol.GenerateKey(protocol.MinRSABits)
	if err != nil {
		panic(err)
	}
	rot, err := protocol.NewRotation(user, genesis, next, 1, now)
	if err != nil {
		panic(err)
	}
	chain := []*protocol.Rotation{rot}
	// The prekey must be signed by the new key.
	pk, err := protocol.GeneratePrekey(next, now, 7*24*time.Hour)
	if err != nil {
		panic(err)
	}
	card, err := protocol.NewChainedCard(next, genesis.Public(), chain, "Alice",
		[][]byte{[]byte(dev.Peer)}, nil, &pk.Signed, now)
	if err != nil {
		panic(err)
	}
	second, err := directory.NewRecord(next, directory.RecordInput{
		Name: "Alice", Genesis: genesis.Public(), Chain: chain,
		Devices: []directory.Device{dev}, Prekey: &pk.Signed, Seq: 2, Lifetime: 24 * time.Hour,
	}, now)
	if err != nil {
		panic(err)
	}

	v := directory.Validator{}
	best, err := v.Select(directory.Key(user), [][]byte{first.Marshal(), second.Marshal()})
	if err != nil {
		panic(err)
	}
	parsed, err := protocol.ParseCard(card.Marshal())
	if err != nil {
		panic(err)
	}
	fmt.Println("card:", parsed.UserID == user, parsed.Key.Equal(next.Public()), len(parsed.Chain))
	fmt.Println("record:", second.UserID() == user, second.Key().Equal(next.Public()), second.HasKey(genesis.ID()))
	fmt.Println("selected:", best)
	// Output:
	// card: true true 1
	// record: true true true
	// selected: 1
}
