package protocol_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// How a node uses sessions: one PeerSessions per friend, stored as one
// sealed blob and written in the same transaction as each message.
func ExamplePeerSessions() {
	alice, bob := advExampleKey("alice-2048"), advExampleKey("bob-2048")
	now := time.Date(2025, time.May, 1, 12, 0, 0, 0, time.UTC)
	prekey, err := protocol.GeneratePrekey(bob, now.Add(-time.Hour), 7*24*time.Hour)
	if err != nil {
		panic(err)
	}
	aliceSessions := protocol.NewPeerSessions(alice.ID(), bob.ID())
	bobSessions := protocol.NewPeerSessions(bob.ID(), alice.ID())

	// Alice's first message starts a session: one RSA-signed suite-2 envelope.
	if !aliceSessions.NeedsStart(now) {
		panic("a new friend has no session")
	}
	env, err := aliceSessions.Start(
		protocol.Sender{UserID: alice.ID(), Key: alice},
		protocol.Recipient{UserID: bob.ID(), Key: bob.Public(), Prekey: &prekey.Signed},
		protocol.KindText, []byte("hello, Bob"), now)
	if err != nil {
		panic(err)
	}
	// (alice stores aliceSessions.Marshal(), sealed, with her outbox entry.)

	// Bob opens the envelope as any other, then accepts the session.
	opener := &protocol.Opener{
		UserID: bob.ID(), Key: bob,
		SenderKey: func(user, key protocol.ID) (*protocol.PublicKey, error) {
			if user == alice.ID() && key == alice.ID() {
				return alice.Public(), nil
			}
			return nil, protocol.ErrUnknownSender
		},
		Prekey: func(id uint64) (*protocol.Prekey, error) { return prekey, nil },
		Now:    func() time.Time { return now },
	}
	m, err := opener.Open(env.Marshal())
	if err != nil {
		panic(err)
	}
	if m.Kind == protocol.KindSessionStart {
		first, err := bobSessions.Accept(m, prekey, bob, now)
		if err != nil {
			panic(err)
		}
		fmt.Printf("bob: %s\n", first.Body)
		// (bob stores the message, its msg_id and bobSessions.Marshal() in one transaction.)
	}

	// From now on, messages are session messages: Ed25519 and AES-GCM.
	reply, err := bobSessions.Seal(protocol.KindText, []byte("hi, Alice"), now, nil)
	if err != nil {
		panic(err)
	}
	wire := reply.Marshal() // in a Delivery frame's Session field

	sm, err := protocol.ParseSessionMessage(wire)
	if err != nil {
		panic(err)
	}
	// The node checks sm.CheckTime and its seen msg_ids first.
	got, err := aliceSessions.Open(sm, bob.Public(), now)
	if err != nil {
		panic(err)
	}
	fmt.Printf("alice: %s (%s)\n", got.Body, got.Suite)

	// A receiver that lost its state answers with a session reset.
	lost := protocol.NewPeerSessions(bob.ID(), alice.ID())
	next, _ := aliceSessions.Seal(protocol.KindText, []byte("are you there?"), now, nil)
	if _, err := lost.Open(next, alice.Public(), now); errors.Is(err, protocol.ErrSessionUnknown) {
		body := protocol.MarshalSessionReset(next.Session) // sealed as a KindSessionReset envelope
		id, _ := protocol.ParseSessionReset(body)
		aliceSessions.Reset(id, now)
		fmt.Println("alice needs a new start:", aliceSessions.NeedsStart(now))
	}
	// Output:
	// bob: hello, Bob
	// alice: hi, Alice (session)
	// alice needs a new start: true
}
