package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, bits := range []int{2048, 3072} {
		alice := testKey(t, fmt.Sprintf("alice-%d", bits))
		bob := testKey(t, fmt.Sprintf("bob-%d", bits))
		pk := advPrekey(t, bob, advT0)
		opener := advOpener(bob, []*PrivateKey{alice}, advT0, pk)
		for _, suite := range []Suite{SuiteRSA, SuiteRSAX25519} {
			// innerHead is 92 bytes, so 164 is the largest body that fits
			// in the first 256-byte block.
			for _, n := range []int{0, 1, 163, 164, 165, 255, 256, MaxBodySize} {
				t.Run(fmt.Sprintf("%d/%s/%d", bits, suite, n), func(t *testing.T) {
					t.Parallel()
					var p *Prekey
					if suite == SuiteRSAX25519 {
						p = pk
					}
					s := testSender(alice)
					s.Device = []byte("device-1")
					body := advBody(n)
					e, err := Seal(s, testRecipient(bob, p), KindText, body, advT0)
					if err != nil {
						t.Fatalf("Seal: %v", err)
					}
					if e.Suite != suite {
						t.Fatalf("suite %v, want %v", e.Suite, suite)
					}
					padded := (innerHead + n + padBlock - 1) / padBlock * padBlock
					if len(e.Ciphertext) != padded+gcmTag || (len(e.Ciphertext)-gcmTag)%256 != 0 {
						t.Fatalf("ciphertext of %d bytes for a %d-byte body, want %d", len(e.Ciphertext), n, padded+gcmTag)
					}
					if n <= 164 && len(e.Ciphertext) != 256+16 {
						t.Fatalf("a %d-byte body does not fit one block: %d", n, len(e.Ciphertext))
					}
					if len(e.WrappedKey) != bits/8 || len(e.Signature) != bits/8 || len(e.Nonce) != NonceSize {
						t.Fatalf("field sizes: wrapped %d, signature %d, nonce %d", len(e.WrappedKey), len(e.Signature), len(e.Nonce))
					}
					raw := e.Marshal()
					if len(raw) > MaxEnvelopeSize {
						t.Fatalf("envelope of %d bytes is over MaxEnvelopeSize", len(raw))
					}
					m := advOpenOK(t, opener, raw)
					if !bytes.Equal(m.Body, body) {
						t.Fatalf("body: got %d bytes, want %d", len(m.Body), len(body))
					}
					if m.Version != Version || m.Suite != suite || m.Kind != KindText || m.MsgID != e.MsgID ||
						m.Timestamp != advT0.UnixMilli() || !m.Time().Equal(advT0) ||
						m.Sender != alice.ID() || m.SenderKey != alice.ID() ||
						m.Recipient != bob.ID() || m.RecipientKey != bob.ID() ||
						string(m.SenderDevice) != "device-1" {
						t.Fatalf("opened header %+v does not match the sealed one", m.Header)
					}
					if suite == SuiteRSAX25519 && (m.PrekeyID != pk.ID() || len(m.Ephemeral) != X25519KeySize) {
						t.Fatalf("suite 2 header: prekey %d, ephemeral %d bytes", m.PrekeyID, len(m.Ephemeral))
					}
					if suite == SuiteRSA && (m.PrekeyID != 0 || len(m.Ephemeral) != 0) {
						t.Fatalf("suite 1 header carries prekey fields")
					}
				})
			}
		}
	}
}

// Sender and recipient keys of different sizes, and the largest envelope
// Parley can make (8192-bit keys on both sides, a full device field, the
// largest body) still fits MaxEnvelopeSize.
func TestSealOpenMixedAndLargestKeys(t *testing.T) {
	t.Parallel()
	big := testKey(t, "big-8192")
	for _, tc := range []struct {
		from, to string
		body     int
	}{
		{"alice-3072", "bob-2048", 100},
		{"big-4096", "alice-2048", 1000},
		{"alice-2048", "big-4096", 1000},
		{"big-8192", "big-8192", MaxBodySize},
	} {
		t.Run(tc.from+"→"+tc.to, func(t *testing.T) {
			t.Parallel()
			from, to := testKey(t, tc.from), testKey(t, tc.to)
			pk := advPrekey(t, to, advT0)
			s := testSender(from)
			s.Device = bytes.Repeat([]byte{0xd}, MaxDeviceSize)
			body := advBody(tc.body)
			e, err := Seal(s, testRecipient(to, pk), KindReceipt, body, advT0)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			raw := e.Marshal()
			if len(raw) > MaxEnvelopeSize {
				t.Fatalf("envelope of %d bytes is over MaxEnvelopeSize %d", len(raw), MaxEnvelopeSize)
			}
			senders := []*PrivateKey{from}
			if from != big {
				senders = append(senders, big)
			}
			m := advOpenOK(t, advOpener(to, senders, advT0, pk), raw)
			if !bytes.Equal(m.Body, body) || m.Kind != KindReceipt {
				t.Fatalf("round trip changed the message")
			}
		})
	}
}

func TestSealBodyTooLarge(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	e, err := Seal(testSender(alice), testRecipient(bob, nil), KindText, make([]byte, MaxBodySize+1), advT0)
	if !errors.Is(err, ErrTooLarge) || e != nil {
		t.Fatalf("Seal(MaxBodySize+1) = %v, %v; want nil, ErrTooLarge", e, err)
	}
}

func TestSealRejectsBadArguments(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	longDevice := testSender(alice)
	longDevice.Device = make([]byte, MaxDeviceSize+1)
	for name, tc := range map[string]struct {
		s    Sender
		r    Recipient
		kind Kind
	}{
		"no sender key":    {Sender{UserID: alice.ID()}, testRecipient(bob, nil), KindText},
		"no recipient key": {testSender(alice), Recipient{UserID: bob.ID()}, KindText},
		"kind 0":           {testSender(alice), testRecipient(bob, nil), 0},
		"device too long":  {longDevice, testRecipient(bob, nil), KindText},
	} {
		if e, err := Seal(tc.s, tc.r, tc.kind, []byte("x"), advT0); !errors.Is(err, ErrMalformed) || e != nil {
			t.Errorf("%s: Seal = %v, %v; want nil, ErrMalformed", name, e, err)
		}
	}
}

func TestSealChecksRecipientPrekey(t *testing.T) {
	t.Parallel()
	alice, bob, carol := testKey(t, "alice-2048"), testKey(t, "bob-2048"), testKey(t, "carol-2048")
	pk, err := GeneratePrekey(bob, advT0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(sp *SignedPrekey, now time.Time) error {
		r := testRecipient(bob, nil)
		r.Prekey = sp
		e, err := Seal(testSender(alice), r, KindText, []byte("x"), now)
		if err != nil && e != nil {
			t.Fatalf("Seal returned an envelope with its error %v", err)
		}
		return err
	}
	if err := seal(&pk.Signed, advT0.Add(time.Hour)); err != nil {
		t.Fatalf("Seal with a valid prekey: %v", err)
	}
	// Expired (at NotAfter) and not yet valid.
	for _, now := range []time.Time{pk.Signed.NotAfter, pk.Signed.NotAfter.Add(time.Hour), advT0.Add(-time.Second)} {
		if err := seal(&pk.Signed, now); !errors.Is(err, ErrExpired) {
			t.Errorf("Seal at %v with prekey valid %v–%v: %v, want ErrExpired", now, pk.Signed.NotBefore, pk.Signed.NotAfter, err)
		}
	}
	// Badly signed: tampered public key, bad signature, signed by someone else.
	tampered := pk.Signed
	tampered.Public[0] ^= 1
	badSig := pk.Signed
	badSig.Signature = advFlip(badSig.Signature, 10, 1)
	carols := advPrekey(t, carol, advT0)
	for name, sp := range map[string]*SignedPrekey{
		"tampered public":  &tampered,
		"bad signature":    &badSig,
		"another's prekey": &carols.Signed,
	} {
		if err := seal(sp, advT0.Add(time.Hour)); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: Seal = %v, want ErrAuth", name, err)
		}
	}
}

// Card.Recipient offers the prekey while it is valid and falls back to suite
// 1 once it has expired, so a sender with an old card can still write.
func TestCardRecipientFallsBackToSuite1(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	pk, err := GeneratePrekey(bob, advT0.Add(-time.Hour), 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	card, err := NewCard(bob, "Bob", nil, nil, &pk.Signed, advT0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		now   time.Time
		suite Suite
	}{
		{advT0, SuiteRSAX25519},
		{pk.Signed.NotAfter.Add(-time.Second), SuiteRSAX25519},
		{pk.Signed.NotAfter, SuiteRSA},
		{pk.Signed.NotAfter.Add(30 * 24 * time.Hour), SuiteRSA},
		{pk.Signed.NotBefore.Add(-time.Second), SuiteRSA},
	} {
		r := card.Recipient(tc.now)
		if r.UserID != bob.ID() || !r.Key.Equal(bob.Public()) {
			t.Fatalf("Recipient names %v, want bob", r.UserID)
		}
		if (r.Prekey != nil) != (tc.suite == SuiteRSAX25519) {
			t.Fatalf("at %v: Recipient prekey %v, want suite %v", tc.now, r.Prekey, tc.suite)
		}
		e, err := Seal(testSender(alice), r, KindText, []byte("hi"), tc.now)
		if err != nil {
			t.Fatalf("at %v: Seal: %v", tc.now, err)
		}
		if e.Suite != tc.suite {
			t.Fatalf("at %v: suite %v, want %v", tc.now, e.Suite, tc.suite)
		}
		m := advOpenOK(t, advOpener(bob, []*PrivateKey{alice}, tc.now, pk), e.Marshal())
		if string(m.Body) != "hi" {
			t.Fatalf("body %q", m.Body)
		}
	}
}

func TestSealIsRandomised(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	pk := advPrekey(t, bob, advT0)
	seen := map[MsgID]bool{}
	var prev *Envelope
	for i := range 4 {
		e := advSeal(t, alice, bob, pk, KindText, []byte("same body"), advT0)
		if seen[e.MsgID] || e.MsgID == (MsgID{}) {
			t.Fatalf("seal %d reused msg_id %v", i, e.MsgID)
		}
		seen[e.MsgID] = true
		if prev != nil && (bytes.Equal(prev.Ciphertext, e.Ciphertext) || bytes.Equal(prev.WrappedKey, e.WrappedKey) ||
			bytes.Equal(prev.Ephemeral, e.Ephemeral) || bytes.Equal(prev.Nonce, e.Nonce)) {
			t.Fatalf("two seals of the same body share ciphertext, wrapped key, ephemeral or nonce")
		}
		prev = e
	}
}

func TestParseMsgID(t *testing.T) {
	t.Parallel()
	e := advSeal(t, testKey(t, "alice-2048"), testKey(t, "bob-2048"), nil, KindText, nil, advT0)
	s := e.MsgID.String()
	if len(s) != 2*MsgIDSize || strings.ToLower(s) != s {
		t.Fatalf("MsgID.String() = %q, want %d lower-case hex digits", s, 2*MsgIDSize)
	}
	for _, in := range []string{s, strings.ToUpper(s)} {
		got, err := ParseMsgID(in)
		if err != nil || got != e.MsgID {
			t.Fatalf("ParseMsgID(%q) = %v, %v; want %v", in, got, err, e.MsgID)
		}
	}
	for _, bad := range []string{"", s[:30], s + "00", s[:31], s[:31] + "g", " " + s[1:], "0x" + s[2:]} {
		if _, err := ParseMsgID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseMsgID(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestEnvelopeMarshalParseRoundTrip(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-3072")
	pk := advPrekey(t, bob, advT0)
	withDevice := testSender(alice)
	withDevice.Device = []byte{0, 0x24, 8, 1, 0x12, 0x20}
	for name, s := range map[string]Sender{"no device": testSender(alice), "device": withDevice} {
		for _, p := range []*Prekey{nil, pk} {
			e, err := Seal(s, testRecipient(bob, p), Kind(0xfffe), advBody(300), advT0)
			if err != nil {
				t.Fatal(err)
			}
			raw := e.Marshal()
			got, err := ParseEnvelope(raw)
			if err != nil {
				t.Fatalf("%s, suite %v: ParseEnvelope: %v", name, e.Suite, err)
			}
			if !advEnvelopeEqual(got, e) {
				t.Fatalf("%s, suite %v: ParseEnvelope(Marshal(e)) differs from e:\n%+v\n%+v", name, e.Suite, got, e)
			}
			if !bytes.Equal(got.Marshal(), raw) {
				t.Fatalf("%s, suite %v: Marshal(ParseEnvelope(raw)) differs from raw", name, e.Suite)
			}
			// An unknown kind opens: the caller decides what to do with it.
			m := advOpenOK(t, advOpener(bob, []*PrivateKey{alice}, advT0, pk), raw)
			if m.Kind != Kind(0xfffe) || m.Kind.String() != "kind(65534)" {
				t.Fatalf("kind %v", m.Kind)
			}
		}
	}
}

// The header encoding is the one doc.go spells out, field by field.
func TestHeaderCanonicalLayout(t *testing.T) {
	t.Parallel()
	h := Header{
		Version: 1, Suite: SuiteRSAX25519, Kind: 0x0102, Timestamp: -2,
		SenderDevice: []byte{0xaa}, PrekeyID: 0x0102030405060708,
		Ephemeral: []byte{0xbb, 0xcc}, WrappedKey: []byte{0xdd},
	}
	for i := range h.MsgID {
		h.MsgID[i] = 0x10
	}
	h.Sender[0], h.SenderKey[0], h.Recipient[0], h.RecipientKey[0] = 1, 2, 3, 4
	var want []byte
	want = append(want, 1, 2, 1, 2)
	want = append(want, bytes.Repeat([]byte{0x10}, 16)...)
	want = append(want, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe)
	for _, first := range []byte{1, 2, 3, 4} {
		want = append(want, 0, 0, 0, 32, first)
		want = append(want, make([]byte, 31)...)
	}
	want = append(want, 0, 0, 0, 1, 0xaa)
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8)
	want = append(want, 0, 0, 0, 2, 0xbb, 0xcc)
	want = append(want, 0, 0, 0, 1, 0xdd)
	if got := h.Canonical(); !bytes.Equal(got, want) {
		t.Fatalf("Canonical:\n got % x\nwant % x", got, want)
	}
}

func TestSuiteAndKindNames(t *testing.T) {
	t.Parallel()
	for v, want := range map[fmt.Stringer]string{
		SuiteRSA: "rsa", SuiteRSAX25519: "rsa-x25519", Suite(9): "suite(9)",
		KindText: "text", KindReceipt: "receipt", KindContactRequest: "contact-request",
		KindContactAccept: "contact-accept", KindDelivered: "delivered", Kind(77): "kind(77)",
	} {
		if got := v.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}
