package protocol

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Helpers shared by identity_test.go, envelope_test.go, adversarial_test.go,
// prekey_test.go, card_test.go and safety_test.go. They build on the fixture
// helpers of keys_test.go (testKey, testKeyDER, testSender, testRecipient,
// testOpener) and are all prefixed adv so that they cannot collide with
// helpers in the package's other test files.

// advT0 is the fixed "now" of the envelope tests: millisecond precision, so
// that a header timestamp round-trips exactly.
var advT0 = time.Date(2025, time.March, 14, 15, 9, 26, 535_000_000, time.UTC)

// advOpenSentinels are the errors Opener.Open documents. Whatever an attacker
// does to an envelope, Open must fail with (exactly) one of them.
var advOpenSentinels = []error{
	ErrAuth, ErrMalformed, ErrTooLarge, ErrNotForMe, ErrStale, ErrUnknownPrekey, ErrUnknownSender,
}

// advSentinelsIn returns the open sentinels that err matches.
func advSentinelsIn(err error) []error {
	var out []error
	for _, s := range advOpenSentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

// advPrekey generates a prekey of owner valid from an hour before now for
// thirty days.
func advPrekey(tb testing.TB, owner *PrivateKey, now time.Time) *Prekey {
	tb.Helper()
	pk, err := GeneratePrekey(owner, now.Add(-time.Hour), 30*24*time.Hour)
	if err != nil {
		tb.Fatalf("GeneratePrekey: %v", err)
	}
	return pk
}

// advSeal seals body from → to at now (suite 2 when pk is not nil) and fails
// the test on error.
func advSeal(tb testing.TB, from, to *PrivateKey, pk *Prekey, kind Kind, body []byte, now time.Time) *Envelope {
	tb.Helper()
	e, err := Seal(testSender(from), testRecipient(to, pk), kind, body, now)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return e
}

// advOpener is testOpener with a fixed clock.
func advOpener(me *PrivateKey, senders []*PrivateKey, now time.Time, prekeys ...*Prekey) *Opener {
	o := testOpener(me, senders, prekeys...)
	o.Now = func() time.Time { return now }
	return o
}

// advOpenOK opens raw and fails the test on error.
func advOpenOK(tb testing.TB, o *Opener, raw []byte) *Message {
	tb.Helper()
	m, err := o.Open(raw)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	if m == nil {
		tb.Fatalf("Open returned a nil message and no error")
	}
	return m
}

// advOpenFails opens raw and asserts that it fails with want (and with no
// other open sentinel), returning no message.
func advOpenFails(tb testing.TB, o *Opener, raw []byte, want error) {
	tb.Helper()
	m, err := o.Open(raw)
	advCheckErr(tb, "Open", err, want)
	if m != nil {
		tb.Fatalf("Open failed with %v but returned a message", err)
	}
}

// advCheckErr asserts that err wraps want and no other open sentinel.
func advCheckErr(tb testing.TB, what string, err, want error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s succeeded, want %v", what, want)
	}
	if !errors.Is(err, want) {
		tb.Fatalf("%s: got %v, want %v", what, err, want)
	}
	for _, s := range advSentinelsIn(err) {
		if s != want {
			tb.Fatalf("%s: %v wraps %v as well as %v", what, err, s, want)
		}
	}
}

// advMutate parses raw, lets f change the envelope and marshals it again, so
// that the result is canonical protobuf and only f's change is new.
func advMutate(tb testing.TB, raw []byte, f func(e *Envelope)) []byte {
	tb.Helper()
	e, err := ParseEnvelope(raw)
	if err != nil {
		tb.Fatalf("ParseEnvelope: %v", err)
	}
	f(e)
	out := e.Marshal()
	if bytes.Equal(out, raw) {
		tb.Fatalf("mutation changed nothing")
	}
	return out
}

// advResign replaces e's signature with one by k over e's current header and
// ciphertext: what a sender (or someone holding the sender's key) would sign.
func advResign(tb testing.TB, e *Envelope, k *PrivateKey) {
	tb.Helper()
	sig, err := k.Sign(LabelEnvSig, e.signedBytes(e.Canonical()))
	if err != nil {
		tb.Fatalf("re-signing: %v", err)
	}
	e.Signature = sig
}

// advRewrap is what a malicious recipient can do with an envelope sealed to
// it: unwrap the content secret with its own key, re-address the envelope to
// to, and wrap the same secret to to's key under the matching OAEP label. It
// returns the secret.
func advRewrap(tb testing.TB, e *Envelope, me, to *PrivateKey) []byte {
	tb.Helper()
	secret, err := me.decryptOAEP(e.WrappedKey, oaepLabel(&e.Header))
	if err != nil {
		tb.Fatalf("unwrapping as the recipient: %v", err)
	}
	e.Recipient, e.RecipientKey = to.ID(), to.ID()
	if e.WrappedKey, err = to.Public().encryptOAEP(secret, oaepLabel(&e.Header)); err != nil {
		tb.Fatalf("re-wrapping: %v", err)
	}
	return secret
}

// advField is one encoded protobuf field: its number, wire type and the
// whole encoding (tag and value).
type advField struct {
	num protowire.Number
	typ protowire.Type
	raw []byte
}

// advFields splits a protobuf encoding into its top-level fields, in order.
func advFields(tb testing.TB, b []byte) []advField {
	tb.Helper()
	var out []advField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			tb.Fatalf("bad protobuf tag: %v", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			tb.Fatalf("bad protobuf field %d: %v", num, protowire.ParseError(m))
		}
		out = append(out, advField{num: num, typ: typ, raw: b[:n+m]})
		b = b[n+m:]
	}
	return out
}

// advJoin concatenates field encodings.
func advJoin(fields []advField) []byte {
	var out []byte
	for _, f := range fields {
		out = append(out, f.raw...)
	}
	return out
}

// advFieldIndex returns the index of field num in fields, or fails.
func advFieldIndex(tb testing.TB, fields []advField, num protowire.Number) int {
	tb.Helper()
	for i, f := range fields {
		if f.num == num {
			return i
		}
	}
	tb.Fatalf("field %d not present", num)
	return -1
}

// advFlip returns a copy of b with the bits of mask flipped at i.
func advFlip(b []byte, i int, mask byte) []byte {
	out := bytes.Clone(b)
	out[i] ^= mask
	return out
}

// advBody returns n bytes of a fixed, non-zero pattern.
func advBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

// advEnvelopeEqual reports whether two envelopes have the same fields.
func advEnvelopeEqual(a, b *Envelope) bool {
	return a.Version == b.Version && a.Suite == b.Suite && a.Kind == b.Kind && a.MsgID == b.MsgID &&
		a.Timestamp == b.Timestamp && a.Sender == b.Sender && a.SenderKey == b.SenderKey &&
		a.Recipient == b.Recipient && a.RecipientKey == b.RecipientKey &&
		bytes.Equal(a.SenderDevice, b.SenderDevice) && a.PrekeyID == b.PrekeyID &&
		bytes.Equal(a.Ephemeral, b.Ephemeral) && bytes.Equal(a.WrappedKey, b.WrappedKey) &&
		bytes.Equal(a.Nonce, b.Nonce) && bytes.Equal(a.Ciphertext, b.Ciphertext) &&
		bytes.Equal(a.Signature, b.Signature) && bytes.Equal(a.Canonical(), b.Canonical())
}

// advCast is the adversarial tests' cast: alice sends, bob receives, carol
// is a third user.
type advCast struct {
	alice, bob, carol *PrivateKey
	pk, pk2           *Prekey // two of bob's prekeys
	carolPK           *Prekey
}

// advNewCast loads the 2048-bit fixture keys and makes fresh prekeys.
func advNewCast(t *testing.T) *advCast {
	t.Helper()
	c := &advCast{alice: testKey(t, "alice-2048"), bob: testKey(t, "bob-2048"), carol: testKey(t, "carol-2048")}
	c.pk, c.pk2 = advPrekey(t, c.bob, advT0), advPrekey(t, c.bob, advT0)
	c.carolPK = advPrekey(t, c.carol, advT0)
	return c
}

// bobOpener trusts alice and carol and knows both of bob's prekeys.
func (c *advCast) bobOpener() *Opener {
	return advOpener(c.bob, []*PrivateKey{c.alice, c.carol}, advT0, c.pk, c.pk2)
}

// carolOpener trusts alice and bob and knows carol's prekey.
func (c *advCast) carolOpener() *Opener {
	return advOpener(c.carol, []*PrivateKey{c.alice, c.bob}, advT0, c.carolPK)
}

// advMutateResigned is advMutate followed by a fresh signature by k. Unlike
// advMutate it allows no-op mutations (the control case).
func advMutateResigned(t *testing.T, raw []byte, k *PrivateKey, f func(e *Envelope)) []byte {
	t.Helper()
	e, err := ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	f(e)
	advResign(t, e, k)
	return e.Marshal()
}

// advPeerID returns a 38-byte libp2p peer ID (identity multihash of an
// Ed25519 public key) whose key bytes are all b.
func advPeerID(b byte) []byte {
	return append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, bytes.Repeat([]byte{b}, 32)...)
}

// advRelayPeer is a relay's peer ID in text form: 52 characters.
const advRelayPeer = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"

// advAddrs are realistic multiaddrs for a card: TCP, QUIC, IPv6 and a
// circuit-relay address through advRelayPeer.
var advAddrs = []string{
	"/ip4/203.0.113.7/tcp/7734",
	"/ip4/203.0.113.7/udp/7734/quic-v1",
	"/ip6/2001:db8::7/tcp/7734",
	"/ip4/198.51.100.20/udp/4001/quic-v1/p2p/" + advRelayPeer + "/p2p-circuit",
}

// advCardsEqual fails the test unless got and want have the same fields.
func advCardsEqual(t *testing.T, got, want *Card) {
	t.Helper()
	if got.UserID != want.UserID || got.Name != want.Name || !got.Key.Equal(want.Key) ||
		!got.IssuedAt.Equal(want.IssuedAt) || !bytes.Equal(got.Signature, want.Signature) ||
		len(got.Devices) != len(want.Devices) || len(got.Addrs) != len(want.Addrs) ||
		(got.Prekey == nil) != (want.Prekey == nil) {
		t.Fatalf("card changed in a round trip:\n got %+v\nwant %+v", got, want)
	}
	for i := range got.Devices {
		if !bytes.Equal(got.Devices[i], want.Devices[i]) {
			t.Fatalf("device %d changed", i)
		}
	}
	for i := range got.Addrs {
		if got.Addrs[i] != want.Addrs[i] {
			t.Fatalf("address %d changed", i)
		}
	}
	if got.Prekey != nil {
		g, w := got.Prekey, want.Prekey
		if g.ID != w.ID || g.Public != w.Public || !g.NotBefore.Equal(w.NotBefore) || !g.NotAfter.Equal(w.NotAfter) ||
			g.Owner != w.Owner || !bytes.Equal(g.Signature, w.Signature) {
			t.Fatalf("card prekey changed in a round trip")
		}
	}
}

// advLyingSigner signs with k but names pub as its public key: a sender whose
// header names another key than the one that signs.
type advLyingSigner struct {
	pub *PublicKey
	k   *PrivateKey
}

func (s advLyingSigner) Public() *PublicKey { return s.pub }

func (s advLyingSigner) Sign(label string, msg []byte) ([]byte, error) { return s.k.Sign(label, msg) }
