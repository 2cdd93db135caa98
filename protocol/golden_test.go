package protocol

import (
	"bytes"
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
