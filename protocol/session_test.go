package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Helpers of the session tests, prefixed sess.

// sessT0 is the session tests' clock.
var sessT0 = time.Date(2026, time.February, 3, 10, 20, 30, 400_000_000, time.UTC)

// sessSide is one user of a session test: identity, current prekey and
// the sessions with the other user.
type sessSide struct {
	key     *PrivateKey
	prekey  *Prekey
	retired []*Prekey // earlier prekeys, still accepted
	ps      *PeerSessions
}

func sessPair(tb testing.TB, a, b string) (*sessSide, *sessSide) {
	tb.Helper()
	ka, kb := testKey(tb, a), testKey(tb, b)
	return &sessSide{key: ka, prekey: advPrekey(tb, ka, sessT0), ps: NewPeerSessions(ka.ID(), kb.ID())},
		&sessSide{key: kb, prekey: advPrekey(tb, kb, sessT0), ps: NewPeerSessions(kb.ID(), ka.ID())}
}

// start has from start a session with to and returns the start envelope.
func (from *sessSide) start(tb testing.TB, to *sessSide, kind Kind, body []byte, now time.Time) []byte {
	tb.Helper()
	env, err := from.ps.Start(testSender(from.key), testRecipient(to.key, to.prekey), kind, body, now)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	return env.Marshal()
}

// accept opens a start envelope from peer and accepts it.
func (to *sessSide) accept(raw []byte, from *sessSide, now time.Time) (*Message, error) {
	prekeys := append([]*Prekey{to.prekey}, to.retired...)
	o := testOpener(to.key, []*PrivateKey{from.key}, prekeys...)
	o.Now = func() time.Time { return now }
	m, err := o.Open(raw)
	if err != nil {
		return nil, err
	}
	pk, _ := o.Prekey(m.PrekeyID)
	return to.ps.Accept(m, pk, to.key, now)
}

func (to *sessSide) mustAccept(tb testing.TB, raw []byte, from *sessSide, now time.Time) *Message {
	tb.Helper()
	m, err := to.accept(raw, from, now)
	if err != nil {
		tb.Fatalf("Accept: %v", err)
	}
	return m
}

func (from *sessSide) seal(tb testing.TB, body string, now time.Time) []byte {
	tb.Helper()
	m, err := from.ps.Seal(KindText, []byte(body), now, nil)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return m.Marshal()
}

// open parses and opens raw, a session message from peer.
func (to *sessSide) open(raw []byte, from *sessSide, now time.Time) (*Message, error) {
	m, err := ParseSessionMessage(raw)
	if err != nil {
		return nil, err
	}
	return to.ps.Open(m, from.key.Public(), now)
}

func (to *sessSide) mustOpen(tb testing.TB, raw []byte, from *sessSide, want string, now time.Time) *Message {
	tb.Helper()
	m, err := to.open(raw, from, now)
	if err != nil {
		tb.Fatalf("Open %q: %v", want, err)
	}
	if string(m.Body) != want {
		tb.Fatalf("Open: body %q, want %q", m.Body, want)
	}
	return m
}

// restart replaces the side's sessions by what their stored blob parses to.
func (s *sessSide) restart(tb testing.TB) {
	tb.Helper()
	b := s.ps.Marshal()
	ps, err := ParsePeerSessions(b, s.ps.me, s.ps.peer)
	if err != nil {
		tb.Fatalf("ParsePeerSessions: %v", err)
	}
	if !bytes.Equal(ps.Marshal(), b) {
		tb.Fatal("ParsePeerSessions(b).Marshal() != b")
	}
	s.ps = ps
}

// sessUnchanged runs f and checks that it fails with want and leaves the
// side's stored state as it was.
func sessUnchanged(tb testing.TB, s *sessSide, want error, f func() error) {
	tb.Helper()
	before := s.ps.Marshal()
	err := f()
	if !errors.Is(err, want) {
		tb.Fatalf("got %v, want %v", err, want)
	}
	if !bytes.Equal(before, s.ps.Marshal()) {
		tb.Fatalf("a failed call (%v) changed the state", err)
	}
}

func TestSessionRoundTrip(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	now := sessT0
	start := alice.start(t, bob, KindText, []byte("hello bob"), now)
	first := bob.mustAccept(t, start, alice, now)
	if first.Kind != KindText || string(first.Body) != "hello bob" || first.Sender != alice.key.ID() {
		t.Fatalf("first message = %+v", first)
	}
	if alice.ps.Current().ID() != bob.ps.Current().ID() {
		t.Fatal("the two sides disagree on the session")
	}

	// Alice goes on before bob answers; bob answers with his certificate
	// until he sees that alice has it.
	a1 := alice.seal(t, "a1", now)
	a2 := alice.seal(t, "a2", now)
	bob.mustOpen(t, a1, alice, "a1", now)
	bob.restart(t)
	bob.mustOpen(t, a2, alice, "a2", now)
	b1, _ := ParseSessionMessage(bob.seal(t, "b1", now))
	b2, _ := ParseSessionMessage(bob.seal(t, "b2", now))
	if b1.CertKey == nil || b2.CertKey == nil {
		t.Fatal("the responder's messages lack its certificate before confirmation")
	}
	alice.restart(t)
	m := alice.mustOpen(t, b2.Marshal(), bob, "b2", now) // out of order
	if m.Suite != SuiteSession || m.Sender != bob.key.ID() || m.SenderKey != bob.key.ID() || m.RecipientKey != alice.key.ID() {
		t.Fatalf("opened header = %+v", m.Header)
	}
	alice.mustOpen(t, b1.Marshal(), bob, "b1", now)
	a3 := alice.seal(t, "a3", now)
	bob.mustOpen(t, a3, alice, "a3", now)
	b3, _ := ParseSessionMessage(bob.seal(t, "b3", now))
	if b3.CertKey != nil {
		t.Fatal("the responder still sends its certificate after the initiator's DH step")
	}
	alice.mustOpen(t, b3.Marshal(), bob, "b3", now)

	// Many round trips, with restarts.
	for i := range 20 {
		for j := range i % 4 {
			body := string(rune('a'+j)) + "x"
			bob.mustOpen(t, alice.seal(t, body, now), alice, body, now)
		}
		alice.restart(t)
		bob.mustOpen(t, alice.seal(t, "ping", now), alice, "ping", now)
		bob.restart(t)
		alice.mustOpen(t, bob.seal(t, "pong", now), bob, "pong", now)
	}
	if got := alice.ps.Current().Messages(); got != bob.ps.Current().Messages() || got < 50 {
		t.Fatalf("message counts %d / %d", got, bob.ps.Current().Messages())
	}
}

func TestSessionStartWithoutFirstMessage(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	start := alice.start(t, bob, 0, nil, sessT0)
	if m := bob.mustAccept(t, start, alice, sessT0); m != nil {
		t.Fatalf("first message %+v, want none", m)
	}
	bob.mustOpen(t, alice.seal(t, "x", sessT0), alice, "x", sessT0)
	alice.mustOpen(t, bob.seal(t, "y", sessT0), bob, "y", sessT0)
	if _, _, err := StartSession(testSender(alice.key), testRecipient(bob.key, bob.prekey), SessionID{}, 0, []byte("x"), sessT0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a body without a kind: %v", err)
	}
	if _, _, err := StartSession(testSender(alice.key), testRecipient(bob.key, nil), SessionID{}, KindText, nil, sessT0); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("a start without prekey: %v", err)
	}
	big := make([]byte, MaxStartBody+1)
	if _, _, err := StartSession(testSender(alice.key), testRecipient(bob.key, bob.prekey), SessionID{}, KindText, big, sessT0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a start over MaxStartBody: %v", err)
	}
	if _, err := alice.ps.Seal(KindText, make([]byte, MaxBodySize+1), sessT0, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Seal over MaxBodySize: %v", err)
	}
	m, err := alice.ps.Seal(KindText, make([]byte, MaxBodySize), sessT0, nil)
	if err != nil || len(m.Marshal()) > MaxSessionMessageSize {
		t.Fatalf("Seal of MaxBodySize: %v", err)
	}
	if _, err := ParseSessionMessage(m.Marshal()); err != nil {
		t.Fatalf("the largest message does not parse: %v", err)
	}
}

func TestSessionStrictSignatures(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	now := sessT0
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("hi"), now), alice, now)
	sm, err := alice.ps.Seal(KindText, []byte("strict"), now, alice.key)
	if err != nil {
		t.Fatal(err)
	}
	if sm.SigAlg != SigIdentity || len(sm.Signature) != alice.key.Public().Size() {
		t.Fatalf("strict message: alg %d, %d-byte signature", sm.SigAlg, len(sm.Signature))
	}
	raw := sm.Marshal()
	carol := testKey(t, "carol-2048")
	p, _ := ParseSessionMessage(raw)
	sessUnchanged(t, bob, ErrUnknownSender, func() error { _, err := bob.ps.Open(p, carol.Public(), now); return err })
	sessUnchanged(t, bob, ErrUnknownSender, func() error { _, err := bob.ps.Open(p, nil, now); return err })
	bob.mustOpen(t, raw, alice, "strict", now)
	if _, err := alice.ps.Seal(KindText, nil, now, carol); !errors.Is(err, ErrMalformed) {
		t.Fatalf("strict seal with another key: %v", err)
	}
	// Bob's strict reply still carries his certificate.
	sm, err = bob.ps.Seal(KindText, []byte("strict too"), now, bob.key)
	if err != nil || sm.CertKey == nil {
		t.Fatalf("strict reply: %v, cert %x", err, sm.CertKey)
	}
	alice.mustOpen(t, sm.Marshal(), bob, "strict too", now)
	alice.mustOpen(t, bob.seal(t, "plain", now), bob, "plain", now)
}

func TestSessionErrorsLeaveStateUnchanged(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	now := sessT0
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("hi"), now), alice, now)
	a1 := alice.seal(t, "a1", now)
	bob.mustOpen(t, a1, alice, "a1", now)

	// A replay: the key is gone.
	sessUnchanged(t, bob, ErrMessageKeyGone, func() error { _, err := bob.open(a1, alice, now); return err })

	// A session bob does not have.
	m, _ := ParseSessionMessage(alice.seal(t, "a2", now))
	m.Session[0] ^= 1
	sessUnchanged(t, bob, ErrSessionUnknown, func() error { _, err := bob.ps.Open(m, alice.key.Public(), now); return err })
	m.Session[0] ^= 1
	// Not for bob.
	carol := testKey(t, "carol-2048")
	m.Recipient = carol.ID()
	sessUnchanged(t, bob, ErrNotForMe, func() error { _, err := bob.ps.Open(m, alice.key.Public(), now); return err })
	m.Recipient = bob.key.ID()
	// A flipped ciphertext bit is caught by the signature, before the ratchet.
	m.Ciphertext[3] ^= 1
	sessUnchanged(t, bob, ErrAuth, func() error { _, err := bob.ps.Open(m, alice.key.Public(), now); return err })
	m.Ciphertext[3] ^= 1
	bob.mustOpen(t, m.Marshal(), alice, "a2", now)

	// Bob's reply without its certificate: alice cannot check it yet.
	b1, _ := ParseSessionMessage(bob.seal(t, "b1", now))
	noCert := *b1
	noCert.CertKey, noCert.CertSignature = nil, nil
	sessUnchanged(t, alice, ErrSessionKeyMissing, func() error { _, err := alice.ps.Open(&noCert, bob.key.Public(), now); return err })
	// Verifying the certificate needs bob's key.
	sessUnchanged(t, alice, ErrUnknownSender, func() error { _, err := alice.ps.Open(b1, carol.Public(), now); return err })
	alice.mustOpen(t, b1.Marshal(), bob, "b1", now)

	// A session message from a stranger or to a stranger.
	sessUnchanged(t, alice, ErrNotForMe, func() error { _, err := alice.ps.Open(m, alice.key.Public(), now); return err })
	for _, k := range []Kind{0, KindSessionStart, KindSessionReset, KindFriendRemoved} {
		if _, err := alice.ps.Seal(k, nil, now, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Seal of kind %s: %v", k, err)
		}
		if _, _, err := StartSession(testSender(alice.key), testRecipient(bob.key, bob.prekey), SessionID{}, k, []byte("x"), now); !errors.Is(err, ErrMalformed) {
			t.Fatalf("a start with a first message of kind %s: %v", k, err)
		}
		sm, _ := ParseSessionMessage(alice.seal(t, "k", now))
		sm.Kind = k
		if _, err := ParseSessionMessage(sm.Marshal()); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseSessionMessage of kind %s: %v", k, err)
		}
	}
	empty := NewPeerSessions(alice.key.ID(), bob.key.ID())
	if _, err := empty.Seal(KindText, nil, now, nil); !errors.Is(err, ErrSessionUnknown) {
		t.Fatalf("Seal without a session: %v", err)
	}
}

func TestSessionNeedsRekey(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	if !alice.ps.NeedsStart(sessT0) {
		t.Fatal("no session, but no start needed")
	}
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("hi"), sessT0), alice, sessT0)
	for _, s := range []*sessSide{alice, bob} {
		c := s.ps.Current()
		if s.ps.NeedsStart(sessT0) || c.NeedsRekey(sessT0.Add(SessionMaxAge-time.Second)) {
			t.Fatal("a new session needs re-keying")
		}
		if !c.NeedsRekey(sessT0.Add(SessionMaxAge)) || !s.ps.NeedsStart(sessT0.Add(SessionMaxAge)) {
			t.Fatal("a week-old session does not need re-keying")
		}
	}
	c := alice.ps.Current()
	c.messages = SessionMaxMessages - 1
	if c.NeedsRekey(sessT0) {
		t.Fatal("re-key due before SessionMaxMessages")
	}
	alice.seal(t, "last", sessT0)
	if !alice.ps.NeedsStart(sessT0) {
		t.Fatal("no re-key after SessionMaxMessages")
	}
	// Re-keying: a new start replaces the session, and the old one still
	// opens what was sealed before.
	old := alice.seal(t, "old", sessT0)
	later := sessT0.Add(time.Minute)
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("new"), later), alice, later)
	if alice.ps.Current().ID() != bob.ps.Current().ID() || alice.ps.Current().ID() == c.ID() {
		t.Fatal("re-keying did not replace the session on both sides")
	}
	bob.mustOpen(t, old, alice, "old", later)
	bob.mustOpen(t, alice.seal(t, "on new", later), alice, "on new", later)
}

func TestDeliveryCarriesASessionMessage(t *testing.T) {
	sm := bytes.Repeat([]byte{0x5e}, 700)
	stream := append(deliveryFrame(t, &Delivery{Session: sm}), deliveryFrame(t, &Delivery{Envelope: []byte("env")})...)
	r := readerOf(stream)
	d, err := ReadDelivery(r)
	if err != nil || !bytes.Equal(d.Session, sm) || d.Envelope != nil || d.SenderCard != nil {
		t.Fatalf("session frame: %+v, %v", d, err)
	}
	if d, err = ReadDelivery(r); err != nil || d.Session != nil || string(d.Envelope) != "env" {
		t.Fatalf("envelope frame after it: %+v, %v", d, err)
	}
	for name, d := range map[string]*Delivery{
		"session and envelope": {Session: sm, Envelope: []byte("env")},
		"session and card":     {Session: sm, SenderCard: []byte("card")},
		"nothing":              {},
	} {
		if _, err := ReadDelivery(readerOf(deliveryFrame(t, d))); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadDelivery of %s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestAckCodeForSessionErrors(t *testing.T) {
	for err, want := range map[error]AckCode{
		ErrSessionUnknown:    AckStale,
		ErrMessageKeyGone:    AckStale,
		ErrSkipLimit:         AckStale,
		ErrSessionKeyMissing: AckUnavailable,
	} {
		if got := AckCodeFor(fmt.Errorf("open: %w", err)); got != want {
			t.Errorf("AckCodeFor(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestPeerSessionsClone(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("hi"), sessT0), alice, sessT0)
	snapA, snapB := alice.ps.Clone(), bob.ps.Clone()
	beforeA, beforeB := snapA.Marshal(), snapB.Marshal()
	a1 := alice.seal(t, "a1", sessT0)
	bob.mustOpen(t, a1, alice, "a1", sessT0)
	alice.mustOpen(t, bob.seal(t, "b1", sessT0), bob, "b1", sessT0)
	alice.ps.Reset(alice.ps.Current().ID(), sessT0)
	if !bytes.Equal(snapA.Marshal(), beforeA) || !bytes.Equal(snapB.Marshal(), beforeB) {
		t.Fatal("a snapshot changed with its original")
	}
	// Rolling back: the snapshot opens a1 again, as if the transaction
	// that stored its opening had failed.
	bob.ps = snapB
	bob.mustOpen(t, a1, alice, "a1", sessT0)
}

func TestSessionSizeCapsAndExpiredPrekey(t *testing.T) {
	if _, err := ParseSessionMessage(make([]byte, MaxSessionMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ParseSessionMessage over its cap: %v", err)
	}
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	late := bob.prekey.Signed.NotAfter
	if _, err := alice.ps.Start(testSender(alice.key), testRecipient(bob.key, bob.prekey), KindText, nil, late); !errors.Is(err, ErrExpired) {
		t.Fatalf("a start to an expired prekey: %v, want ErrExpired", err)
	}
	if alice.ps.Current() != nil {
		t.Fatal("a failed start left a session")
	}
	carol := testKey(t, "carol-2048")
	if _, err := alice.ps.Start(testSender(alice.key), testRecipient(carol, bob.prekey), KindText, nil, sessT0); !errors.Is(err, ErrNotForMe) {
		t.Fatalf("a start to a user the sessions are not with: %v", err)
	}
}

// TestSealUnsignedThenSign: a strict-mode message sealed without its
// signature and signed afterwards (SealUnsigned, SignIdentity) opens like
// one SealWithID signs at once; unsigned it does not open; SignIdentity
// refuses a message signed already or not in the strict mode; and
// SealUnsigned needs the signer.
func TestSealUnsignedThenSign(t *testing.T) {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	bob.mustAccept(t, alice.start(t, bob, KindText, []byte("hi"), sessT0), alice, sessT0)
	alice.mustOpen(t, bob.seal(t, "b", sessT0), bob, "b", sessT0)

	if _, err := alice.ps.SealUnsigned(KindText, MsgID{}, []byte("x"), sessT0, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SealUnsigned without a signer: %v", err)
	}
	first, err := alice.ps.SealUnsigned(KindText, MsgID{}, []byte("first"), sessT0, alice.key)
	if err != nil {
		t.Fatal(err)
	}
	second, err := alice.ps.SealUnsigned(KindText, MsgID{}, []byte("second"), sessT0, alice.key)
	if err != nil {
		t.Fatal(err)
	}
	if first.SigAlg != SigIdentity || len(first.Signature) != 0 {
		t.Fatalf("unsigned message: alg %v, %d signature bytes", first.SigAlg, len(first.Signature))
	}
	if _, err := bob.open(first.Marshal(), alice, sessT0); err == nil {
		t.Fatal("an unsigned message opened")
	}
	// Signed out of order, as two senders outside the lock might.
	for _, m := range []*SessionMessage{second, first} {
		if err := m.SignIdentity(alice.key); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.SignIdentity(alice.key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("signing twice: %v", err)
	}
	bob.mustOpen(t, first.Marshal(), alice, "first", sessT0)
	bob.mustOpen(t, second.Marshal(), alice, "second", sessT0)
	plain, err := alice.ps.Seal(KindText, []byte("plain"), sessT0, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain.Signature = nil
	if err := plain.SignIdentity(alice.key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("signing a session-key message with the identity key: %v", err)
	}
}
