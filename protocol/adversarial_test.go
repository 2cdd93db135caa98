package protocol

import (
	"bytes"
	"encoding/binary"
	"testing"
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
