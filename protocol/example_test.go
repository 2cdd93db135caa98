package protocol_test

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// advExampleKey loads a test fixture key from testdata/keys. Real callers
// generate keys with protocol.GenerateKey and keep them sealed at rest.
func advExampleKey(name string) *protocol.PrivateKey {
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name+".pem"))
	if err != nil {
		panic(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		panic("not PEM: " + name)
	}
	k, err := protocol.ParsePrivateKey(blk.Bytes)
	if err != nil {
		panic(err)
	}
	return k
}

// Alice seals a message to Bob's key and current signed prekey; Bob opens it
// with an Opener that knows which sender keys he trusts and which prekeys he
// still holds.
func ExampleSeal() {
	alice, bob := advExampleKey("alice-2048"), advExampleKey("bob-2048")
	now := time.Date(2025, time.May, 1, 12, 0, 0, 0, time.UTC)

	// Bob publishes a signed prekey (in his card or directory record).
	prekey, err := protocol.GeneratePrekey(bob, now.Add(-time.Hour), 7*24*time.Hour)
	if err != nil {
		panic(err)
	}

	// Alice seals. With a prekey the envelope uses suite 2 (RSA + X25519).
	env, err := protocol.Seal(
		protocol.Sender{UserID: alice.ID(), Key: alice},
		protocol.Recipient{UserID: bob.ID(), Key: bob.Public(), Prekey: &prekey.Signed},
		protocol.KindText, []byte("hello, Bob"), now)
	if err != nil {
		panic(err)
	}
	wire := env.Marshal() // what travels over the network

	// Bob opens.
	opener := &protocol.Opener{
		UserID: bob.ID(),
		Key:    bob,
		SenderKey: func(user, key protocol.ID) (*protocol.PublicKey, error) {
			if user == alice.ID() && key == alice.ID() { // Alice's pinned key
				return alice.Public(), nil
			}
			return nil, protocol.ErrUnknownSender
		},
		Prekey: func(id uint64) (*protocol.Prekey, error) {
			if id == prekey.ID() {
				return prekey, nil
			}
			return nil, protocol.ErrUnknownPrekey
		},
		Now: func() time.Time { return now.Add(2 * time.Second) },
	}
	msg, err := opener.Open(wire)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s from alice: %v\n", msg.Kind, msg.Sender == alice.ID())
	fmt.Printf("suite: %v\n", msg.Suite)
	fmt.Printf("body: %s\n", msg.Body)

	// Any change to the envelope is an authentication failure.
	wire[len(wire)-1] ^= 1
	_, err = opener.Open(wire)
	fmt.Println("tampered:", errors.Is(err, protocol.ErrAuth))
	// Output:
	// text from alice: true
	// suite: rsa-x25519
	// body: hello, Bob
	// tampered: true
}

// A contact card travels as a "parley:card/…" link (or a QR code of it).
// ParseCardURI verifies it: the key hashes to the user ID and the card is
// signed by that key.
func ExampleParseCardURI() {
	alice := advExampleKey("alice-2048")
	now := time.Date(2025, time.May, 1, 12, 0, 0, 0, time.UTC)
	card, err := protocol.NewCard(alice, "Alice", nil,
		[]string{"/ip4/203.0.113.7/tcp/7734", "/ip4/203.0.113.7/udp/7734/quic-v1"}, nil, now)
	if err != nil {
		panic(err)
	}
	link := card.URI()

	got, err := protocol.ParseCardURI(link)
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.HasPrefix(link, protocol.CardURIScheme))
	fmt.Println(got.Name, got.UserID == alice.ID())
	fmt.Println(got.Addrs)

	// A card whose name was changed after signing is refused.
	got.Name = "Mallory"
	_, err = protocol.ParseCardURI(got.URI())
	fmt.Println(errors.Is(err, protocol.ErrAuth))
	// Output:
	// true
	// Alice true
	// [/ip4/203.0.113.7/tcp/7734 /ip4/203.0.113.7/udp/7734/quic-v1]
	// true
}

// Two users compare their safety number out of band (read aloud, or as a QR
// code): both compute the same 60 digits.
func ExampleSafetyNumber() {
	alice, bob := advExampleKey("alice-2048"), advExampleKey("bob-2048")
	onAlicesSide := protocol.SafetyNumber(alice.ID(), alice.Public(), bob.ID(), bob.Public())
	onBobsSide := protocol.SafetyNumber(bob.ID(), bob.Public(), alice.ID(), alice.Public())

	digits := strings.Trim(onAlicesSide, "0123456789") == ""
	fmt.Println(len(onAlicesSide), digits, onAlicesSide == onBobsSide)
	fmt.Println(len(strings.Fields(protocol.FormatSafetyNumber(onAlicesSide))), "groups of five")
	// Output:
	// 60 true true
	// 12 groups of five
}

// A user ID prints as 52 characters of lower-case base32 and parses back.
func ExampleParseID() {
	alice := advExampleKey("alice-2048")
	s := alice.ID().String()
	id, err := protocol.ParseID(s)
	fmt.Println(len(s), s == strings.ToLower(s), err == nil && id == alice.ID())

	_, err = protocol.ParseID("not-an-id")
	fmt.Println(errors.Is(err, protocol.ErrMalformed))
	// Output:
	// 52 true true
	// true
}
