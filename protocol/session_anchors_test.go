package protocol

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestSessionAnchoredInRetiredKey: Alice's session with Bob is anchored
// in her key K1. Alice rotates to K2 at tRot. Bob, who has pinned K2,
// still opens Alice's messages of the K1 session while K1 is in its grace,
// and refuses them once the grace is over (ErrSessionUnknown wrapping
// ErrKeyRetired), without changing his state; so does Alice for Bob's
// messages of the session anchored in her own retired key. A new session
// started under K2 works both ways after the grace.
func TestSessionAnchoredInRetiredKey(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	k1, k2 := alice.key, testKey(t, "alice-3072")
	aliceID := k1.ID()
	now := sessT0
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("hi"), now), alice, now)
	alice.mustOpen(t, bob.seal(t, "hello", now), bob, "hello", now)
	s1 := alice.ps.Current().ID()
	if mine, theirs := bob.ps.Current().Keys(); mine != bob.key.ID() || theirs != k1.ID() {
		t.Fatal("Bob's session is not anchored in Alice's K1 and his own key")
	}

	const grace = 24 * time.Hour
	tRot := now.Add(time.Hour).Truncate(time.Second)
	r, err := NewRotation(aliceID, k1, k2, 1, tRot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyChain(aliceID, k1.Public(), []*Rotation{r}); err != nil {
		t.Fatal(err)
	}
	// What Bob trusts after pinning K2: K1 until tRot + grace.
	bobAnchors := Anchors{
		Peer:        k2.Public(),
		PeerRetired: []RetiredKey{{ID: k1.ID(), Key: k1.Public(), Until: r.Time.Add(grace)}},
		Mine:        bob.key.ID(),
	}
	// What Alice trusts: her current K2, and K1 in its grace.
	aliceAnchors := Anchors{
		Peer:        bob.key.Public(),
		Mine:        k2.ID(),
		MineRetired: []RetiredKey{{ID: k1.ID(), Until: r.Time.Add(grace)}},
	}
	openWith := func(to *sessSide, raw []byte, a Anchors, at time.Time) (*Message, error) {
		m, err := ParseSessionMessage(raw)
		if err != nil {
			return nil, err
		}
		return to.ps.OpenWith(m, a, at)
	}

	// In the grace: both directions of the K1 session still open.
	inGrace := tRot.Add(grace / 2)
	if m, err := openWith(bob, alice.seal(t, "in grace", inGrace), bobAnchors, inGrace); err != nil || string(m.Body) != "in grace" {
		t.Fatalf("Bob, K1 session in the grace: %v", err)
	}
	if m, err := openWith(alice, bob.seal(t, "in grace too", inGrace), aliceAnchors, inGrace); err != nil || string(m.Body) != "in grace too" {
		t.Fatalf("Alice, K1 session in the grace: %v", err)
	}
	// The strict Open trusts only the key it is given: K2 opens nothing
	// of a session K1 anchors, even in the grace.
	late := alice.seal(t, "late", inGrace)
	sessUnchanged(t, bob, ErrUnknownSender, func() error {
		m, _ := ParseSessionMessage(late)
		_, err := bob.ps.Open(m, k2.Public(), inGrace)
		return err
	})

	// Past the grace: refused on both sides, as an unknown session (the
	// receiver asks for a reset), and nothing changes.
	past := tRot.Add(grace + time.Second)
	for _, c := range []struct {
		name string
		to   *sessSide
		raw  []byte
		a    Anchors
	}{
		{"Bob, Alice's K1 retired", bob, late, bobAnchors},
		{"Alice, her own K1 retired", alice, bob.seal(t, "too late", past), aliceAnchors},
	} {
		sessUnchanged(t, c.to, ErrKeyRetired, func() error {
			_, err := openWith(c.to, c.raw, c.a, past)
			if !errors.Is(err, ErrSessionUnknown) {
				t.Errorf("%s: %v does not wrap ErrSessionUnknown", c.name, err)
			}
			return err
		})
		if got := c.to.ps.Unanchored(c.a, past); !slices.Equal(got, []SessionID{s1}) {
			t.Errorf("%s: Unanchored = %v, want [%s]", c.name, got, s1)
		}
		if got := c.to.ps.Unanchored(c.a, inGrace); len(got) != 0 {
			t.Errorf("%s: Unanchored in the grace = %v", c.name, got)
		}
	}
	// A retired key named without its public key, or with another key
	// under its ID, anchors nothing.
	forged := bobAnchors
	forged.PeerRetired = []RetiredKey{{ID: k1.ID(), Key: testKey(t, "carol-2048").Public(), Until: past.Add(time.Hour)}}
	sessUnchanged(t, bob, ErrKeyRetired, func() error { _, err := openWith(bob, late, forged, past); return err })

	// A new session under K2 works both ways after the grace. Alice's
	// sessions are a new side: same user ID, new key.
	alice2 := &sessSide{key: k2, ps: alice.ps}
	env, err := alice2.ps.Start(Sender{UserID: aliceID, Key: k2}, testRecipient(bob.key, bob.prekey), KindText, []byte("new key"), past)
	if err != nil {
		t.Fatal(err)
	}
	o := testOpener(bob.key, nil, bob.prekey)
	o.SenderKey = func(user, key ID) (*PublicKey, error) {
		if user == aliceID && key == k2.ID() {
			return k2.Public(), nil
		}
		return nil, ErrUnknownSender
	}
	o.Now = func() time.Time { return past }
	m, err := o.Open(env.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if first, err := bob.ps.Accept(m, bob.prekey, bob.key, past); err != nil || string(first.Body) != "new key" {
		t.Fatalf("Accept under K2: %v", err)
	}
	if _, theirs := bob.ps.Current().Keys(); theirs != k2.ID() {
		t.Fatal("Bob's new session is not anchored in K2")
	}
	if m, err := openWith(alice2, bob.seal(t, "reply", past), aliceAnchors, past); err != nil || string(m.Body) != "reply" {
		t.Fatalf("Alice opens Bob's reply in the K2 session: %v", err)
	}
	if m, err := openWith(bob, alice2.seal(t, "again", past), bobAnchors, past); err != nil || string(m.Body) != "again" {
		t.Fatalf("Bob opens Alice's next message in the K2 session: %v", err)
	}
	// The stored state keeps the anchors.
	bob.restart(t)
	if _, theirs := bob.ps.Current().Keys(); theirs != k2.ID() {
		t.Fatal("anchors lost in the stored state")
	}
}

// TestOpenerRetiredKey: an envelope sealed to a key the recipient retired
// is refused with ErrKeyRetired (not ErrNotForMe) only after its
// signature verified; a forged one is ErrAuth. The Seen hook runs after
// the signature too: a forged envelope never reaches it.
func TestOpenerRetiredKey(t *testing.T) {
	k1, k2, bob := testKey(t, "alice-2048"), testKey(t, "alice-3072"), testKey(t, "bob-2048")
	env, err := Seal(testSender(bob), Recipient{UserID: k1.ID(), Key: k1.Public()}, KindText, []byte("to K1"), sessT0)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	o := testOpener(k2, []*PrivateKey{bob})
	o.UserID = k1.ID()
	o.Now = func() time.Time { return sessT0 }
	o.Seen = func(MsgID) error { seen++; return nil }
	if _, err := o.Open(env.Marshal()); !errors.Is(err, ErrNotForMe) {
		t.Fatalf("without Retired: %v, want ErrNotForMe", err)
	}
	o.Retired = func(id ID) bool { return id == k1.ID() }
	if _, err := o.Open(env.Marshal()); !errors.Is(err, ErrKeyRetired) || errors.Is(err, ErrNotForMe) {
		t.Fatalf("sealed to a retired key: %v, want ErrKeyRetired", err)
	}
	forged := *env
	forged.Signature = slices.Clone(env.Signature)
	forged.Signature[5] ^= 1
	if _, err := o.Open(forged.Marshal()); !errors.Is(err, ErrAuth) || errors.Is(err, ErrKeyRetired) {
		t.Fatalf("forged, sealed to a retired key: %v, want ErrAuth", err)
	}

	// Seen: after the signature, before decryption.
	cur, err := Seal(testSender(bob), Recipient{UserID: k1.ID(), Key: k2.Public()}, KindText, []byte("to K2"), sessT0)
	if err != nil {
		t.Fatal(err)
	}
	bad := *cur
	bad.Signature = slices.Clone(cur.Signature)
	bad.Signature[5] ^= 1
	if _, err := o.Open(bad.Marshal()); !errors.Is(err, ErrAuth) || seen != 0 {
		t.Fatalf("forged: %v, Seen called %d times", err, seen)
	}
	replay := errors.New("seen")
	o.Seen = func(MsgID) error { seen++; return replay }
	if _, err := o.Open(cur.Marshal()); !errors.Is(err, replay) || seen != 1 {
		t.Fatalf("replay: %v, Seen called %d times", err, seen)
	}
	o.Seen = nil
	if m, err := o.Open(cur.Marshal()); err != nil || string(m.Body) != "to K2" {
		t.Fatalf("current key: %v", err)
	}
}
