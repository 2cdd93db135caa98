package protocol

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"
)

// Golden vectors of a session in both directions between the fixture
// users alice-3072 and bob-3072, made once (with a seeded random source)
// and kept in testdata/golden/sessions: the start envelope, bob's prekey,
// each message, and the receiver's stored state before each message.
// Today's code must open yesterday's messages from yesterday's states.
// Regenerate (only on purpose, it is a wire-format change) with
//
//	go test ./protocol/ -run '^TestGoldenSession' -update

const goldenSessionDir = "sessions"

// goldenSessionScript is the conversation: who sends what, in order of
// sealing; open gives the order in which the receiver opens them.
var goldenSessionScript = []struct {
	name, from string
	kind       Kind
	body       string
	strict     bool
}{
	{"a1", "alice", KindText, "a1: alice goes on before bob answers", false},
	{"a2", "alice", KindText, strings.Repeat("a2: a body of several blocks. ", 30), false},
	{"b1", "bob", KindText, "b1: bob answers, with his certificate", false},
	{"b2", "bob", KindReceipt, "", false},
	{"a3", "alice", KindText, "a3: alice's DH ratchet step", false},
	{"b3", "bob", KindText, "b3: bob's step; no certificate any more", false},
	{"a4", "alice", KindText, "a4: signed with alice's RSA key (strict mode)", true},
	{"b4", "bob", KindText, "b4: opened after b5", false},
	{"b5", "bob", KindText, "b5: opened before b4", false},
}

var goldenSessionOpenOrder = []string{"a1", "a2", "b1", "b2", "a3", "b3", "a4", "b5", "b4"}

// goldenSessionStart is the manifest of the start.
type goldenSessionStart struct {
	Alice          string `json:"alice"` // fixture key names
	Bob            string `json:"bob"`
	Now            string `json:"now"`
	Envelope       string `json:"envelope"`        // the start envelope
	BobPrekey      string `json:"bob_prekey"`      // Prekey.Marshal
	AliceState     string `json:"alice_state"`     // alice's PeerSessions after Start
	BobState       string `json:"bob_state"`       // bob's PeerSessions after Accept
	SessionID      string `json:"session_id"`      // hex
	FirstKind      uint16 `json:"first_kind"`      // the first message
	FirstBodyHex   string `json:"first_body_hex"`  // ...
	StartMsgID     string `json:"start_msg_id"`    // the envelope's msg_id
	StartTimestamp int64  `json:"start_timestamp"` // unix ms
}

// goldenSessionMsg is the manifest of one session message.
type goldenSessionMsg struct {
	Name               string `json:"name"`
	From               string `json:"from"` // "alice" or "bob"
	Message            string `json:"message"`
	StateBefore        string `json:"state_before"` // the receiver's PeerSessions before opening it
	Kind               uint16 `json:"kind"`
	BodyHex            string `json:"body_hex"`
	MsgID              string `json:"msg_id"`
	SigAlg             uint8  `json:"sig_alg"`
	PreviousChain      uint32 `json:"previous_chain"`
	Number             uint32 `json:"number"`
	HasCert            bool   `json:"has_cert"`
	CanonicalHeaderHex string `json:"canonical_header_hex"`
}

func goldenSessionGenerate(t *testing.T) error {
	cryptotest.SetGlobalRandom(t, 0x5e5510)
	if err := os.RemoveAll(goldenPath(goldenSessionDir)); err != nil {
		return err
	}
	if err := os.MkdirAll(goldenPath(goldenSessionDir), 0o755); err != nil {
		return err
	}
	write := func(b []byte, name string) error { return os.WriteFile(goldenPath(goldenSessionDir, name), b, 0o644) }

	ak, bk := testKey(t, "alice-3072"), testKey(t, "bob-3072")
	pk, err := GeneratePrekey(bk, goldenNow.Add(-time.Hour), 30*24*time.Hour)
	if err != nil {
		return err
	}
	alice := &sessSide{key: ak, ps: NewPeerSessions(ak.ID(), bk.ID())}
	bob := &sessSide{key: bk, prekey: pk, ps: NewPeerSessions(bk.ID(), ak.ID())}
	first := []byte("hello bob: this starts our session")
	env, err := alice.ps.Start(testSender(ak), testRecipient(bk, pk), KindText, first, goldenNow)
	if err != nil {
		return err
	}
	aliceState := alice.ps.Marshal()
	if _, err := bob.accept(env.Marshal(), alice, goldenNow); err != nil {
		return err
	}
	start := goldenSessionStart{
		Alice: "alice-3072", Bob: "bob-3072", Now: goldenNow.Format(time.RFC3339Nano),
		Envelope: "start.bin", BobPrekey: "bob.prekey.bin", AliceState: "alice.state.bin", BobState: "bob.state.bin",
		SessionID: alice.ps.Current().ID().String(), FirstKind: uint16(KindText), FirstBodyHex: hex.EncodeToString(first),
		StartMsgID: env.MsgID.String(), StartTimestamp: env.Timestamp,
	}
	for name, b := range map[string][]byte{
		start.Envelope: env.Marshal(), start.BobPrekey: pk.Marshal(), start.AliceState: aliceState, start.BobState: bob.ps.Marshal(),
	} {
		if err := write(b, name); err != nil {
			return err
		}
	}

	side := map[string]*sessSide{"alice": alice, "bob": bob}
	other := map[string]string{"alice": "bob", "bob": "alice"}
	sealed := map[string]*goldenSessionMsg{}
	raws := map[string][]byte{}
	var receipt MsgID
	seal := func(i int) error {
		s := goldenSessionScript[i]
		from := side[s.from]
		body := []byte(s.body)
		if s.kind == KindReceipt {
			body = MarshalReceipt(receipt)
		}
		var strict Signer
		if s.strict {
			strict = from.key
		}
		m, err := from.ps.Seal(s.kind, body, goldenNow, strict)
		if err != nil {
			return err
		}
		if s.name == "a1" {
			receipt = m.MsgID
		}
		raws[s.name] = m.Marshal()
		sealed[s.name] = &goldenSessionMsg{
			Name: s.name, From: s.from, Message: s.name + ".bin", StateBefore: s.name + ".state-before.bin",
			Kind: uint16(s.kind), BodyHex: hex.EncodeToString(body), MsgID: m.MsgID.String(), SigAlg: uint8(m.SigAlg),
			PreviousChain: m.PreviousChain, Number: m.Number, HasCert: len(m.CertKey) > 0,
			CanonicalHeaderHex: hex.EncodeToString(m.Canonical()),
		}
		return nil
	}
	// Seal in script order, but each message only once everything the
	// open order puts before it has been opened (so the DH steps happen).
	next := 0
	var manifest []*goldenSessionMsg
	for _, name := range goldenSessionOpenOrder {
		for ; sealed[name] == nil; next++ {
			if err := seal(next); err != nil {
				return err
			}
		}
		g := sealed[name]
		to := side[other[g.From]]
		if err := write(to.ps.Marshal(), g.StateBefore); err != nil {
			return err
		}
		if err := write(raws[name], g.Message); err != nil {
			return err
		}
		if _, err := to.open(raws[name], side[g.From], goldenNow); err != nil {
			return fmt.Errorf("opening %s: %v", name, err)
		}
		manifest = append(manifest, g)
	}
	if err := goldenSessionWriteJSON(start, goldenSessionDir, "start.json"); err != nil {
		return err
	}
	return goldenSessionWriteJSON(manifest, goldenSessionDir, "messages.json")
}

func TestGoldenSession(t *testing.T) {
	if *goldenUpdate {
		if err := goldenSessionGenerate(t); err != nil {
			t.Fatalf("regenerating the session vectors: %v", err)
		}
	}
	var start goldenSessionStart
	goldenReadJSON(t, &start, goldenSessionDir, "start.json")
	var msgs []goldenSessionMsg
	goldenReadJSON(t, &msgs, goldenSessionDir, "messages.json")
	if len(msgs) != len(goldenSessionOpenOrder) {
		t.Fatalf("%d golden session messages, want %d", len(msgs), len(goldenSessionOpenOrder))
	}
	ak, bk := testKey(t, start.Alice), testKey(t, start.Bob)
	now, err := time.Parse(time.RFC3339Nano, start.Now)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePrekey(goldenRead(t, goldenSessionDir, start.BobPrekey))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(file string, me, peer ID) *PeerSessions {
		t.Helper()
		b := goldenRead(t, goldenSessionDir, file)
		ps, err := ParsePeerSessions(b, me, peer)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !bytes.Equal(ps.Marshal(), b) {
			t.Fatalf("%s does not re-encode to itself", file)
		}
		return ps
	}

	// The start: bob opens and accepts it as he did; the root and first
	// chain follow the documented construction.
	alice := &sessSide{key: ak, ps: parse(start.AliceState, ak.ID(), bk.ID())}
	bob := &sessSide{key: bk, prekey: pk, ps: NewPeerSessions(bk.ID(), ak.ID())}
	raw := goldenRead(t, goldenSessionDir, start.Envelope)
	first := bob.mustAccept(t, raw, alice, now)
	if first.Kind != Kind(start.FirstKind) || hex.EncodeToString(first.Body) != start.FirstBodyHex ||
		first.MsgID.String() != start.StartMsgID || first.Timestamp != start.StartTimestamp {
		t.Fatalf("first message = %+v %x", first.Header, first.Body)
	}
	if got := bob.ps.Current().ID().String(); got != start.SessionID || alice.ps.Current().ID().String() != start.SessionID {
		t.Fatalf("session ID %s, want %s", got, start.SessionID)
	}
	goldenSpecSessionStart(t, raw, bk, pk, alice.ps.Current())
	// Bob's stored state after the accept has his fresh keys but the same
	// session, peer key and receiving chain as the one made just now.
	stored := parse(start.BobState, bk.ID(), ak.ID()).Current()
	if c := bob.ps.Current(); stored.id != c.id || !stored.peerSigning.Equal(c.peerSigning) || stored.r.dhRemote != c.r.dhRemote {
		t.Fatal("bob's stored state after the accept disagrees with a new accept")
	}

	// Each message opens from the receiver's state before it, and gives
	// the state the next vector starts from (but for fresh DH keys).
	side := map[string]*sessSide{"alice": alice, "bob": bob}
	for _, g := range msgs {
		from, to := side[g.From], side["alice"]
		if g.From == "alice" {
			to = side["bob"]
		}
		to.ps = parse(g.StateBefore, to.key.ID(), from.key.ID())
		raw := goldenRead(t, goldenSessionDir, g.Message)
		m, err := ParseSessionMessage(raw)
		if err != nil {
			t.Fatalf("%s: %v", g.Name, err)
		}
		if !bytes.Equal(m.Marshal(), raw) {
			t.Errorf("%s does not re-encode to itself", g.Name)
		}
		if got := hex.EncodeToString(m.Canonical()); got != g.CanonicalHeaderHex {
			t.Errorf("%s: canonical header drifted:\n got %s\nwant %s", g.Name, got, g.CanonicalHeaderHex)
		}
		if spec := goldenSpecSessionCanonical(&m.SessionHeader); !bytes.Equal(spec, m.Canonical()) {
			t.Errorf("%s: SessionHeader.Canonical disagrees with the documented layout", g.Name)
		}
		if m.MsgID.String() != g.MsgID || uint8(m.SigAlg) != g.SigAlg || m.Number != g.Number ||
			m.PreviousChain != g.PreviousChain || (len(m.CertKey) > 0) != g.HasCert {
			t.Errorf("%s: header %+v disagrees with the manifest", g.Name, m.SessionHeader)
		}
		if g.Name == "a1" {
			goldenSpecSessionOpen(t, m, to.ps.Current(), to.ps.Current().peerSigning, g.BodyHex)
		}
		opened, err := to.ps.Open(m, from.key.Public(), now)
		if err != nil {
			t.Fatalf("%s: Open: %v", g.Name, err)
		}
		if opened.Kind != Kind(g.Kind) || hex.EncodeToString(opened.Body) != g.BodyHex {
			t.Errorf("%s: opened kind %s body %x", g.Name, opened.Kind, opened.Body)
		}
		if _, err := to.ps.Open(m, from.key.Public(), now); err == nil {
			t.Errorf("%s opened twice", g.Name)
		}
	}
}

// goldenSpecSessionCanonical encodes a session header as doc.go says,
// without the canon helper.
func goldenSpecSessionCanonical(h *SessionHeader) []byte {
	b := []byte{h.Version, byte(h.SigAlg)}
	b = binary.BigEndian.AppendUint16(b, uint16(h.Kind))
	b = append(b, h.MsgID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Timestamp))
	b = append(b, h.Session[:]...)
	b = append(b, h.RatchetKey[:]...)
	b = binary.BigEndian.AppendUint32(b, h.PreviousChain)
	b = binary.BigEndian.AppendUint32(b, h.Number)
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.CertKey)))
	b = append(b, h.CertKey...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.CertSignature)))
	return append(b, h.CertSignature...)
}

// goldenSpecSessionStart derives alice's first root and sending chain from
// the start envelope as doc.go describes, with the standard library only.
func goldenSpecSessionStart(t *testing.T, raw []byte, bob *PrivateKey, pk *Prekey, alice *Session) {
	t.Helper()
	e, err := ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	o := testOpener(bob, []*PrivateKey{testKey(t, "alice-3072")}, pk)
	o.Now = func() time.Time { return e.Time() }
	m, err := o.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseSessionStart(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	hh := sha256.Sum256(goldenSpecCanonical(&e.Header))
	sk, err := hkdf.Key(sha256.New, st.seed[:], st.id[:], "parley/v1/sess-root"+string(hh[:]), 32)
	if err != nil {
		t.Fatal(err)
	}
	ratchet, _ := ecdh.X25519().NewPublicKey(st.ratchet[:])
	dh, err := pk.priv.ECDH(ratchet)
	if err != nil {
		t.Fatal(err)
	}
	okm, err := hkdf.Key(sha256.New, dh, sk, "parley/v1/sess-ratchet", 64)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(okm[:32], alice.r.root[:]) || !bytes.Equal(okm[32:], alice.r.send[:]) {
		t.Fatal("the documented start derivation disagrees with alice's stored root and chain")
	}
}

// goldenSpecSessionOpen opens m, the next message of bob's receiving
// chain, as doc.go describes, with the standard library only.
func goldenSpecSessionOpen(t *testing.T, m *SessionMessage, bob *Session, aliceKey ed25519.PublicKey, wantHex string) {
	t.Helper()
	if m.Number != bob.r.nr || m.RatchetKey != bob.r.dhRemote {
		t.Fatal("the spec check needs the next message of the current chain")
	}
	canonical := goldenSpecSessionCanonical(&m.SessionHeader)
	ctHash := sha256.Sum256(m.Ciphertext)
	signed := slices.Concat([]byte("parley/v1/sess-sig"), m.Sender[:], m.Recipient[:], canonical, ctHash[:])
	if !ed25519.Verify(aliceKey, signed, m.Signature) {
		t.Fatal("the documented signature does not verify")
	}
	mac := hmac.New(sha256.New, bob.r.recv[:])
	mac.Write([]byte{1})
	mk := mac.Sum(nil)
	okm, err := hkdf.Expand(sha256.New, mk, "parley/v1/sess-key"+string(m.MsgID[:]), 44)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(okm[:32])
	gcm, _ := cipher.NewGCM(block)
	aad := slices.Concat([]byte("parley/v1/sess-msg"), m.Sender[:], m.Recipient[:], canonical)
	pt, err := gcm.Open(nil, okm[32:], m.Ciphertext, aad)
	if err != nil {
		t.Fatalf("the documented decryption fails: %v", err)
	}
	n := binary.BigEndian.Uint32(pt)
	if got := hex.EncodeToString(pt[4 : 4+n]); got != wantHex || len(pt)%256 != 0 {
		t.Fatalf("the documented decryption gives %s (%d bytes padded)", got, len(pt))
	}
}

func goldenSessionWriteJSON(v any, parts ...string) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(goldenPath(parts...), append(b, '\n'), 0o644)
}
