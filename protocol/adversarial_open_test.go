package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol/pb"
)

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
