package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol/pb"
)

// Adversarial tests for envelopes: every change an attacker can make must
// fail with the documented sentinel error, and a failed Open returns no
// message. The cast (advCast): alice sends, bob receives, carol is a third
// user (sometimes a friend of bob's, sometimes the target of a redirection
// by bob).

func TestAdvHeaderTampering(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	s := testSender(c.alice)
	s.Device = []byte("alice-laptop")
	e2, err := Seal(s, testRecipient(c.bob, c.pk), KindText, []byte("meet at noon"), advT0)
	if err != nil {
		t.Fatal(err)
	}
	raw2 := e2.Marshal()
	raw1 := advSeal(t, c.alice, c.bob, nil, KindText, []byte("meet at noon"), advT0).Marshal()
	o := c.bobOpener()
	advOpenOK(t, o, raw2)
	advOpenOK(t, o, raw1)

	flip := func(b []byte) []byte { return advFlip(b, len(b)/2, 0x01) }
	for _, tc := range []struct {
		name string
		raw  []byte // suite 1 or 2 envelope to start from
		f    func(e *Envelope)
		want error
	}{
		{"version", raw2, func(e *Envelope) { e.Version = 2 }, ErrMalformed},
		{"version 0", raw2, func(e *Envelope) { e.Version = 0 }, ErrMalformed},
		{"suite 2→1", raw2, func(e *Envelope) { e.Suite, e.PrekeyID, e.Ephemeral = SuiteRSA, 0, nil }, ErrAuth},
		// The signature is checked before the prekey is looked up, so a
		// fake prekey ID is an authentication failure, not an unknown prekey.
		{"suite 1→2", raw1, func(e *Envelope) {
			e.Suite, e.PrekeyID, e.Ephemeral = SuiteRSAX25519, c.pk.ID(), c.pk.Signed.Public[:]
		}, ErrAuth},
		{"suite 3", raw1, func(e *Envelope) { e.Suite = 3 }, ErrMalformed},
		{"kind", raw2, func(e *Envelope) { e.Kind = KindReceipt }, ErrAuth},
		{"kind 0", raw2, func(e *Envelope) { e.Kind = 0 }, ErrMalformed},
		{"msg_id", raw2, func(e *Envelope) { e.MsgID[0] ^= 1 }, ErrAuth},
		{"timestamp +1 ms", raw2, func(e *Envelope) { e.Timestamp++ }, ErrAuth},
		{"timestamp -1 min", raw2, func(e *Envelope) { e.Timestamp -= 60_000 }, ErrAuth},
		// An unknown sender user: the resolver has no key for it.
		{"sender unknown", raw2, func(e *Envelope) { e.Sender[0] ^= 1 }, ErrUnknownSender},
		// A known sender user (carol): the resolver returns carol's key,
		// whose ID is not the header's sender_key.
		{"sender carol", raw2, func(e *Envelope) { e.Sender = c.carol.ID() }, ErrAuth},
		{"sender and key carol", raw2, func(e *Envelope) { e.Sender, e.SenderKey = c.carol.ID(), c.carol.ID() }, ErrAuth},
		// testOpener resolves by user: it returns alice's key, which does not
		// match the flipped key ID.
		{"sender_key", raw2, func(e *Envelope) { e.SenderKey[0] ^= 1 }, ErrAuth},
		{"recipient", raw2, func(e *Envelope) { e.Recipient[0] ^= 1 }, ErrNotForMe},
		{"recipient_key", raw2, func(e *Envelope) { e.RecipientKey[31] ^= 1 }, ErrNotForMe},
		{"recipient carol", raw2, func(e *Envelope) { e.Recipient, e.RecipientKey = c.carol.ID(), c.carol.ID() }, ErrNotForMe},
		{"sender_device", raw2, func(e *Envelope) { e.SenderDevice = flip(e.SenderDevice) }, ErrAuth},
		{"sender_device removed", raw2, func(e *Envelope) { e.SenderDevice = nil }, ErrAuth},
		{"sender_device added", raw1, func(e *Envelope) { e.SenderDevice = []byte("x") }, ErrAuth},
		{"prekey_id unknown", raw2, func(e *Envelope) { e.PrekeyID ^= 1 }, ErrAuth},
		{"prekey_id known", raw2, func(e *Envelope) { e.PrekeyID = c.pk2.ID() }, ErrAuth},
		{"ephemeral", raw2, func(e *Envelope) { e.Ephemeral = flip(e.Ephemeral) }, ErrAuth},
		{"wrapped_key", raw2, func(e *Envelope) { e.WrappedKey = flip(e.WrappedKey) }, ErrAuth},
		{"wrapped_key suite 1", raw1, func(e *Envelope) { e.WrappedKey = flip(e.WrappedKey) }, ErrAuth},
		{"nonce", raw2, func(e *Envelope) { e.Nonce = flip(e.Nonce) }, ErrAuth},
		{"nonce suite 1", raw1, func(e *Envelope) { e.Nonce = flip(e.Nonce) }, ErrAuth},
		{"ciphertext first", raw2, func(e *Envelope) { e.Ciphertext = advFlip(e.Ciphertext, 0, 1) }, ErrAuth},
		{"ciphertext middle", raw2, func(e *Envelope) { e.Ciphertext = flip(e.Ciphertext) }, ErrAuth},
		{"ciphertext tag", raw1, func(e *Envelope) { e.Ciphertext = advFlip(e.Ciphertext, len(e.Ciphertext)-1, 0x80) }, ErrAuth},
		{"ciphertext one block more", raw2, func(e *Envelope) { e.Ciphertext = append(e.Ciphertext, make([]byte, 256)...) }, ErrAuth},
		{"ciphertext not whole blocks", raw2, func(e *Envelope) { e.Ciphertext = e.Ciphertext[1:] }, ErrMalformed},
		{"signature", raw2, func(e *Envelope) { e.Signature = flip(e.Signature) }, ErrAuth},
		{"signature suite 1", raw1, func(e *Envelope) { e.Signature = advFlip(e.Signature, 0, 0x80) }, ErrAuth},
		{"signature of other size", raw2, func(e *Envelope) { e.Signature = append(e.Signature, make([]byte, 128)...) }, ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			advOpenFails(t, o, advMutate(t, tc.raw, tc.f), tc.want)
		})
	}
}

// With the signature recomputed by the sender (who holds alice's key), the
// layers behind the signature still catch each change: the prekey lookup,
// the OAEP label, the key derivation bound to the header, the nonce check,
// the AEAD tag.
func TestAdvResignedTampering(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw2 := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("meet at noon"), advT0).Marshal()
	raw1 := advSeal(t, c.alice, c.bob, nil, KindText, []byte("meet at noon"), advT0).Marshal()
	o := c.bobOpener()
	for _, tc := range []struct {
		name string
		raw  []byte
		f    func(e *Envelope)
		want error
	}{
		{"nothing changed", raw2, func(e *Envelope) {}, nil},
		{"prekey_id unknown", raw2, func(e *Envelope) { e.PrekeyID ^= 1 }, ErrUnknownPrekey},
		{"prekey_id of another known prekey", raw2, func(e *Envelope) { e.PrekeyID = c.pk2.ID() }, ErrAuth},
		{"ephemeral all zero", raw2, func(e *Envelope) { e.Ephemeral = make([]byte, X25519KeySize) }, ErrAuth},
		{"ephemeral order-2 point (1)", raw2, func(e *Envelope) { e.Ephemeral = append([]byte{1}, make([]byte, 31)...) }, ErrAuth},
		{"ephemeral flipped", raw2, func(e *Envelope) { e.Ephemeral = advFlip(e.Ephemeral, 5, 2) }, ErrAuth},
		{"ephemeral = prekey public", raw2, func(e *Envelope) { e.Ephemeral = bytes.Clone(c.pk.Signed.Public[:]) }, ErrAuth},
		{"suite 2→1", raw2, func(e *Envelope) { e.Suite, e.PrekeyID, e.Ephemeral = SuiteRSA, 0, nil }, ErrAuth},
		{"suite 1→2 unknown prekey", raw1, func(e *Envelope) {
			e.Suite, e.PrekeyID, e.Ephemeral = SuiteRSAX25519, 12345, c.pk.Signed.Public[:]
		}, ErrUnknownPrekey},
		{"suite 1→2 known prekey", raw1, func(e *Envelope) {
			e.Suite, e.PrekeyID, e.Ephemeral = SuiteRSAX25519, c.pk.ID(), c.carolPK.Signed.Public[:]
		}, ErrAuth},
		{"kind", raw2, func(e *Envelope) { e.Kind = KindContactRequest }, ErrAuth},
		{"msg_id", raw1, func(e *Envelope) { e.MsgID[15] ^= 0x40 }, ErrAuth},
		{"timestamp", raw2, func(e *Envelope) { e.Timestamp -= 1 }, ErrAuth},
		{"sender_device", raw2, func(e *Envelope) { e.SenderDevice = []byte("mallory") }, ErrAuth},
		{"wrapped_key", raw1, func(e *Envelope) { e.WrappedKey = advFlip(e.WrappedKey, 3, 1) }, ErrAuth},
		{"wrapped_key zero", raw2, func(e *Envelope) { e.WrappedKey = make([]byte, len(e.WrappedKey)) }, ErrAuth},
		{"nonce", raw2, func(e *Envelope) { e.Nonce = advFlip(e.Nonce, 0, 1) }, ErrAuth},
		{"ciphertext", raw2, func(e *Envelope) { e.Ciphertext = advFlip(e.Ciphertext, 7, 1) }, ErrAuth},
		{"ciphertext tag", raw1, func(e *Envelope) { e.Ciphertext = advFlip(e.Ciphertext, len(e.Ciphertext)-3, 1) }, ErrAuth},
		{"ciphertext truncated a block", raw2, func(e *Envelope) { e.Ciphertext = e.Ciphertext[256:] }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := advMutateResigned(t, tc.raw, c.alice, tc.f)
			if tc.want == nil {
				advOpenOK(t, o, out)
				return
			}
			advOpenFails(t, o, out, tc.want)
		})
	}
}

// Flip one bit at every byte of a small envelope, then every bit of each byte
// at once: Open never succeeds, never panics, and always fails with exactly
// one of its sentinels.
func TestAdvEveryByteFlipped(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	s := testSender(c.alice)
	s.Device = []byte("d")
	e, err := Seal(s, testRecipient(c.bob, c.pk), KindText, []byte("hi"), advT0)
	if err != nil {
		t.Fatal(err)
	}
	raw := e.Marshal()
	o := c.bobOpener()
	advOpenOK(t, o, raw)
	counts := map[error]int{}
	for _, mask := range []func(i int) byte{
		func(i int) byte { return 1 << (i % 8) },
		func(int) byte { return 0xff },
	} {
		for i := range raw {
			bad := advFlip(raw, i, mask(i))
			m, err := o.Open(bad)
			if err == nil || m != nil {
				t.Fatalf("byte %d ^ %#x: Open = %v, %v; want a failure and no message", i, mask(i), m, err)
			}
			got := advSentinelsIn(err)
			if len(got) != 1 {
				t.Fatalf("byte %d ^ %#x: Open error %v matches sentinels %v, want exactly one", i, mask(i), err, got)
			}
			counts[got[0]]++
		}
	}
	t.Logf("%d-byte envelope, errors by kind: %v", len(raw), counts)
	if counts[ErrAuth] == 0 || counts[ErrMalformed] == 0 || counts[ErrNotForMe] == 0 {
		t.Fatalf("expected ErrAuth, ErrMalformed and ErrNotForMe among the failures, got %v", counts)
	}
}

// Bob cannot pass alice's envelope on to carol as if alice had sent it to
// carol.
func TestAdvRedirection(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	for _, p := range []*Prekey{nil, c.pk} {
		suite := SuiteRSA
		if p != nil {
			suite = SuiteRSAX25519
		}
		t.Run(suite.String(), func(t *testing.T) {
			t.Parallel()
			raw := advSeal(t, c.alice, c.bob, p, KindText, []byte("for bob only"), advT0).Marshal()
			advOpenOK(t, c.bobOpener(), raw)
			// Carol is not the recipient.
			advOpenFails(t, c.carolOpener(), raw, ErrNotForMe)

			// Re-addressed: only the recipient fields change. Bob's opener
			// now sees someone else's envelope; carol's sees hers, but
			// alice's signature does not cover it.
			readdressed := advMutate(t, raw, func(e *Envelope) { e.Recipient, e.RecipientKey = c.carol.ID(), c.carol.ID() })
			advOpenFails(t, c.bobOpener(), readdressed, ErrNotForMe)
			advOpenFails(t, c.carolOpener(), readdressed, ErrAuth)

			// Re-wrapped: bob unwraps the secret and wraps it to carol under
			// the label naming her.
			e, err := ParseEnvelope(raw)
			if err != nil {
				t.Fatal(err)
			}
			secret := advRewrap(t, e, c.bob, c.carol)
			if got, err := c.carol.decryptOAEP(e.WrappedKey, oaepLabel(&e.Header)); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("helper did not re-wrap the secret to carol: %v", err)
			}
			advOpenFails(t, c.carolOpener(), e.Marshal(), ErrAuth)

			// Even with a valid signature over the new header (as if the
			// signature did not exist), the content key is bound to the
			// header: carol still cannot open it. In suite 2 carol lacks
			// bob's prekey, which Open says first.
			advResign(t, e, c.alice)
			want := ErrAuth
			if p != nil {
				want = ErrUnknownPrekey
			}
			advOpenFails(t, c.carolOpener(), e.Marshal(), want)
		})
	}
}

// Bob re-seals as himself, with alice's ID still inside the encrypted part
// (what he would get by decrypting and re-encrypting the plaintext): carol
// sees a validly signed envelope from bob whose inner sender is alice.
func TestAdvResignedByRecipient(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	aliceID := c.alice.ID()
	for _, p := range []*Prekey{nil, c.carolPK} {
		e, err := seal(sealInput{
			from: testSender(c.bob), to: testRecipient(c.carol, p),
			kind: KindText, body: []byte("from alice, honest"), now: advT0,
			innerFrom: &aliceID,
		})
		if err != nil {
			t.Fatal(err)
		}
		advOpenFails(t, c.carolOpener(), e.Marshal(), ErrAuth)
	}
}

// A properly signed envelope whose encrypted part names another sender or
// another recipient than the header.
func TestAdvInnerIDsMismatch(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	carolID, aliceID := c.carol.ID(), c.alice.ID()
	for _, tc := range []struct {
		name            string
		innerFrom, inTo *ID
		p               *Prekey
	}{
		{"inner sender suite 1", &carolID, nil, nil},
		{"inner sender suite 2", &carolID, nil, c.pk},
		{"inner recipient suite 1", nil, &carolID, nil},
		{"inner recipient suite 2", nil, &carolID, c.pk},
		{"inner swapped", &carolID, &aliceID, c.pk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := seal(sealInput{
				from: testSender(c.alice), to: testRecipient(c.bob, tc.p),
				kind: KindText, body: []byte("x"), now: advT0,
				innerFrom: tc.innerFrom, innerTo: tc.inTo,
			})
			if err != nil {
				t.Fatal(err)
			}
			advOpenFails(t, c.bobOpener(), e.Marshal(), ErrAuth)
		})
	}
	// Control: the hook with the true IDs opens.
	bobID := c.bob.ID()
	e, err := seal(sealInput{
		from: testSender(c.alice), to: testRecipient(c.bob, c.pk),
		kind: KindText, body: []byte("x"), now: advT0, innerFrom: &aliceID, innerTo: &bobID,
	})
	if err != nil {
		t.Fatal(err)
	}
	advOpenOK(t, c.bobOpener(), e.Marshal())
}

// The encrypted part's other fields: msg_id, timestamp, length, padding. A
// sender that lies there (with a valid signature and tag) is refused.
func TestAdvInnerLayout(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, nil, KindText, []byte("hello"), advT0).Marshal()
	e, err := ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := c.bob.decryptOAEP(e.WrappedKey, oaepLabel(&e.Header))
	if err != nil {
		t.Fatal(err)
	}
	canonical := e.Canonical()
	aead, nonce, err := deriveContentKey(&e.Header, canonical, secret, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := aead.Open(nil, nonce, e.Ciphertext, canonical)
	if err != nil {
		t.Fatalf("the test's derivation does not match Seal's: %v", err)
	}
	want := padPlaintext(c.alice.ID(), c.bob.ID(), e.MsgID, e.Timestamp, []byte("hello"))
	if !bytes.Equal(pt, want) {
		t.Fatalf("plaintext layout differs from padPlaintext")
	}
	for _, tc := range []struct {
		name string
		f    func(pt []byte) []byte
	}{
		{"msg_id", func(pt []byte) []byte { pt[2*IDSize] ^= 1; return pt }},
		{"timestamp", func(pt []byte) []byte { pt[2*IDSize+MsgIDSize+7] ^= 1; return pt }},
		// (A length one longer would just be the encoding of "hello\x00".)
		{"length past the end", func(pt []byte) []byte {
			binary.BigEndian.PutUint32(pt[innerHead-4:], uint32(len(pt)-innerHead+1))
			return pt
		}},
		{"length shorter", func(pt []byte) []byte { pt[innerHead-1]--; return pt }},
		{"length huge", func(pt []byte) []byte { pt[innerHead-4] = 0xff; return pt }},
		{"padding not zero", func(pt []byte) []byte { pt[len(pt)-1] = 1; return pt }},
		{"padding one block too many", func(pt []byte) []byte { return append(pt, make([]byte, padBlock)...) }},
		{"not whole blocks", func(pt []byte) []byte { return pt[:len(pt)-1] }},
		{"shorter than inner head", func(pt []byte) []byte { return pt[:innerHead-1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e2, _ := ParseEnvelope(raw)
			e2.Ciphertext = aead.Seal(nil, nonce, tc.f(bytes.Clone(pt)), canonical)
			advResign(t, e2, c.alice)
			b := e2.Marshal()
			if _, err := ParseEnvelope(b); err != nil {
				// Not whole blocks: ParseEnvelope refuses it first.
				advOpenFails(t, c.bobOpener(), b, ErrMalformed)
				return
			}
			advOpenFails(t, c.bobOpener(), b, ErrAuth)
		})
	}
	// Control: the plaintext is exactly padPlaintext's layout, so one more
	// byte of length is simply the encoding of "hello\x00", which opens.
	e2, _ := ParseEnvelope(raw)
	longer := bytes.Clone(pt)
	longer[innerHead-1]++
	e2.Ciphertext = aead.Seal(nil, nonce, longer, canonical)
	advResign(t, e2, c.alice)
	if m := advOpenOK(t, c.bobOpener(), e2.Marshal()); string(m.Body) != "hello\x00" {
		t.Fatalf("body %q, want %q", m.Body, "hello\x00")
	}
}

func TestAdvTimestampWindow(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("tick"), advT0).Marshal()
	at := func(now time.Time, maxAge, maxSkew time.Duration) *Opener {
		o := c.bobOpener()
		o.Now = func() time.Time { return now }
		o.MaxAge, o.MaxSkew = maxAge, maxSkew
		return o
	}
	const ms = time.Millisecond
	for _, tc := range []struct {
		name            string
		now             time.Time
		maxAge, maxSkew time.Duration
		ok              bool
	}{
		{"send time", advT0, 0, 0, true},
		{"oldest accepted", advT0.Add(DefaultMaxAge), 0, 0, true},
		{"too old", advT0.Add(DefaultMaxAge + ms), 0, 0, false},
		{"much too old", advT0.Add(365 * 24 * time.Hour), 0, 0, false},
		{"furthest future accepted", advT0.Add(-DefaultMaxSkew), 0, 0, true},
		{"too far in the future", advT0.Add(-DefaultMaxSkew - ms), 0, 0, false},
		{"custom age edge", advT0.Add(time.Hour), time.Hour, 0, true},
		{"custom age exceeded", advT0.Add(time.Hour + ms), time.Hour, 0, false},
		{"custom age, default skew edge", advT0.Add(-DefaultMaxSkew), time.Hour, 0, true},
		{"custom skew edge", advT0.Add(-time.Second), 0, time.Second, true},
		{"custom skew exceeded", advT0.Add(-time.Second - ms), 0, time.Second, false},
		{"custom skew, default age edge", advT0.Add(DefaultMaxAge), 0, time.Second, true},
		{"custom skew, default age exceeded", advT0.Add(DefaultMaxAge + ms), 0, time.Second, false},
		{"both custom, inside", advT0.Add(30 * time.Second), time.Minute, time.Minute, true},
		{"both custom, old", advT0.Add(time.Minute + ms), time.Minute, time.Minute, false},
		{"both custom, future", advT0.Add(-time.Minute - ms), time.Minute, time.Minute, false},
		{"wide window", advT0.Add(300 * 24 * time.Hour), 365 * 24 * time.Hour, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := at(tc.now, tc.maxAge, tc.maxSkew)
			if tc.ok {
				advOpenOK(t, o, raw)
			} else {
				advOpenFails(t, o, raw, ErrStale)
			}
		})
	}
	// The window is checked before the signature: a stale envelope with a
	// broken signature is ErrStale, and costs no RSA operation.
	broken := advMutate(t, raw, func(e *Envelope) { e.Signature = advFlip(e.Signature, 0, 1) })
	advOpenFails(t, at(advT0.Add(DefaultMaxAge+ms), 0, 0), broken, ErrStale)
}

// A nil clock means the real time.
func TestAdvOpenerRealClock(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	now := time.Now()
	pk := advPrekey(t, c.bob, now)
	raw := advSeal(t, c.alice, c.bob, pk, KindText, []byte("now"), now).Marshal()
	advOpenOK(t, testOpener(c.bob, []*PrivateKey{c.alice}, pk), raw)
	old := advSeal(t, c.alice, c.bob, nil, KindText, []byte("then"), now.Add(-DefaultMaxAge-time.Minute)).Marshal()
	advOpenFails(t, testOpener(c.bob, []*PrivateKey{c.alice}), old, ErrStale)
}

func TestAdvUnknownPrekey(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("fs"), advT0).Marshal()
	// Bob has deleted (or never had) the prekey.
	advOpenFails(t, advOpener(c.bob, []*PrivateKey{c.alice}, advT0, c.pk2), raw, ErrUnknownPrekey)
	advOpenFails(t, advOpener(c.bob, []*PrivateKey{c.alice}, advT0), raw, ErrUnknownPrekey)
	// Bob keeps no prekeys at all.
	o := advOpener(c.bob, []*PrivateKey{c.alice}, advT0)
	o.Prekey = nil
	advOpenFails(t, o, raw, ErrUnknownPrekey)
	// The resolver answers (nil, nil), or its own error.
	o.Prekey = func(uint64) (*Prekey, error) { return nil, nil }
	advOpenFails(t, o, raw, ErrUnknownPrekey)
	o.Prekey = func(uint64) (*Prekey, error) { return nil, errors.New("store closed") }
	advOpenFails(t, o, raw, ErrUnknownPrekey)
	// An error with a prekey: the error wins.
	o.Prekey = func(uint64) (*Prekey, error) { return c.pk, errors.New("prekey retired") }
	advOpenFails(t, o, raw, ErrUnknownPrekey)
	// The resolver returns a prekey other than the one asked for (a broken
	// store): the agreement differs and the nonce check fails.
	o.Prekey = func(uint64) (*Prekey, error) { return c.pk2, nil }
	advOpenFails(t, o, raw, ErrAuth)
	// Suite 1 envelopes need no prekey resolver.
	o.Prekey = nil
	advOpenOK(t, o, advSeal(t, c.alice, c.bob, nil, KindText, []byte("rsa"), advT0).Marshal())
	// A retired prekey still opens what was sealed to it.
	advOpenOK(t, advOpener(c.bob, []*PrivateKey{c.alice}, advT0, c.pk2, c.pk), raw)
}

func TestAdvDeriveContentKeyZeroSecret(t *testing.T) {
	t.Parallel()
	h := &Header{Version: Version, Suite: SuiteRSAX25519, Kind: KindText, PrekeyID: 1, Ephemeral: advBody(32)}
	canonical := h.Canonical()
	secret, prekeyPub := advBody(32), advBody(32)
	for name, agreed := range map[string][]byte{
		"all zero": make([]byte, X25519KeySize),
		"nil":      nil,
		"short":    advBody(31),
		"long":     advBody(33),
	} {
		if aead, nonce, err := deriveContentKey(h, canonical, secret, agreed, prekeyPub); !errors.Is(err, ErrAuth) || aead != nil || nonce != nil {
			t.Errorf("%s agreement: deriveContentKey = %v, %v, %v; want ErrAuth", name, aead, nonce, err)
		}
	}
	agreed := advBody(32)
	_, n1, err := deriveContentKey(h, canonical, secret, agreed, prekeyPub)
	if err != nil {
		t.Fatal(err)
	}
	_, n2, err := deriveContentKey(h, canonical, secret, agreed, prekeyPub)
	if err != nil || !bytes.Equal(n1, n2) || len(n1) != NonceSize {
		t.Fatalf("derivation is not deterministic: %x %x %v", n1, n2, err)
	}
	// Every input changes the result.
	h2 := *h
	h2.Kind = KindReceipt
	for name, args := range map[string][4][]byte{
		"canonical": {h2.Canonical(), secret, agreed, prekeyPub},
		"secret":    {canonical, advFlip(secret, 0, 1), agreed, prekeyPub},
		"agreed":    {canonical, secret, advFlip(agreed, 0, 1), prekeyPub},
		"prekey":    {canonical, secret, agreed, advFlip(prekeyPub, 0, 1)},
	} {
		_, n, err := deriveContentKey(h, args[0], args[1], args[2], args[3])
		if err != nil || bytes.Equal(n, n1) {
			t.Errorf("changing the %s does not change the derived nonce (%v)", name, err)
		}
	}
	// Suite 1 ignores the agreement; an unknown suite is malformed.
	h1 := &Header{Suite: SuiteRSA}
	if _, _, err := deriveContentKey(h1, canonical, secret, nil, nil); err != nil {
		t.Fatalf("suite 1: %v", err)
	}
	h3 := &Header{Suite: 3}
	if _, _, err := deriveContentKey(h3, canonical, secret, agreed, prekeyPub); !errors.Is(err, ErrMalformed) {
		t.Fatalf("suite 3: %v, want ErrMalformed", err)
	}
}

// Keys outside 2048–8192 bits cannot even be represented as a *PublicKey, so
// no SenderKey resolver can hand one to Open.
func TestAdvSenderKeySizeUnrepresentable(t *testing.T) {
	t.Parallel()
	if p, err := ParsePublicKey(testKeyDER(t, "huge-16384.pub.pem")); !errors.Is(err, ErrKeySize) || p != nil {
		t.Fatalf("ParsePublicKey(16384 bits) = %v, %v; want nil, ErrKeySize", p, err)
	}
	if k, err := ParsePrivateKey(testKeyDER(t, "weak-1024.pem")); !errors.Is(err, ErrKeySize) || k != nil {
		t.Fatalf("ParsePrivateKey(1024 bits) = %v, %v; want nil, ErrKeySize", k, err)
	}
}

func TestAdvSenderResolver(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, nil, KindText, []byte("who am i"), advT0).Marshal()
	errDirectory := errors.New("adv: directory offline")
	for _, tc := range []struct {
		name    string
		resolve func(user, key ID) (*PublicKey, error)
		want    []error
	}{
		{"different key", func(ID, ID) (*PublicKey, error) { return c.carol.Public(), nil }, []error{ErrAuth}},
		{"key of another size", func(ID, ID) (*PublicKey, error) { return testKey(t, "alice-3072").Public(), nil }, []error{ErrAuth}},
		{"unknown", func(ID, ID) (*PublicKey, error) { return nil, ErrUnknownSender }, []error{ErrUnknownSender}},
		{"nil, nil", func(ID, ID) (*PublicKey, error) { return nil, nil }, []error{ErrUnknownSender}},
		{"caller's error", func(ID, ID) (*PublicKey, error) { return nil, errDirectory }, []error{errDirectory}},
		{"both", func(ID, ID) (*PublicKey, error) {
			return nil, fmt.Errorf("%w: %w", ErrUnknownSender, errDirectory)
		}, []error{ErrUnknownSender, errDirectory}},
		// An error with a key: the error wins.
		{"error with key", func(ID, ID) (*PublicKey, error) { return c.alice.Public(), errDirectory }, []error{errDirectory}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := c.bobOpener()
			o.SenderKey = tc.resolve
			m, err := o.Open(raw)
			if err == nil || m != nil {
				t.Fatalf("Open = %v, %v; want an error and no message", m, err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("Open error %v does not wrap %v", err, w)
				}
			}
			if tc.want[0] == errDirectory && len(advSentinelsIn(err)) != 0 {
				t.Fatalf("Open error %v adds a sentinel to the caller's error", err)
			}
		})
	}
	// The resolver is asked for exactly the header's sender and key.
	var gotUser, gotKey ID
	o := c.bobOpener()
	o.SenderKey = func(user, key ID) (*PublicKey, error) {
		gotUser, gotKey = user, key
		return c.alice.Public(), nil
	}
	advOpenOK(t, o, raw)
	if gotUser != c.alice.ID() || gotKey != c.alice.ID() {
		t.Fatalf("resolver asked for %v/%v", gotUser, gotKey)
	}
	// A resolver that looks up by key ID as well as user turns a tampered
	// sender_key into ErrUnknownSender (testOpener, by user only, gives
	// ErrAuth; see TestAdvHeaderTampering).
	o.SenderKey = func(user, key ID) (*PublicKey, error) {
		if user == c.alice.ID() && key == c.alice.ID() {
			return c.alice.Public(), nil
		}
		return nil, ErrUnknownSender
	}
	advOpenFails(t, o, advMutate(t, raw, func(e *Envelope) { e.SenderKey[0] ^= 1 }), ErrUnknownSender)
}

func TestAdvOpenerMisconfigured(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, nil, KindText, []byte("x"), advT0).Marshal()
	for name, o := range map[string]*Opener{
		"no key":      {UserID: c.bob.ID(), SenderKey: c.bobOpener().SenderKey},
		"no resolver": {UserID: c.bob.ID(), Key: c.bob},
	} {
		if m, err := o.Open(raw); err == nil || m != nil {
			t.Errorf("%s: Open = %v, %v; want an error", name, m, err)
		}
	}
	// An opener whose user ID is right but whose key is not the recipient key.
	o := advOpener(c.bob, []*PrivateKey{c.alice}, advT0)
	o.Key = testKey(t, "bob-3072")
	advOpenFails(t, o, raw, ErrNotForMe)
}

func TestAdvSizeCaps(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	o := c.bobOpener()
	advOpenFails(t, o, make([]byte, MaxEnvelopeSize+1), ErrTooLarge)
	advOpenFails(t, o, make([]byte, MaxEnvelopeSize), ErrMalformed)
	// A valid envelope made too large by an unknown field is refused for
	// its size before it is parsed.
	raw := advSeal(t, c.alice, c.bob, nil, KindText, []byte("x"), advT0).Marshal()
	big := protowire.AppendTag(bytes.Clone(raw), 99, protowire.BytesType)
	big = protowire.AppendBytes(big, make([]byte, MaxEnvelopeSize))
	advOpenFails(t, o, big, ErrTooLarge)
	if _, err := ParseEnvelope(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ParseEnvelope(oversized) = %v, want ErrTooLarge", err)
	}
}

func TestAdvTruncated(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("truncate me"), advT0).Marshal()
	o := c.bobOpener()
	var lengths []int
	for n := 0; n < len(raw); {
		lengths = append(lengths, n)
		if n < 64 {
			n++
		} else {
			n += 7
		}
	}
	lengths = append(lengths, len(raw)-1)
	for _, n := range lengths {
		if _, err := ParseEnvelope(raw[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseEnvelope(first %d of %d bytes) = %v, want ErrMalformed", n, len(raw), err)
		}
		advOpenFails(t, o, raw[:n], ErrMalformed)
	}
}

// Only the one canonical protobuf encoding of an envelope is accepted.
func TestAdvNonCanonicalProtobuf(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw1 := advSeal(t, c.alice, c.bob, nil, KindText, []byte("canon"), advT0).Marshal()
	raw2 := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("canon"), advT0).Marshal()
	o := c.bobOpener()
	advOpenOK(t, o, raw1)

	f1 := advFields(t, raw1)
	if f1[0].num != 1 || f1[len(f1)-1].num != 16 {
		t.Fatalf("unexpected field order in a marshalled envelope")
	}
	insertBefore := func(fields []advField, num protowire.Number, extra advField) []byte {
		i := advFieldIndex(t, fields, num)
		out := append(append(append([]advField{}, fields[:i]...), extra), fields[i:]...)
		return advJoin(out)
	}
	field := func(num protowire.Number, typ protowire.Type, value []byte) advField {
		return advField{num: num, typ: typ, raw: append(protowire.AppendTag(nil, num, typ), value...)}
	}
	swap := func(fields []advField, a, b protowire.Number) []byte {
		out := append([]advField{}, fields...)
		i, j := advFieldIndex(t, out, a), advFieldIndex(t, out, b)
		out[i], out[j] = out[j], out[i]
		return advJoin(out)
	}
	kind := f1[advFieldIndex(t, f1, 3)]
	sig := f1[advFieldIndex(t, f1, 16)]
	f2 := advFields(t, raw2)
	for name, b := range map[string][]byte{
		"unknown bytes field appended":  append(bytes.Clone(raw1), field(99, protowire.BytesType, protowire.AppendBytes(nil, []byte("x"))).raw...),
		"unknown varint field appended": append(bytes.Clone(raw1), field(17, protowire.VarintType, protowire.AppendVarint(nil, 1)).raw...),
		"unknown field first":           append(field(20, protowire.VarintType, []byte{0}).raw, raw1...),
		"kind duplicated":               append(bytes.Clone(raw1), kind.raw...),
		"kind duplicated in place":      insertBefore(f1, 3, kind),
		"signature duplicated":          append(bytes.Clone(raw1), sig.raw...),
		"suite and kind swapped":        swap(f1, 2, 3),
		"signature and ciphertext":      swap(f1, 15, 16),
		"prekey_id and ephemeral":       swap(f2, 12, 13),
		"signature moved first":         advJoin(append([]advField{sig}, f1[:len(f1)-1]...)),
		"explicit prekey_id 0":          insertBefore(f1, 14, field(12, protowire.Fixed64Type, protowire.AppendFixed64(nil, 0))),
		"explicit empty ephemeral":      insertBefore(f1, 14, field(13, protowire.BytesType, protowire.AppendBytes(nil, nil))),
		"explicit empty sender_device":  insertBefore(f1, 10, field(9, protowire.BytesType, protowire.AppendBytes(nil, nil))),
		"non-minimal varint version":    append([]byte{0x08, 0x81, 0x00}, raw1[2:]...),
		"kind as fixed32":               insertBefore(append(append([]advField{}, f1[:2]...), f1[3:]...), 4, field(3, protowire.Fixed32Type, protowire.AppendFixed32(nil, 1))),
	} {
		t.Run(name, func(t *testing.T) {
			// The lenient standard parser accepts all but the wrong wire
			// type; only the canonical check refuses them.
			var m pb.Envelope
			lenient := proto.Unmarshal(b, &m) == nil
			if name != "kind as fixed32" && !lenient {
				t.Fatalf("the standard parser refuses the input; the test does not reach the canonical check")
			}
			if _, err := ParseEnvelope(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseEnvelope = %v, want ErrMalformed", err)
			}
			advOpenFails(t, o, b, ErrMalformed)
		})
	}
}

// The protocol leaves replay to the caller: the same envelope opens twice,
// and the store's seen-ID check (keyed on MsgID) is what rejects the second.
func TestAdvReplayIsTheCallersJob(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("once"), advT0).Marshal()
	o := c.bobOpener()
	m1 := advOpenOK(t, o, raw)
	m2 := advOpenOK(t, o, raw)
	if m1.MsgID != m2.MsgID || !bytes.Equal(m1.Body, m2.Body) {
		t.Fatalf("replayed envelope opened differently")
	}
}

// An opened message shares no memory with the raw envelope: the caller may
// reuse its buffer.
func TestAdvMessageDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	s := testSender(c.alice)
	s.Device = []byte("phone")
	e, err := Seal(s, testRecipient(c.bob, c.pk), KindText, []byte("keep me"), advT0)
	if err != nil {
		t.Fatal(err)
	}
	raw := e.Marshal()
	m := advOpenOK(t, c.bobOpener(), raw)
	eph := bytes.Clone(m.Ephemeral)
	for i := range raw {
		raw[i] = 0
	}
	if string(m.Body) != "keep me" || string(m.SenderDevice) != "phone" || !bytes.Equal(m.Ephemeral, eph) {
		t.Fatalf("message changed when the input buffer was cleared")
	}
}

// The header names the key that signed. If alice has two keys (after a
// rotation, say) and the resolver hands back one of them, a header naming
// the other is refused even though the signature verifies with the key
// returned.
func TestAdvSenderKeyMustMatchHeader(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	rotated := testKey(t, "alice-3072") // stands for alice's other key
	// Sealed consistently (the content key is bound to this header), with
	// the header naming the other key and the signature by alice-2048.
	s := Sender{UserID: c.alice.ID(), Key: advLyingSigner{pub: rotated.Public(), k: c.alice}}
	e, err := Seal(s, testRecipient(c.bob, nil), KindText, []byte("which key?"), advT0)
	if err != nil {
		t.Fatal(err)
	}
	if e.SenderKey != rotated.ID() {
		t.Fatalf("header names %v", e.SenderKey)
	}
	o := c.bobOpener() // resolves by user: returns alice-2048's key
	advOpenFails(t, o, e.Marshal(), ErrAuth)
	// Control: a resolver that returns the named key refuses the signature.
	o.SenderKey = func(ID, ID) (*PublicKey, error) { return rotated.Public(), nil }
	advOpenFails(t, o, e.Marshal(), ErrAuth)
}

// Each form rule of ParseEnvelope, on otherwise valid canonical protobuf.
func TestAdvParseEnvelopeFieldRules(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	raw1 := advSeal(t, c.alice, c.bob, nil, KindText, []byte("rules"), advT0).Marshal()
	raw2 := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("rules"), advT0).Marshal()
	o := c.bobOpener()
	mod := func(raw []byte, f func(m *pb.Envelope)) []byte {
		var m pb.Envelope
		if err := proto.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		f(&m)
		return marshal(&m)
	}
	cut := func(b []byte, n int) []byte { return bytes.Clone(b[:len(b)+n]) }
	grow := func(b []byte, n int) []byte { return append(bytes.Clone(b), make([]byte, n)...) }
	for _, tc := range []struct {
		name string
		raw  []byte
		f    func(m *pb.Envelope)
	}{
		{"version 257 (1 mod 256)", raw1, func(m *pb.Envelope) { m.Version = 257 }},
		{"suite 0", raw1, func(m *pb.Envelope) { m.Suite = 0 }},
		{"suite 257 (1 mod 256)", raw1, func(m *pb.Envelope) { m.Suite = 257 }},
		{"suite 258 (2 mod 256)", raw2, func(m *pb.Envelope) { m.Suite = 258 }},
		{"kind 0", raw1, func(m *pb.Envelope) { m.Kind = 0 }},
		{"kind 65536 (0 mod 2^16)", raw1, func(m *pb.Envelope) { m.Kind = 1 << 16 }},
		{"kind 65537 (1 mod 2^16)", raw1, func(m *pb.Envelope) { m.Kind = 1<<16 + 1 }},
		{"msg_id 15 bytes", raw1, func(m *pb.Envelope) { m.MsgId = cut(m.MsgId, -1) }},
		{"msg_id 17 bytes", raw1, func(m *pb.Envelope) { m.MsgId = grow(m.MsgId, 1) }},
		{"msg_id missing", raw1, func(m *pb.Envelope) { m.MsgId = nil }},
		{"sender 31 bytes", raw1, func(m *pb.Envelope) { m.Sender = cut(m.Sender, -1) }},
		{"sender_key 33 bytes", raw1, func(m *pb.Envelope) { m.SenderKey = grow(m.SenderKey, 1) }},
		{"recipient missing", raw1, func(m *pb.Envelope) { m.Recipient = nil }},
		{"recipient_key 31 bytes", raw1, func(m *pb.Envelope) { m.RecipientKey = cut(m.RecipientKey, -1) }},
		{"sender_device too long", raw1, func(m *pb.Envelope) { m.SenderDevice = make([]byte, MaxDeviceSize+1) }},
		{"wrapped_key too short", raw1, func(m *pb.Envelope) { m.WrappedKey = cut(m.WrappedKey, -1) }},
		{"wrapped_key too long", raw1, func(m *pb.Envelope) { m.WrappedKey = make([]byte, MaxRSABits/8+1) }},
		{"signature too short", raw1, func(m *pb.Envelope) { m.Signature = cut(m.Signature, -1) }},
		{"signature too long", raw1, func(m *pb.Envelope) { m.Signature = make([]byte, MaxRSABits/8+1) }},
		{"suite 1 with prekey_id", raw1, func(m *pb.Envelope) { m.PrekeyId = c.pk.ID() }},
		{"suite 1 with ephemeral", raw1, func(m *pb.Envelope) { m.Ephemeral = make([]byte, X25519KeySize) }},
		{"suite 2 without prekey_id", raw2, func(m *pb.Envelope) { m.PrekeyId = 0 }},
		{"suite 2 without ephemeral", raw2, func(m *pb.Envelope) { m.Ephemeral = nil }},
		{"suite 2 ephemeral 31 bytes", raw2, func(m *pb.Envelope) { m.Ephemeral = cut(m.Ephemeral, -1) }},
		{"suite 2 ephemeral 33 bytes", raw2, func(m *pb.Envelope) { m.Ephemeral = grow(m.Ephemeral, 1) }},
		{"nonce 11 bytes", raw1, func(m *pb.Envelope) { m.Nonce = cut(m.Nonce, -1) }},
		{"nonce 13 bytes", raw1, func(m *pb.Envelope) { m.Nonce = grow(m.Nonce, 1) }},
		{"ciphertext empty", raw1, func(m *pb.Envelope) { m.Ciphertext = nil }},
		{"ciphertext tag only", raw1, func(m *pb.Envelope) { m.Ciphertext = make([]byte, gcmTag) }},
		{"ciphertext without tag", raw1, func(m *pb.Envelope) { m.Ciphertext = cut(m.Ciphertext, -gcmTag) }},
		{"ciphertext over the largest padded body", raw1, func(m *pb.Envelope) { m.Ciphertext = make([]byte, maxPadded+padBlock+gcmTag) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mod(tc.raw, tc.f)
			if e, err := ParseEnvelope(b); !errors.Is(err, ErrMalformed) || e != nil {
				t.Fatalf("ParseEnvelope = %v, %v; want nil, ErrMalformed", e, err)
			}
			advOpenFails(t, o, b, ErrMalformed)
		})
	}
	// The extremes that are allowed parse.
	for name, b := range map[string][]byte{
		"largest ciphertext": mod(raw1, func(m *pb.Envelope) { m.Ciphertext = make([]byte, maxPadded+gcmTag) }),
		"largest device":     mod(raw1, func(m *pb.Envelope) { m.SenderDevice = make([]byte, MaxDeviceSize) }),
		"largest kind":       mod(raw1, func(m *pb.Envelope) { m.Kind = 0xffff }),
		"8192-bit fields": mod(raw1, func(m *pb.Envelope) {
			m.WrappedKey, m.Signature = make([]byte, MaxRSABits/8), make([]byte, MaxRSABits/8)
		}),
	} {
		if _, err := ParseEnvelope(b); err != nil {
			t.Errorf("%s: ParseEnvelope = %v, want nil", name, err)
		}
	}
}

// The OAEP label and the key derivation follow doc.go, computed here
// independently of oaepLabel: the wrapped secret is bound to sender,
// recipient and msg_id.
func TestAdvOAEPLabelIsDocumented(t *testing.T) {
	t.Parallel()
	c := advNewCast(t)
	e := advSeal(t, c.alice, c.bob, nil, KindText, []byte("label"), advT0)
	label := func(from, to ID, id MsgID) []byte {
		l := []byte("parley/v1/oaep")
		l = append(l, from[:]...)
		l = append(l, to[:]...)
		return append(l, id[:]...)
	}
	secret, err := c.bob.decryptOAEP(e.WrappedKey, label(c.alice.ID(), c.bob.ID(), e.MsgID))
	if err != nil || len(secret) != 32 {
		t.Fatalf("unwrap under the documented label: %d bytes, %v", len(secret), err)
	}
	otherID := e.MsgID
	otherID[0] ^= 1
	for name, l := range map[string][]byte{
		"other sender":    label(c.carol.ID(), c.bob.ID(), e.MsgID),
		"other recipient": label(c.alice.ID(), c.carol.ID(), e.MsgID),
		"swapped":         label(c.bob.ID(), c.alice.ID(), e.MsgID),
		"other msg_id":    label(c.alice.ID(), c.bob.ID(), otherID),
		"bare label":      []byte(LabelOAEP),
	} {
		if _, err := c.bob.decryptOAEP(e.WrappedKey, l); !errors.Is(err, ErrAuth) {
			t.Errorf("unwrap under the label with %s = %v, want ErrAuth", name, err)
		}
	}
}
