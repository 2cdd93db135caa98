package protocol

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

// sessStarted returns alice and bob with a session alice started and bob
// accepted, with no message in it yet but the start's.
func sessStarted(tb testing.TB) (*sessSide, *sessSide) {
	tb.Helper()
	alice, bob := sessPair(tb, "alice-2048", "bob-2048")
	bob.mustAccept(tb, alice.start(tb, bob, KindText, []byte("hi"), sessT0), alice, sessT0)
	return alice, bob
}

func TestSessionSkipLimits(t *testing.T) {
	alice, bob := sessStarted(t)
	var msgs [][]byte
	for range MaxSkipJump + 2 {
		msgs = append(msgs, alice.seal(t, "m", sessT0))
	}
	// Message 2001 would skip 2001 keys: refused, nothing derived.
	sessUnchanged(t, bob, ErrSkipLimit, func() error { _, err := bob.open(msgs[MaxSkipJump+1], alice, sessT0); return err })
	// Message 2000 skips 2000; the oldest 1000 of them are not kept.
	bob.mustOpen(t, msgs[MaxSkipJump], alice, "m", sessT0)
	if n := len(bob.ps.Current().r.skipped); n != MaxSkippedKeys {
		t.Fatalf("%d skipped keys kept, want %d", n, MaxSkippedKeys)
	}
	sessUnchanged(t, bob, ErrMessageKeyGone, func() error { _, err := bob.open(msgs[MaxSkipJump-MaxSkippedKeys-1], alice, sessT0); return err })
	for _, i := range []int{MaxSkipJump - 1, MaxSkipJump - MaxSkippedKeys, 1500, MaxSkipJump + 1} {
		bob.mustOpen(t, msgs[i], alice, "m", sessT0)
	}
	sessUnchanged(t, bob, ErrMessageKeyGone, func() error { _, err := bob.open(msgs[1500], alice, sessT0); return err })

	// Across a DH step: the rest of the previous chain counts too.
	alice, bob = sessStarted(t)
	for range 1500 {
		alice.seal(t, "lost", sessT0)
	}
	alice.mustOpen(t, bob.seal(t, "b", sessT0), bob, "b", sessT0)
	msgs = msgs[:0]
	for range 600 {
		msgs = append(msgs, alice.seal(t, "new chain", sessT0))
	}
	sessUnchanged(t, bob, ErrSkipLimit, func() error { _, err := bob.open(msgs[599], alice, sessT0); return err })
	bob.mustOpen(t, msgs[400], alice, "new chain", sessT0)
	if n := len(bob.ps.Current().r.skipped); n != MaxSkippedKeys {
		t.Fatalf("%d skipped keys kept, want %d", n, MaxSkippedKeys)
	}
	bob.mustOpen(t, msgs[599], alice, "new chain", sessT0)
	bob.mustOpen(t, msgs[0], alice, "new chain", sessT0)
}

// TestSessionForwardSecrecy: a used message key is gone from the stored
// state, and a copy of the state taken after message n opens nothing
// before n.
func TestSessionForwardSecrecy(t *testing.T) {
	alice, bob := sessStarted(t)
	var msgs [][]byte
	for i := range 6 {
		msgs = append(msgs, alice.seal(t, string(rune('0'+i)), sessT0))
	}
	// Message 0's key, before bob opens it, is the next key of his chain.
	_, mk0 := kdfChain(bob.ps.Current().r.recv)
	bob.mustOpen(t, msgs[0], alice, "0", sessT0)
	bob.mustOpen(t, msgs[3], alice, "3", sessT0) // skips 1 and 2
	state := bob.ps.Marshal()
	if bytes.Contains(state, mk0[:]) {
		t.Fatal("the stored state holds a used message key")
	}
	skipped := bob.ps.Current().r.skipped
	if len(skipped) != 2 || !bytes.Contains(state, skipped[0].mk[:]) {
		t.Fatal("the skipped keys are not in the stored state")
	}
	mk1 := skipped[0].mk
	bob.mustOpen(t, msgs[1], alice, "1", sessT0)
	if bytes.Contains(bob.ps.Marshal(), mk1[:]) {
		t.Fatal("a skipped key is still stored after its message was opened")
	}
	// A copy taken now (after 0, 1 and 3) opens 2, 4, 5 but not 0, 1, 3.
	copyOf := func() *sessSide {
		ps, err := ParsePeerSessions(bob.ps.Marshal(), bob.key.ID(), alice.key.ID())
		if err != nil {
			t.Fatal(err)
		}
		return &sessSide{key: bob.key, ps: ps}
	}
	thief := copyOf()
	for _, i := range []int{0, 1, 3} {
		sessUnchanged(t, thief, ErrMessageKeyGone, func() error { _, err := thief.open(msgs[i], alice, sessT0); return err })
	}
	// After a DH step both ways, nothing of the earlier chains opens.
	bob.mustOpen(t, msgs[2], alice, "2", sessT0)
	alice.mustOpen(t, bob.seal(t, "b", sessT0), bob, "b", sessT0)
	bob.mustOpen(t, alice.seal(t, "a", sessT0), alice, "a", sessT0)
	thief = copyOf()
	for _, i := range []int{0, 1, 2, 3} {
		sessUnchanged(t, thief, ErrMessageKeyGone, func() error { _, err := thief.open(msgs[i], alice, sessT0); return err })
	}
	bob.mustOpen(t, msgs[5], alice, "5", sessT0) // a skipped key of an old chain still opens
}

// TestSessionPostCompromise: a copy of alice's state stolen at step n
// opens what bob sends until alice's next DH step, and nothing after it.
func TestSessionPostCompromise(t *testing.T) {
	alice, bob := sessStarted(t)
	alice.mustOpen(t, bob.seal(t, "b0", sessT0), bob, "b0", sessT0)
	bob.mustOpen(t, alice.seal(t, "a0", sessT0), alice, "a0", sessT0)
	thief := &sessSide{key: alice.key}
	var err error
	if thief.ps, err = ParsePeerSessions(alice.ps.Marshal(), alice.key.ID(), bob.key.ID()); err != nil {
		t.Fatal(err)
	}
	// Bob's next chain is DH(bob's new key, alice's stolen key): the thief
	// follows it, as any double ratchet allows.
	b1 := bob.seal(t, "b1", sessT0)
	alice.mustOpen(t, b1, bob, "b1", sessT0)
	thief.mustOpen(t, b1, bob, "b1", sessT0)
	// Alice's DH step uses a key the thief does not have; from then on it is out.
	bob.mustOpen(t, alice.seal(t, "a1", sessT0), alice, "a1", sessT0)
	b2 := bob.seal(t, "b2", sessT0)
	alice.mustOpen(t, b2, bob, "b2", sessT0)
	sessUnchanged(t, thief, ErrMessageKeyGone, func() error { _, err := thief.open(b2, bob, sessT0); return err })
	// The thief's own ratchet cannot follow alice's chain either: its next
	// sending key differs from hers.
	tc, ac := thief.ps.Current(), alice.ps.Current()
	if tc.r.send == ac.r.send || tc.r.root == ac.r.root || tc.r.dhPub == ac.r.dhPub {
		t.Fatal("the stolen state still tracks alice's ratchet")
	}
}

// sessResign replaces m's signature by one made with key.
func sessResign(m *SessionMessage, key ed25519.PrivateKey) {
	m.Signature = ed25519.Sign(key, m.signedBytes(m.Canonical(), true))
}

func TestSessionSignatureRefusals(t *testing.T) {
	alice, bob := sessStarted(t)
	now := sessT0
	pub := func(s *sessSide) ed25519.PrivateKey { return s.ps.Current().signing }

	// The other user's certified key: bob's message signed with alice's key.
	b1, _ := ParseSessionMessage(bob.seal(t, "b1", now))
	forged := *b1
	sessResign(&forged, pub(alice))
	sessUnchanged(t, alice, ErrAuth, func() error { _, err := alice.ps.Open(&forged, bob.key.Public(), now); return err })

	// An uncertified key: bob's certificate names a key mallory made.
	_, mallory, _ := ed25519.GenerateKey(nil)
	forged = *b1
	forged.CertKey = mallory.Public().(ed25519.PublicKey)
	sessResign(&forged, mallory)
	sessUnchanged(t, alice, ErrAuth, func() error { _, err := alice.ps.Open(&forged, bob.key.Public(), now); return err })

	alice.mustOpen(t, b1.Marshal(), bob, "b1", now)
	// Now that alice has bob's key: a message without certificate signed
	// by another key, and one with a second certified-looking key.
	b2, _ := ParseSessionMessage(bob.seal(t, "b2", now))
	forged = *b2
	forged.CertKey, forged.CertSignature = nil, nil
	sessResign(&forged, mallory)
	sessUnchanged(t, alice, ErrAuth, func() error { _, err := alice.ps.Open(&forged, bob.key.Public(), now); return err })
	forged = *b2
	forged.CertKey = mallory.Public().(ed25519.PublicKey)
	sessResign(&forged, mallory)
	sessUnchanged(t, alice, ErrAuth, func() error { _, err := alice.ps.Open(&forged, bob.key.Public(), now); return err })
	// Alice's own message reflected back at her (her key, her header).
	a1, _ := ParseSessionMessage(alice.seal(t, "a1", now))
	sessUnchanged(t, alice, ErrNotForMe, func() error { _, err := alice.ps.Open(a1, bob.key.Public(), now); return err })
	// The initiator's messages never carry a certificate.
	forged = *a1
	forged.CertKey, forged.CertSignature = b1.CertKey, b1.CertSignature
	sessUnchanged(t, bob, ErrMalformed, func() error { _, err := bob.ps.Open(&forged, alice.key.Public(), now); return err })
	// Alice's message signed with bob's key.
	forged = *a1
	sessResign(&forged, pub(bob))
	sessUnchanged(t, bob, ErrAuth, func() error { _, err := bob.ps.Open(&forged, alice.key.Public(), now); return err })
	alice.mustOpen(t, b2.Marshal(), bob, "b2", now)

	// A key from another session: bob's certified key and certificate of
	// the first session, in a message of a second one.
	later := now.Add(time.Minute)
	oldKey, oldCert, oldSig := pub(bob), b1.CertKey, b1.CertSignature
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("again"), later), alice, later)
	c1, _ := ParseSessionMessage(bob.seal(t, "c1", later))
	forged = *c1
	forged.CertKey, forged.CertSignature = oldCert, oldSig
	sessResign(&forged, oldKey)
	sessUnchanged(t, alice, ErrAuth, func() error { _, err := alice.ps.Open(&forged, bob.key.Public(), later); return err })
	alice.mustOpen(t, c1.Marshal(), bob, "c1", later)
	forged = *c1
	forged.CertKey, forged.CertSignature = nil, nil
	sessResign(&forged, oldKey)
	sessUnchanged(t, alice, ErrAuth, func() error { _, err := alice.ps.Open(&forged, bob.key.Public(), later); return err })

	// Another user's certified key: carol's, from her session with alice.
	carol := &sessSide{key: testKey(t, "carol-2048")}
	carol.prekey = advPrekey(t, carol.key, now)
	carol.ps = NewPeerSessions(carol.key.ID(), alice.key.ID())
	aliceC := &sessSide{key: alice.key, prekey: alice.prekey, ps: NewPeerSessions(alice.key.ID(), carol.key.ID())}
	carol.mustAccept(t, aliceC.start(t, carol, KindText, []byte("hi carol"), later), aliceC, later)
	k1, _ := ParseSessionMessage(carol.seal(t, "k1", later))
	alice2, bob2 := sessStarted(t)
	d1, _ := ParseSessionMessage(bob2.seal(t, "d1", later))
	forged = *d1
	forged.CertKey, forged.CertSignature = k1.CertKey, k1.CertSignature
	sessResign(&forged, pub(carol))
	sessUnchanged(t, alice2, ErrAuth, func() error { _, err := alice2.ps.Open(&forged, bob.key.Public(), later); return err })
	alice2.mustOpen(t, d1.Marshal(), bob2, "d1", later)
}

func TestSessionStartRefusals(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	now := sessT0
	env, err := alice.ps.Start(testSender(alice.key), testRecipient(bob.key, bob.prekey), KindText, []byte("hi"), now)
	if err != nil {
		t.Fatal(err)
	}
	// The RSA signature certifies the initiator's session key: a start
	// whose signature fails is refused before anything is accepted.
	bad := *env
	bad.Signature = append([]byte(nil), env.Signature...)
	bad.Signature[10] ^= 1
	sessUnchanged(t, bob, ErrAuth, func() error { _, err := bob.accept(bad.Marshal(), alice, now); return err })
	// Carol signing a start in alice's name.
	carol := testKey(t, "carol-2048")
	forged, err := Seal(Sender{UserID: alice.key.ID(), Key: carol}, testRecipient(bob.key, bob.prekey), KindSessionStart, []byte("x"), now)
	if err != nil {
		t.Fatal(err)
	}
	sessUnchanged(t, bob, ErrAuth, func() error { _, err := bob.accept(forged.Marshal(), alice, now); return err })

	o := testOpener(bob.key, []*PrivateKey{alice.key}, bob.prekey)
	o.Now = func() time.Time { return now }
	m, err := o.Open(env.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	other := advPrekey(t, bob.key, now)
	for name, c := range map[string]struct {
		mut  func(*Message) (*Prekey, Signer)
		want error
	}{
		"wrong kind":     {func(m *Message) (*Prekey, Signer) { m.Kind = KindText; return bob.prekey, bob.key }, ErrMalformed},
		"suite 1":        {func(m *Message) (*Prekey, Signer) { m.Suite = SuiteRSA; return bob.prekey, bob.key }, ErrMalformed},
		"no prekey":      {func(m *Message) (*Prekey, Signer) { return nil, bob.key }, ErrUnknownPrekey},
		"other prekey":   {func(m *Message) (*Prekey, Signer) { return other, bob.key }, ErrUnknownPrekey},
		"other identity": {func(m *Message) (*Prekey, Signer) { return bob.prekey, carol }, ErrNotForMe},
		"bad body":       {func(m *Message) (*Prekey, Signer) { m.Body = []byte{0xff}; return bob.prekey, bob.key }, ErrMalformed},
		"another peer": {func(m *Message) (*Prekey, Signer) {
			m.Sender = carol.ID()
			return bob.prekey, bob.key
		}, ErrNotForMe},
	} {
		t.Run(name, func(t *testing.T) {
			mm := *m
			pk, me := c.mut(&mm)
			sessUnchanged(t, bob, c.want, func() error { _, err := bob.ps.Accept(&mm, pk, me, now); return err })
		})
	}
	// A start accepted twice.
	if _, err := bob.ps.Accept(m, bob.prekey, bob.key, now); err != nil {
		t.Fatal(err)
	}
	sessUnchanged(t, bob, ErrMessageKeyGone, func() error { _, err := bob.ps.Accept(m, bob.prekey, bob.key, now); return err })
}

// TestSessionTampering: no change to any field of a session message opens.
func TestSessionTampering(t *testing.T) {
	alice, bob := sessStarted(t)
	raw := bob.seal(t, "tamper with me", sessT0)
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(raw)
			b[i] ^= bit
			before := alice.ps.Marshal()
			if m, err := alice.open(b, bob, sessT0); err == nil {
				t.Fatalf("byte %d ^ %#x opened: %q", i, bit, m.Body)
			}
			if !bytes.Equal(before, alice.ps.Marshal()) {
				t.Fatalf("byte %d ^ %#x changed the state", i, bit)
			}
		}
	}
	alice.mustOpen(t, raw, bob, "tamper with me", sessT0)
}

func TestSessionCrossingStarts(t *testing.T) {
	for _, skew := range []time.Duration{0, time.Millisecond, -time.Second} {
		alice, bob := sessPair(t, "alice-2048", "bob-2048")
		sa := alice.start(t, bob, KindText, []byte("from alice"), sessT0)
		sb := bob.start(t, alice, KindText, []byte("from bob"), sessT0.Add(skew))
		// Each seals on its own start before it sees the other's.
		a1 := alice.seal(t, "a1", sessT0)
		b1 := bob.seal(t, "b1", sessT0)
		bob.mustAccept(t, sa, alice, sessT0)
		alice.mustAccept(t, sb, bob, sessT0)
		ca, cb := alice.ps.Current().ID(), bob.ps.Current().ID()
		if ca != cb {
			t.Fatalf("skew %v: alice settled on %s, bob on %s", skew, ca, cb)
		}
		// What went on the losing session still opens during the grace period.
		bob.mustOpen(t, a1, alice, "a1", sessT0)
		alice.mustOpen(t, b1, bob, "b1", sessT0)
		for i := range 3 {
			alice.mustOpen(t, bob.seal(t, "b", sessT0), bob, "b", sessT0)
			bob.mustOpen(t, alice.seal(t, "a", sessT0), alice, "a", sessT0)
			if i == 1 {
				alice.restart(t)
				bob.restart(t)
			}
		}
		// After the grace period the loser opens nothing.
		loser := alice.ps.sessions[1]
		a2, err := loser.clone().Seal(KindText, []byte("late"), sessT0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.ps.Open(a2, alice.key.Public(), sessT0.Add(SessionGrace+time.Hour)); !errors.Is(err, ErrSessionUnknown) {
			t.Fatalf("after the grace period: %v, want ErrSessionUnknown", err)
		}
		bob.ps.Expire(sessT0.Add(SessionGrace + time.Hour))
		if len(bob.ps.sessions) != 1 || bob.ps.Current().ID() != cb {
			t.Fatal("Expire did not drop the loser, or dropped the winner")
		}
	}
}

func TestSessionReset(t *testing.T) {
	alice, bob := sessStarted(t)
	now := sessT0
	bob.mustOpen(t, alice.seal(t, "a1", now), alice, "a1", now)
	// Bob loses his state (say, restored from an old backup without it).
	bob.ps = NewPeerSessions(bob.key.ID(), alice.key.ID())
	a2 := alice.seal(t, "a2", now)
	_, err := bob.open(a2, alice, now)
	if !errors.Is(err, ErrSessionUnknown) {
		t.Fatalf("open without state: %v, want ErrSessionUnknown", err)
	}
	// He asks for a new session with an RSA-signed reset envelope.
	m, _ := ParseSessionMessage(a2)
	env := advSeal(t, bob.key, alice.key, nil, KindSessionReset, MarshalSessionReset(m.Session), now)
	o := testOpener(alice.key, []*PrivateKey{bob.key})
	o.Now = func() time.Time { return now }
	opened, err := o.Open(env.Marshal())
	if err != nil || opened.Kind != KindSessionReset {
		t.Fatalf("opening the reset: %v", err)
	}
	id, err := ParseSessionReset(opened.Body)
	if err != nil || id != m.Session {
		t.Fatalf("ParseSessionReset = %s, %v", id, err)
	}
	if !alice.ps.Reset(id, now) || alice.ps.Reset(id, now) {
		t.Fatal("Reset: the session was not there, or is still there")
	}
	if !alice.ps.NeedsStart(now) {
		t.Fatal("no start needed after the current session was reset")
	}
	// Alice re-sends what bob did not acknowledge in a new session.
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("a2"), now), alice, now)
	alice.mustOpen(t, bob.seal(t, "b1", now), bob, "b1", now)

	for name, b := range map[string][]byte{
		"empty":      {},
		"short":      MarshalSessionReset(SessionID{1})[:5],
		"zero":       marshalResetRaw(make([]byte, SessionIDSize)),
		"long":       marshalResetRaw(make([]byte, SessionIDSize+1)),
		"trailing":   append(MarshalSessionReset(SessionID{1}), 0x08, 0x01),
		"noncanonic": append([]byte{0x0a, 0x80, 0x00}[:0], append([]byte{0x0a, 0x90, 0x00}, make([]byte, 16)...)...),
	} {
		if _, err := ParseSessionReset(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseSessionReset(%s): %v, want ErrMalformed", name, err)
		}
	}
}

func marshalResetRaw(id []byte) []byte { return append([]byte{0x0a, byte(len(id))}, id...) }

// TestSessionRefusedAndExpiredStayGone: a session refused with a reset, or
// past its grace, never opens a message again, even when its start comes
// late or the current session is reset: the message was sent again in
// another session and must not open twice.
func TestSessionRefusedAndExpiredStayGone(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	now := sessT0
	start := alice.start(t, bob, KindText, []byte("late start"), now)
	a1 := alice.seal(t, "a1", now)
	// a1 overtakes the start: bob refuses its session and says so.
	if _, err := bob.open(a1, alice, now); !errors.Is(err, ErrSessionUnknown) {
		t.Fatalf("a message before its start: %v", err)
	}
	m, _ := ParseSessionMessage(a1)
	bob.ps.Refuse(m.Session, now)
	bob.restart(t)
	sessUnchanged(t, bob, ErrSessionUnknown, func() error { _, err := bob.accept(start, alice, now); return err })
	sessUnchanged(t, bob, ErrSessionUnknown, func() error { _, err := bob.open(a1, alice, now); return err })
	alice.ps.Reset(m.Session, now)
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("a1 again"), now), alice, now)
	// The refusal lasts SessionGrace, and at most MaxRefusedSessions are kept.
	for i := range MaxRefusedSessions + 3 {
		bob.ps.Refuse(SessionID{byte(i), 1}, now.Add(-time.Duration(i)*time.Second)) // a clock going back
	}
	bob.restart(t)
	if n := len(bob.ps.refused); n != MaxRefusedSessions || bob.ps.isRefused(m.Session, now) {
		t.Fatalf("%d refusals kept, the first still there: %v", n, bob.ps.isRefused(m.Session, now))
	}
	later := now.Add(SessionGrace)
	bob.ps.Expire(later)
	if len(bob.ps.refused) != 0 || len(bob.ps.sessions) != 1 {
		t.Fatalf("after the grace: %d refusals, %d sessions", len(bob.ps.refused), len(bob.ps.sessions))
	}

	// A session past its grace does not come back when the current one is reset.
	alice, bob = sessPair(t, "alice-2048", "bob-2048")
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("s1"), now), alice, now)
	old := alice.seal(t, "on s1", now)
	t2 := now.Add(time.Minute)
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("s2"), t2), alice, t2)
	late := t2.Add(SessionGrace)
	if _, err := bob.open(old, alice, late); !errors.Is(err, ErrSessionUnknown) {
		t.Fatalf("a message of a session past its grace: %v", err)
	}
	bob.ps.Reset(bob.ps.Current().ID(), late)
	if bob.ps.Current() != nil {
		t.Fatal("a session past its grace became current again")
	}
	if _, err := bob.open(old, alice, late); !errors.Is(err, ErrSessionUnknown) {
		t.Fatalf("after a reset, a message of a session past its grace: %v", err)
	}
}
