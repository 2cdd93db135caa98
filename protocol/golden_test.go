package protocol

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Golden vectors: envelopes, prekeys, contact cards and safety numbers made
// once with the fixture keys of testdata/keys and kept in testdata/golden.
// Today's code must still open and parse what yesterday's code wrote; a
// change that breaks them is a wire-format change and needs a new version.
//
// RSA-OAEP, RSA-PSS, message IDs and X25519 ephemerals are random, so the
// envelopes are stored as bytes next to a JSON manifest saying what opening
// them must give. Regenerate everything (only on purpose) with
//
//	go test ./protocol/ -run '^TestGolden' -update
var goldenUpdate = flag.Bool("update", false, "regenerate the golden files in testdata/golden")

const goldenDir = "testdata/golden"

// goldenNow is when every golden object was made, and the clock at which
// the envelopes are opened. The milliseconds are deliberate: timestamps are
// unix milliseconds, prekeys and cards round to seconds.
var goldenNow = time.Date(2025, 6, 1, 12, 0, 0, 123_000_000, time.UTC)

// goldenPrekeyOwners are the fixture keys with a golden prekey: bob's feed
// the suite-2 envelopes, alice-3072's goes into her card.
var goldenPrekeyOwners = []string{"bob-2048", "bob-3072", "alice-3072"}

// goldenEnvelopeNames lists the vectors that must exist, so that a lost
// file fails the test instead of shrinking it.
var goldenEnvelopeNames = func() []string {
	var names []string
	for _, s := range []int{1, 2} {
		for _, bits := range []int{2048, 3072} {
			for _, c := range []string{"text-empty", "text-multiblock", "contact-request"} {
				names = append(names, fmt.Sprintf("s%d-%d-%s", s, bits, c))
			}
		}
	}
	return names
}()

// goldenEnvelope is the manifest of one golden envelope.
type goldenEnvelope struct {
	Name               string `json:"name"`
	Envelope           string `json:"envelope"` // file in testdata/golden/envelopes
	Sender             string `json:"sender"`   // fixture key name
	SenderID           string `json:"sender_id"`
	SenderDeviceHex    string `json:"sender_device_hex"`
	Recipient          string `json:"recipient"` // fixture key name
	RecipientID        string `json:"recipient_id"`
	Prekey             string `json:"prekey,omitempty"` // file in testdata/golden/prekeys (Prekey.Marshal)
	PrekeyID           uint64 `json:"prekey_id,omitempty"`
	Suite              uint8  `json:"suite"`
	Kind               uint16 `json:"kind"`
	MsgID              string `json:"msg_id"`
	TimestampMS        int64  `json:"timestamp_ms"`
	Now                string `json:"now"` // RFC 3339: the clock at which to open
	BodyHex            string `json:"body_hex"`
	CanonicalHeaderHex string `json:"canonical_header_hex"`
}

// goldenPrekey is the manifest of one golden prekey.
type goldenPrekey struct {
	Owner        string `json:"owner"`         // fixture key name
	Prekey       string `json:"prekey"`        // Prekey.Marshal (with the private half)
	SignedPrekey string `json:"signed_prekey"` // SignedPrekey.Marshal
	ID           uint64 `json:"id"`
	PublicHex    string `json:"public_hex"`
	NotBefore    int64  `json:"not_before"`
	NotAfter     int64  `json:"not_after"`
	VerifyAt     string `json:"verify_at"` // RFC 3339, inside the validity window
}

// goldenCard is the manifest of one golden contact card.
type goldenCard struct {
	Name       string   `json:"name"`
	URI        string   `json:"uri"` // file in testdata/golden/cards holding the link
	Owner      string   `json:"owner"`
	UserID     string   `json:"user_id"`
	CardName   string   `json:"card_name"`
	DevicesHex []string `json:"devices_hex"`
	Addrs      []string `json:"addrs"`
	PrekeyID   uint64   `json:"prekey_id,omitempty"`
	IssuedAt   int64    `json:"issued_at"`
}

// goldenSafety is one expected safety number.
type goldenSafety struct {
	A      string `json:"a"`
	B      string `json:"b"`
	Number string `json:"number"`
}

var (
	goldenGenOnce sync.Once
	goldenGenErr  error
)

// goldenSetup regenerates the golden files once per run when -update is set.
func goldenSetup(t *testing.T) {
	t.Helper()
	if !*goldenUpdate {
		return
	}
	goldenGenOnce.Do(func() { goldenGenErr = goldenGenerate(t) })
	if goldenGenErr != nil {
		t.Fatalf("regenerating golden files: %v", goldenGenErr)
	}
}

func goldenPath(parts ...string) string {
	return filepath.Join(append([]string{goldenDir}, parts...)...)
}

func goldenRead(tb testing.TB, parts ...string) []byte {
	tb.Helper()
	b, err := os.ReadFile(goldenPath(parts...))
	if err != nil {
		tb.Fatalf("reading golden file (regenerate with -update): %v", err)
	}
	return b
}

func goldenReadJSON(tb testing.TB, v any, parts ...string) {
	tb.Helper()
	if err := json.Unmarshal(goldenRead(tb, parts...), v); err != nil {
		tb.Fatalf("decoding %s: %v", goldenPath(parts...), err)
	}
}

func goldenUnhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex in golden manifest: %v", err)
	}
	return b
}

// goldenDevice is a fixed, peer-ID-shaped device: the identity multihash of
// an Ed25519 public key (0x00 0x24 0x08 0x01 0x12 0x20 ‖ 32 bytes).
func goldenDevice(seed byte) []byte {
	d := []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}
	for i := range 32 {
		d = append(d, seed+byte(i))
	}
	return d
}

// goldenMultiblockBody is a deterministic body that spans several 256-byte
// plaintext blocks (116 + 700 bytes → 1024).
func goldenMultiblockBody() []byte {
	const line = "Parley golden vector: the quick brown fox jumps over the lazy dog. "
	return []byte(strings.Repeat(line, 11)[:700])
}

func goldenCardArgs() (name string, devices [][]byte, addrs []string) {
	return "Alice Liddell", [][]byte{goldenDevice(0x10), goldenDevice(0x40)},
		[]string{"/ip4/203.0.113.7/tcp/4001", "/ip6/2001:db8::7/udp/4001/quic-v1", "/dns4/relay.example.org/tcp/443/wss"}
}

// goldenGenerate writes every golden file. It runs only with -update.
func goldenGenerate(t *testing.T) error {
	for _, d := range []string{"envelopes", "prekeys", "cards"} {
		if err := os.RemoveAll(goldenPath(d)); err != nil {
			return err
		}
		if err := os.MkdirAll(goldenPath(d), 0o755); err != nil {
			return err
		}
	}
	write := func(b []byte, parts ...string) error { return os.WriteFile(goldenPath(parts...), b, 0o644) }
	writeJSON := func(v any, parts ...string) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		return write(append(b, '\n'), parts...)
	}

	// Prekeys.
	prekeys := map[string]*Prekey{}
	var pkManifest []goldenPrekey
	for _, owner := range goldenPrekeyOwners {
		pk, err := GeneratePrekey(testKey(t, owner), goldenNow.Add(-24*time.Hour), 30*24*time.Hour)
		if err != nil {
			return err
		}
		prekeys[owner] = pk
		m := goldenPrekey{
			Owner: owner, Prekey: owner + ".prekey.bin", SignedPrekey: owner + ".signed-prekey.bin",
			ID: pk.ID(), PublicHex: hex.EncodeToString(pk.Signed.Public[:]),
			NotBefore: pk.Signed.NotBefore.Unix(), NotAfter: pk.Signed.NotAfter.Unix(),
			VerifyAt: goldenNow.Format(time.RFC3339Nano),
		}
		if err := write(pk.Marshal(), "prekeys", m.Prekey); err != nil {
			return err
		}
		if err := write(pk.Signed.Marshal(), "prekeys", m.SignedPrekey); err != nil {
			return err
		}
		pkManifest = append(pkManifest, m)
	}
	if err := writeJSON(pkManifest, "prekeys", "prekeys.json"); err != nil {
		return err
	}

	// Contact cards of alice-3072, with and without her prekey.
	var cards []goldenCard
	for _, withPrekey := range []bool{false, true} {
		alice := testKey(t, "alice-3072")
		name, devices, addrs := goldenCardArgs()
		var sp *SignedPrekey
		file := "alice-3072"
		if withPrekey {
			sp = &prekeys["alice-3072"].Signed
			file += "-prekey"
		}
		c, err := NewCard(alice, name, devices, addrs, sp, goldenNow)
		if err != nil {
			return err
		}
		m := goldenCard{
			Name: file, URI: file + ".uri", Owner: "alice-3072", UserID: alice.ID().String(),
			CardName: name, Addrs: addrs, IssuedAt: c.IssuedAt.Unix(),
		}
		for _, d := range devices {
			m.DevicesHex = append(m.DevicesHex, hex.EncodeToString(d))
		}
		if sp != nil {
			m.PrekeyID = sp.ID
		}
		if err := write([]byte(c.URI()+"\n"), "cards", m.URI); err != nil {
			return err
		}
		cards = append(cards, m)
	}
	if err := writeJSON(cards, "cards", "cards.json"); err != nil {
		return err
	}

	// Envelopes alice → bob.
	for _, name := range goldenEnvelopeNames {
		var suite, bits int
		var what string
		if _, err := fmt.Sscanf(strings.Replace(name, "-", " ", 2), "s%d %d %s", &suite, &bits, &what); err != nil {
			return fmt.Errorf("vector name %q: %v", name, err)
		}
		senderName, recipientName := fmt.Sprintf("alice-%d", bits), fmt.Sprintf("bob-%d", bits)
		alice, bob := testKey(t, senderName), testKey(t, recipientName)
		s := testSender(alice)
		var pk *Prekey
		if suite == 2 {
			pk = prekeys[recipientName]
		}
		r := testRecipient(bob, pk)
		var kind Kind
		var body []byte
		switch what {
		case "text-empty":
			kind, body = KindText, []byte{}
		case "text-multiblock":
			kind, body = KindText, goldenMultiblockBody()
			s.Device = goldenDevice(0xa0)
		case "contact-request":
			n, devices, addrs := goldenCardArgs()
			c, err := NewCard(alice, n, devices, addrs, nil, goldenNow)
			if err != nil {
				return err
			}
			kind, body = KindContactRequest, c.Marshal()
			s.Device = devices[0]
		default:
			return fmt.Errorf("vector name %q", name)
		}
		e, err := Seal(s, r, kind, body, goldenNow)
		if err != nil {
			return fmt.Errorf("sealing %s: %v", name, err)
		}
		m := goldenEnvelope{
			Name: name, Envelope: name + ".bin",
			Sender: senderName, SenderID: alice.ID().String(), SenderDeviceHex: hex.EncodeToString(s.Device),
			Recipient: recipientName, RecipientID: bob.ID().String(),
			Suite: uint8(e.Suite), Kind: uint16(e.Kind), MsgID: e.MsgID.String(), TimestampMS: e.Timestamp,
			Now: goldenNow.Format(time.RFC3339Nano), BodyHex: hex.EncodeToString(body),
			CanonicalHeaderHex: hex.EncodeToString(e.Canonical()),
		}
		if pk != nil {
			m.Prekey, m.PrekeyID = recipientName+".prekey.bin", pk.ID()
		}
		if err := write(e.Marshal(), "envelopes", m.Envelope); err != nil {
			return err
		}
		if err := writeJSON(m, "envelopes", name+".json"); err != nil {
			return err
		}
	}

	// Safety numbers.
	var safety []goldenSafety
	for _, p := range [][2]string{{"alice-2048", "bob-2048"}, {"alice-3072", "bob-3072"}} {
		a, b := testKey(t, p[0]), testKey(t, p[1])
		safety = append(safety, goldenSafety{A: p[0], B: p[1], Number: SafetyNumber(a.ID(), a.Public(), b.ID(), b.Public())})
	}
	return writeJSON(safety, "safety.json")
}

// goldenLoadPrekey reads a golden prekey (with its private half).
func goldenLoadPrekey(tb testing.TB, file string) *Prekey {
	tb.Helper()
	pk, err := ParsePrekey(goldenRead(tb, "prekeys", file))
	if err != nil {
		tb.Fatalf("parsing golden prekey %s: %v", file, err)
	}
	return pk
}

// goldenEnvelopeBytes returns every golden envelope, by vector name.
func goldenEnvelopeBytes(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for _, name := range goldenEnvelopeNames {
		out[name] = goldenRead(tb, "envelopes", name+".bin")
	}
	return out
}

func TestGoldenEnvelopes(t *testing.T) {
	goldenSetup(t)
	files, err := filepath.Glob(goldenPath("envelopes", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range files {
		found = append(found, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	for _, want := range goldenEnvelopeNames {
		if !slices.Contains(found, want) {
			t.Errorf("golden vector %s is missing", want)
		}
	}
	for _, name := range found {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var m goldenEnvelope
			goldenReadJSON(t, &m, "envelopes", name+".json")
			goldenCheckEnvelope(t, &m)
		})
	}
}

func goldenCheckEnvelope(t *testing.T, m *goldenEnvelope) {
	raw := goldenRead(t, "envelopes", m.Envelope)
	alice, bob := testKey(t, m.Sender), testKey(t, m.Recipient)
	if got := alice.ID().String(); got != m.SenderID {
		t.Fatalf("fixture %s has ID %s, manifest says %s", m.Sender, got, m.SenderID)
	}
	if got := bob.ID().String(); got != m.RecipientID {
		t.Fatalf("fixture %s has ID %s, manifest says %s", m.Recipient, got, m.RecipientID)
	}
	now, err := time.Parse(time.RFC3339Nano, m.Now)
	if err != nil {
		t.Fatal(err)
	}
	var prekeys []*Prekey
	if m.Prekey != "" {
		prekeys = append(prekeys, goldenLoadPrekey(t, m.Prekey))
	}
	body, device := goldenUnhex(t, m.BodyHex), goldenUnhex(t, m.SenderDeviceHex)
	msgID, err := ParseMsgID(m.MsgID)
	if err != nil {
		t.Fatal(err)
	}

	// The package opens it.
	o := testOpener(bob, []*PrivateKey{alice}, prekeys...)
	o.Now = func() time.Time { return now }
	msg, err := o.Open(raw)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(msg.Body, body) {
		t.Errorf("body = %x, want %x", msg.Body, body)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"version", msg.Version, uint8(Version)},
		{"suite", msg.Suite, Suite(m.Suite)},
		{"kind", msg.Kind, Kind(m.Kind)},
		{"msg_id", msg.MsgID, msgID},
		{"timestamp", msg.Timestamp, m.TimestampMS},
		{"sender", msg.Sender, alice.ID()},
		{"sender key", msg.SenderKey, alice.ID()},
		{"recipient", msg.Recipient, bob.ID()},
		{"recipient key", msg.RecipientKey, bob.ID()},
		{"prekey ID", msg.PrekeyID, m.PrekeyID},
		{"sender device", hex.EncodeToString(msg.SenderDevice), m.SenderDeviceHex},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if !msg.Time().Equal(now.Truncate(time.Millisecond)) {
		t.Errorf("time = %v, want the sealing time %v", msg.Time(), now)
	}
	if !bytes.Equal(device, msg.SenderDevice) {
		t.Errorf("sender device = %x, want %x", msg.SenderDevice, device)
	}
	if msg.Kind == KindContactRequest {
		c, err := ParseCard(msg.Body)
		if err != nil {
			t.Errorf("contact-request body is not a card: %v", err)
		} else if c.UserID != alice.ID() {
			t.Errorf("contact-request card is %s's, want the sender's", c.UserID)
		}
	}

	// Canonical wire form and canonical header.
	e, err := ParseEnvelope(raw)
	if err != nil {
		t.Fatalf("ParseEnvelope: %v", err)
	}
	if !bytes.Equal(e.Marshal(), raw) {
		t.Error("ParseEnvelope(b).Marshal() != b")
	}
	canonical := e.Canonical()
	if got := hex.EncodeToString(canonical); got != m.CanonicalHeaderHex {
		t.Errorf("canonical header drifted:\n got %s\nwant %s", got, m.CanonicalHeaderHex)
	}
	if spec := goldenSpecCanonical(&e.Header); !bytes.Equal(spec, canonical) {
		t.Errorf("Header.Canonical disagrees with the documented layout:\n got %x\nwant %x", canonical, spec)
	}

	// An independent opener written from doc.go, with crypto/* only.
	var pkPriv []byte
	var pkPub []byte
	if len(prekeys) > 0 {
		pkPriv, pkPub = prekeys[0].priv.Bytes(), prekeys[0].Signed.Public[:]
	}
	specBody, err := goldenSpecOpen(e, alice.k, bob.k, pkPriv, pkPub)
	if err != nil {
		t.Fatalf("opening by the documented construction: %v", err)
	}
	if !bytes.Equal(specBody, body) {
		t.Errorf("documented construction gives body %x, want %x", specBody, body)
	}

	// Outside the window, the same bytes are stale: the manifest's clock matters.
	o.Now = func() time.Time { return now.Add(DefaultMaxAge + time.Hour) }
	if _, err := o.Open(raw); !errors.Is(err, ErrStale) {
		t.Errorf("Open 14 days later: %v, want ErrStale", err)
	}
}

// goldenSpecCanonical encodes a header exactly as doc.go describes it,
// without the package's canon helper.
func goldenSpecCanonical(h *Header) []byte {
	var b []byte
	field := func(v []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		return append(b, v...)
	}
	b = append(b, h.Version, byte(h.Suite))
	b = binary.BigEndian.AppendUint16(b, uint16(h.Kind))
	b = append(b, h.MsgID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Timestamp))
	b = field(h.Sender[:])
	b = field(h.SenderKey[:])
	b = field(h.Recipient[:])
	b = field(h.RecipientKey[:])
	b = field(h.SenderDevice)
	b = binary.BigEndian.AppendUint64(b, h.PrekeyID)
	b = field(h.Ephemeral)
	b = field(h.WrappedKey)
	return b
}

// goldenSpecOpen opens e following doc.go step by step, with the standard
// library only: verify the PSS signature, unwrap with OAEP, derive with HKDF,
// decrypt with AES-GCM, and check the inner layout.
func goldenSpecOpen(e *Envelope, sender *rsa.PrivateKey, recipient *rsa.PrivateKey, prekeyPriv, prekeyPub []byte) ([]byte, error) {
	canonical := goldenSpecCanonical(&e.Header)
	ctHash := sha256.Sum256(e.Ciphertext)
	sigDigest := sha256.Sum256(slices.Concat([]byte("parley/v1/env-sig"), canonical, ctHash[:]))
	if err := rsa.VerifyPSS(&sender.PublicKey, crypto.SHA256, sigDigest[:], e.Signature, &rsa.PSSOptions{SaltLength: 32}); err != nil {
		return nil, fmt.Errorf("signature: %v", err)
	}
	label := slices.Concat([]byte("parley/v1/oaep"), e.Sender[:], e.Recipient[:], e.MsgID[:])
	s, err := rsa.DecryptOAEP(sha256.New(), nil, recipient, e.WrappedKey, label)
	if err != nil {
		return nil, fmt.Errorf("unwrap: %v", err)
	}
	if len(s) != 32 {
		return nil, fmt.Errorf("secret of %d bytes", len(s))
	}
	var ikm, salt []byte
	switch e.Suite {
	case 1:
		ikm, salt = s, e.MsgID[:]
	case 2:
		agreed, err := goldenX25519(prekeyPriv, e.Ephemeral)
		if err != nil {
			return nil, err
		}
		ikm, salt = slices.Concat(agreed, s), slices.Concat(e.Ephemeral, prekeyPub)
	default:
		return nil, fmt.Errorf("suite %d", e.Suite)
	}
	hh := sha256.Sum256(canonical)
	okm, err := hkdf.Key(sha256.New, ikm, salt, "parley/v1/env-key"+string(hh[:]), 44)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(okm[32:], e.Nonce) {
		return nil, errors.New("carried nonce is not the derived one")
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	pt, err := gcm.Open(nil, okm[32:], e.Ciphertext, canonical)
	if err != nil {
		return nil, fmt.Errorf("AES-GCM: %v", err)
	}
	if len(pt)%256 != 0 {
		return nil, fmt.Errorf("plaintext of %d bytes is not padded to 256", len(pt))
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(e.Timestamp))
	head := slices.Concat(e.Sender[:], e.Recipient[:], e.MsgID[:], ts[:])
	if !bytes.HasPrefix(pt, head) {
		return nil, errors.New("inner sender ‖ recipient ‖ msg_id ‖ timestamp differ from the header")
	}
	n := int(binary.BigEndian.Uint32(pt[len(head):]))
	rest := pt[len(head)+4:]
	if n > len(rest) || len(rest)-n >= 256 || strings.Trim(string(rest[n:]), "\x00") != "" {
		return nil, fmt.Errorf("bad padding for a %d-byte body in %d bytes", n, len(pt))
	}
	return rest[:n], nil
}

// goldenX25519 computes X25519(priv, pub) through crypto/ecdh.
func goldenX25519(priv, pub []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return k.ECDH(p)
}

// TestGoldenCanonicalHeaderSpec checks Header.Canonical against bytes written
// out by hand from the layout in doc.go, not produced by any code:
//
//	u8 version ‖ u8 suite ‖ u16 kind ‖ msg_id ‖ i64 timestamp_ms ‖
//	bytes(sender) ‖ bytes(sender_key) ‖ bytes(recipient) ‖ bytes(recipient_key) ‖
//	bytes(sender_device) ‖ u64 prekey_id ‖ bytes(ephemeral) ‖ bytes(wrapped_key)
func TestGoldenCanonicalHeaderSpec(t *testing.T) {
	rep := func(b string, n int) string { return strings.Repeat(b, n) }
	fill := func(b byte) (id ID) {
		for i := range id {
			id[i] = b
		}
		return id
	}
	cases := []struct {
		name string
		h    Header
		want string
	}{{
		name: "suite 2, every field set",
		h: Header{
			Version:      1,
			Suite:        SuiteRSAX25519,
			Kind:         KindContactRequest,
			MsgID:        MsgID{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f},
			Timestamp:    0x0000019012345678,
			Sender:       fill(0x11),
			SenderKey:    fill(0x22),
			Recipient:    fill(0x33),
			RecipientKey: fill(0x44),
			SenderDevice: []byte("dev"),
			PrekeyID:     0x0a0b0c0d0e0f1011,
			Ephemeral:    bytes.Repeat([]byte{0x55}, 32),
			WrappedKey:   []byte{0xde, 0xad, 0xbe, 0xef, 0x01},
		},
		want: "01" + // u8 version
			"02" + // u8 suite
			"0003" + // u16 kind
			"000102030405060708090a0b0c0d0e0f" + // msg_id, raw 16 bytes
			"0000019012345678" + // i64 timestamp_ms
			"00000020" + rep("11", 32) + // bytes(sender)
			"00000020" + rep("22", 32) + // bytes(sender_key)
			"00000020" + rep("33", 32) + // bytes(recipient)
			"00000020" + rep("44", 32) + // bytes(recipient_key)
			"00000003" + "646576" + // bytes(sender_device) = "dev"
			"0a0b0c0d0e0f1011" + // u64 prekey_id
			"00000020" + rep("55", 32) + // bytes(ephemeral)
			"00000005" + "deadbeef01", // bytes(wrapped_key)
	}, {
		name: "suite 1, empty fields, negative timestamp, large kind",
		h: Header{
			Version:      1,
			Suite:        SuiteRSA,
			Kind:         0xfedc,
			MsgID:        MsgID{0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00},
			Timestamp:    -2,
			Sender:       fill(0xa1),
			SenderKey:    fill(0xb2),
			Recipient:    fill(0xc3),
			RecipientKey: fill(0xd4),
		},
		want: "01" + "01" + "fedc" +
			"ffeeddccbbaa99887766554433221100" +
			"fffffffffffffffe" + // i64 -2, two's complement
			"00000020" + rep("a1", 32) +
			"00000020" + rep("b2", 32) +
			"00000020" + rep("c3", 32) +
			"00000020" + rep("d4", 32) +
			"00000000" + // empty sender_device
			"0000000000000000" + // prekey_id 0
			"00000000" + // empty ephemeral
			"00000000", // empty wrapped_key
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := hex.EncodeToString(c.h.Canonical()); got != c.want {
				t.Errorf("Canonical:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestGoldenSignedPrekeys(t *testing.T) {
	goldenSetup(t)
	var manifest []goldenPrekey
	goldenReadJSON(t, &manifest, "prekeys", "prekeys.json")
	var owners []string
	for _, m := range manifest {
		owners = append(owners, m.Owner)
	}
	for _, want := range goldenPrekeyOwners {
		if !slices.Contains(owners, want) {
			t.Errorf("golden prekey of %s is missing", want)
		}
	}
	for _, m := range manifest {
		t.Run(m.Owner, func(t *testing.T) {
			owner := testKey(t, m.Owner)
			raw := goldenRead(t, "prekeys", m.SignedPrekey)
			sp, err := ParseSignedPrekey(raw)
			if err != nil {
				t.Fatalf("ParseSignedPrekey: %v", err)
			}
			if !bytes.Equal(sp.Marshal(), raw) {
				t.Error("ParseSignedPrekey(b).Marshal() != b")
			}
			if sp.ID != m.ID || hex.EncodeToString(sp.Public[:]) != m.PublicHex ||
				sp.NotBefore.Unix() != m.NotBefore || sp.NotAfter.Unix() != m.NotAfter || sp.Owner != owner.ID() {
				t.Errorf("signed prekey = {id %d, public %x, %d..%d, owner %s}, manifest %+v",
					sp.ID, sp.Public, sp.NotBefore.Unix(), sp.NotAfter.Unix(), sp.Owner, m)
			}
			at, err := time.Parse(time.RFC3339Nano, m.VerifyAt)
			if err != nil {
				t.Fatal(err)
			}
			if err := sp.Verify(owner.Public(), at); err != nil {
				t.Errorf("Verify with %s at %s: %v", m.Owner, m.VerifyAt, err)
			}
			if err := sp.Verify(owner.Public(), sp.NotAfter); !errors.Is(err, ErrExpired) {
				t.Errorf("Verify at not_after: %v, want ErrExpired", err)
			}
			if err := sp.Verify(testKey(t, "carol-2048").Public(), at); !errors.Is(err, ErrAuth) {
				t.Errorf("Verify with another key: %v, want ErrAuth", err)
			}

			// The private prekey file holds the same signed half.
			rawPriv := goldenRead(t, "prekeys", m.Prekey)
			pk, err := ParsePrekey(rawPriv)
			if err != nil {
				t.Fatalf("ParsePrekey: %v", err)
			}
			if !bytes.Equal(pk.Marshal(), rawPriv) {
				t.Error("ParsePrekey(b).Marshal() != b")
			}
			if !bytes.Equal(pk.Signed.Marshal(), raw) {
				t.Error("the prekey file's signed half differs from the signed-prekey file")
			}
		})
	}
}

func TestGoldenCards(t *testing.T) {
	goldenSetup(t)
	var manifest []goldenCard
	goldenReadJSON(t, &manifest, "cards", "cards.json")
	if len(manifest) != 2 {
		t.Fatalf("%d golden cards, want 2 (with and without prekey)", len(manifest))
	}
	var withPrekey, withoutPrekey bool
	for _, m := range manifest {
		withPrekey = withPrekey || m.PrekeyID != 0
		withoutPrekey = withoutPrekey || m.PrekeyID == 0
		t.Run(m.Name, func(t *testing.T) {
			uri := strings.TrimSuffix(string(goldenRead(t, "cards", m.URI)), "\n")
			c, err := ParseCardURI(uri)
			if err != nil {
				t.Fatalf("ParseCardURI: %v", err)
			}
			if c.URI() != uri {
				t.Error("ParseCardURI(s).URI() != s")
			}
			owner := testKey(t, m.Owner)
			if c.UserID.String() != m.UserID || c.UserID != owner.ID() || !c.Key.Equal(owner.Public()) {
				t.Errorf("card user %s key %s, want %s (%s)", c.UserID, c.Key, m.UserID, m.Owner)
			}
			if c.Name != m.CardName {
				t.Errorf("name = %q, want %q", c.Name, m.CardName)
			}
			var devices []string
			for _, d := range c.Devices {
				devices = append(devices, hex.EncodeToString(d))
			}
			if !slices.Equal(devices, m.DevicesHex) {
				t.Errorf("devices = %v, want %v", devices, m.DevicesHex)
			}
			if !slices.Equal(c.Addrs, m.Addrs) {
				t.Errorf("addrs = %q, want %q", c.Addrs, m.Addrs)
			}
			if c.IssuedAt.Unix() != m.IssuedAt {
				t.Errorf("issued at %d, want %d", c.IssuedAt.Unix(), m.IssuedAt)
			}
			switch {
			case m.PrekeyID == 0 && c.Prekey != nil:
				t.Errorf("card has prekey %d, want none", c.Prekey.ID)
			case m.PrekeyID != 0 && (c.Prekey == nil || c.Prekey.ID != m.PrekeyID):
				t.Errorf("card prekey = %v, want ID %d", c.Prekey, m.PrekeyID)
			}
			if c.Prekey != nil {
				if r := c.Recipient(goldenNow); r.Prekey == nil {
					t.Error("card prekey is not usable at the golden time")
				}
			}
		})
	}
	if !withPrekey || !withoutPrekey {
		t.Error("golden cards must include one with and one without a prekey")
	}
}

func TestGoldenSafetyNumbers(t *testing.T) {
	goldenSetup(t)
	var manifest []goldenSafety
	goldenReadJSON(t, &manifest, "safety.json")
	if len(manifest) < 2 {
		t.Fatalf("%d golden safety numbers, want 2", len(manifest))
	}
	for _, m := range manifest {
		t.Run(m.A+"+"+m.B, func(t *testing.T) {
			t.Parallel()
			a, b := testKey(t, m.A), testKey(t, m.B)
			got := SafetyNumber(a.ID(), a.Public(), b.ID(), b.Public())
			if got != m.Number {
				t.Errorf("SafetyNumber = %s, golden %s", got, m.Number)
			}
			if rev := SafetyNumber(b.ID(), b.Public(), a.ID(), a.Public()); rev != got {
				t.Errorf("SafetyNumber is not symmetric: %s vs %s", got, rev)
			}
			if spec := goldenSpecSafetyNumber(a.ID(), a.Public().Bytes(), b.ID(), b.Public().Bytes()); spec != got {
				t.Errorf("SafetyNumber = %s, the documented algorithm gives %s", got, spec)
			}
			if len(got) != SafetyNumberDigits || strings.Trim(got, "0123456789") != "" {
				t.Errorf("SafetyNumber %q is not %d digits", got, SafetyNumberDigits)
			}
		})
	}
}

// goldenSpecSafetyNumber reimplements the algorithm documented in safety.go
// with crypto/sha512 alone.
func goldenSpecSafetyNumber(aID ID, aDER []byte, bID ID, bDER []byte) string {
	half := func(id ID, der []byte) string {
		h := sha512.Sum512(slices.Concat([]byte("parley/v1/safety"), der, id[:]))
		for range 5200 {
			h = sha512.Sum512(slices.Concat(h[:], der))
		}
		var s string
		for i := range 6 {
			var v uint64
			for _, x := range h[5*i : 5*i+5] {
				v = v<<8 | uint64(x)
			}
			s += fmt.Sprintf("%05d", v%100000)
		}
		return s
	}
	x, y := half(aID, aDER), half(bID, bDER)
	if y < x {
		x, y = y, x
	}
	return x + y
}
