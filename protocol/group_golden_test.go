package protocol

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"
)

// Golden vectors of a group, kept in testdata/golden/groups: its first
// state (alice-2048 admin, bob-2048 and carol-2048 members), the next
// (carol removed), alice's sender key of epoch 2 as bob receives it, and
// three of her messages, which bob opens out of order. Today's code must
// accept yesterday's states and open yesterday's messages. Regenerate
// (only on purpose, it is a wire-format change) with
//
//	go test ./protocol/ -run '^TestGoldenGroup' -update

const goldenGroupDir = "groups"

var goldenGroupScript = []struct {
	name string
	kind Kind
	body string
}{
	{"m0", KindText, "m0: hello, group"},
	{"m1", KindText, strings.Repeat("m1: a body of several blocks. ", 30)},
	{"m2", KindText, "m2: opened first, so bob skips m0 and m1"},
}

var goldenGroupOpenOrder = []string{"m2", "m0", "m1"}

// goldenGroup is the manifest.
type goldenGroup struct {
	Admin     string `json:"admin"` // fixture key names
	Member    string `json:"member"`
	Removed   string `json:"removed"`
	Now       string `json:"now"`
	GroupID   string `json:"group_id"` // hex
	Name      string `json:"name"`
	State1    string `json:"state1"`
	State1Sum string `json:"state1_hash"` // hex of Hash()
	State1Can string `json:"state1_canonical_hex"`
	State2    string `json:"state2"`
	State2Sum string `json:"state2_hash"`
	Topic2    string `json:"topic2"`
	SenderKey string `json:"sender_key"` // alice's distribution, epoch 2

	Messages []goldenGroupMsg `json:"messages"` // in sealing order
}

type goldenGroupMsg struct {
	Name               string `json:"name"`
	File               string `json:"file"`
	Kind               uint16 `json:"kind"`
	BodyHex            string `json:"body_hex"`
	MsgID              string `json:"msg_id"`
	Iteration          uint32 `json:"iteration"`
	CanonicalHeaderHex string `json:"canonical_header_hex"`
}

func goldenGroupGenerate(t *testing.T) error {
	cryptotest.SetGlobalRandom(t, 0x6209)
	if err := os.RemoveAll(goldenPath(goldenGroupDir)); err != nil {
		return err
	}
	if err := os.MkdirAll(goldenPath(goldenGroupDir), 0o755); err != nil {
		return err
	}
	write := func(b []byte, name string) error { return os.WriteFile(goldenPath(goldenGroupDir, name), b, 0o644) }
	alice, bob, carol := testKey(t, "alice-2048"), testKey(t, "bob-2048"), testKey(t, "carol-2048")
	s1, err := NewGroupState(alice, alice.ID(), "golden hikers", []GroupMember{member(bob, RoleMember), member(carol, RoleMember)}, goldenNow)
	if err != nil {
		return err
	}
	s2, err := s1.Next(alice, alice.ID(), s1.Name, []GroupMember{member(alice, RoleAdmin), member(bob, RoleMember)}, goldenNow.Add(time.Minute))
	if err != nil {
		return err
	}
	own, err := NewSenderChain(s2, alice.ID())
	if err != nil {
		return err
	}
	d, err := own.Distribution(s2)
	if err != nil {
		return err
	}
	h1, h2 := s1.Hash(), s2.Hash()
	g := goldenGroup{
		Admin: "alice-2048", Member: "bob-2048", Removed: "carol-2048", Now: goldenNow.Format(time.RFC3339Nano),
		GroupID: s1.Group.String(), Name: s1.Name,
		State1: "state1.bin", State1Sum: hex.EncodeToString(h1[:]), State1Can: hex.EncodeToString(s1.Canonical()),
		State2: "state2.bin", State2Sum: hex.EncodeToString(h2[:]), Topic2: Topic(s2),
		SenderKey: "sender-key.bin",
	}
	for name, b := range map[string][]byte{g.State1: s1.Marshal(), g.State2: s2.Marshal(), g.SenderKey: d.Marshal()} {
		if err := write(b, name); err != nil {
			return err
		}
	}
	for i, s := range goldenGroupScript {
		m, next, err := own.Seal(s.kind, []byte(s.body), goldenNow.Add(time.Duration(i)*time.Second))
		if err != nil {
			return err
		}
		own = next
		if err := write(m.Marshal(), s.name+".bin"); err != nil {
			return err
		}
		g.Messages = append(g.Messages, goldenGroupMsg{
			Name: s.name, File: s.name + ".bin", Kind: uint16(s.kind), BodyHex: hex.EncodeToString([]byte(s.body)),
			MsgID: m.MsgID.String(), Iteration: m.Iteration, CanonicalHeaderHex: hex.EncodeToString(m.Canonical()),
		})
	}
	return goldenSessionWriteJSON(g, goldenGroupDir, "groups.json")
}

func TestGoldenGroup(t *testing.T) {
	if *goldenUpdate {
		if err := goldenGroupGenerate(t); err != nil {
			t.Fatalf("regenerating the group vectors: %v", err)
		}
	}
	var g goldenGroup
	goldenReadJSON(t, &g, goldenGroupDir, "groups.json")
	alice, bob := testKey(t, g.Admin), testKey(t, g.Member)
	parse := func(file string) *GroupState {
		t.Helper()
		b := goldenRead(t, goldenGroupDir, file)
		s, err := ParseGroupState(b)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !bytes.Equal(s.Marshal(), b) {
			t.Fatalf("%s does not re-encode to itself", file)
		}
		return s
	}
	s1, s2 := parse(g.State1), parse(g.State2)
	if err := VerifyGroupGenesis(s1, alice.Public()); err != nil {
		t.Fatalf("state 1: %v", err)
	}
	if err := s1.Accept(s2, alice.Public()); err != nil {
		t.Fatalf("state 2: %v", err)
	}
	h1, h2 := s1.Hash(), s2.Hash()
	if s1.Group.String() != g.GroupID || s1.Name != g.Name || hex.EncodeToString(h1[:]) != g.State1Sum ||
		hex.EncodeToString(h2[:]) != g.State2Sum || Topic(s2) != g.Topic2 {
		t.Fatal("the group's ID, name, hashes or topic drifted")
	}
	if hex.EncodeToString(s1.Canonical()) != g.State1Can || !bytes.Equal(goldenSpecGroupState(s1), s1.Canonical()) {
		t.Fatal("GroupState.Canonical disagrees with the manifest or the documented layout")
	}
	goldenSpecGroupHashes(t, s1, s2, goldenRead(t, goldenGroupDir, g.State1), g.Topic2)

	raw := goldenRead(t, goldenGroupDir, g.SenderKey)
	d, err := ParseSenderKeyDistribution(raw)
	if err != nil || !bytes.Equal(d.Marshal(), raw) {
		t.Fatalf("sender key: %v (or it does not re-encode to itself)", err)
	}
	if _, err := AcceptSenderKey(s2, d, bob.ID()); err == nil {
		t.Fatal("alice's sender key accepted from bob's session")
	}
	chain, err := AcceptSenderKey(s2, d, alice.ID())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]goldenGroupMsg{}
	for _, m := range g.Messages {
		byName[m.Name] = m
	}
	for _, name := range goldenGroupOpenOrder {
		gm := byName[name]
		raw := goldenRead(t, goldenGroupDir, gm.File)
		m, err := ParseGroupMessage(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(m.Marshal(), raw) {
			t.Errorf("%s does not re-encode to itself", name)
		}
		if got := hex.EncodeToString(m.Canonical()); got != gm.CanonicalHeaderHex || !bytes.Equal(goldenSpecGroupHeader(&m.GroupHeader), m.Canonical()) {
			t.Errorf("%s: canonical header drifted or disagrees with the documented layout", name)
		}
		if m.MsgID.String() != gm.MsgID || m.Iteration != gm.Iteration || m.Kind != Kind(gm.Kind) {
			t.Errorf("%s: header %+v disagrees with the manifest", name, m.GroupHeader)
		}
		if name == "m0" {
			goldenSpecGroupOpen(t, m, alice.ID(), d, gm.BodyHex)
		}
		p, next, err := chain.Open(m)
		if err != nil {
			t.Fatalf("%s: Open: %v", name, err)
		}
		if hex.EncodeToString(p.Body) != gm.BodyHex {
			t.Errorf("%s opened as %x", name, p.Body)
		}
		if _, _, err := next.Open(m); err == nil {
			t.Errorf("%s opened twice", name)
		}
		chain = next
	}
}

// goldenSpecGroupState encodes a state's signed bytes as doc.go says,
// without the canon helper.
func goldenSpecGroupState(s *GroupState) []byte {
	b := append([]byte{s.Version}, s.Group[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Name)))
	b = append(b, s.Name...)
	b = binary.BigEndian.AppendUint64(b, s.Epoch)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Members)))
	for _, m := range s.Members {
		b = append(append(b, m.User[:]...), byte(m.Role))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Previous)))
	b = append(b, s.Previous...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Issued))
	return append(append(b, s.Signer[:]...), s.SignerKey[:]...)
}

// goldenSpecGroupHashes checks the state hash and the topic name as doc.go
// describes them.
func goldenSpecGroupHashes(t *testing.T, s1, s2 *GroupState, raw1 []byte, topic2 string) {
	t.Helper()
	h := sha256.Sum256(slices.Concat([]byte("parley/v1/group-hash"), raw1))
	if !bytes.Equal(h[:], s2.Previous) {
		t.Fatal("the documented state hash is not the next state's previous hash")
	}
	h2 := sha256.Sum256(slices.Concat([]byte("parley/v1/group-hash"), s2.Marshal()))
	proof := sha256.Sum256(slices.Concat(binary.BigEndian.AppendUint64(slices.Concat([]byte("parley/v1/topic-proof"), s1.Group[:]), 2), h2[:]))
	th := sha256.Sum256(slices.Concat([]byte("parley/v1/group-topic"), proof[:]))
	if want := "/parley/group/2/" + hex.EncodeToString(th[:]); want != topic2 {
		t.Fatalf("the documented topic is %s, not %s", want, topic2)
	}
}

// goldenSpecGroupHeader encodes a group message header as doc.go says.
func goldenSpecGroupHeader(h *GroupHeader) []byte {
	b := binary.BigEndian.AppendUint16([]byte{h.Version}, uint16(h.Kind))
	b = binary.BigEndian.AppendUint64(append(b, h.Group[:]...), h.Epoch)
	b = append(append(b, h.Sender[:]...), h.Chain[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Iteration)
	b = append(b, h.MsgID[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(h.Timestamp))
}

// goldenSpecGroupOpen opens m, the first message of d's chain, as doc.go
// describes, with the standard library only.
func goldenSpecGroupOpen(t *testing.T, m *GroupMessage, sender ID, d *SenderKeyDistribution, wantHex string) {
	t.Helper()
	if m.Iteration != d.Iteration || m.Sender != sender || m.Chain != d.Chain {
		t.Fatal("the spec check needs the chain's first message")
	}
	canonical := goldenSpecGroupHeader(&m.GroupHeader)
	ctHash := sha256.Sum256(m.Ciphertext)
	if !ed25519.Verify(d.Chain[:], slices.Concat([]byte("parley/v1/group-sig"), canonical, ctHash[:]), m.Signature) {
		t.Fatal("the documented signature does not verify")
	}
	mac := hmac.New(sha256.New, d.ChainKey[:])
	mac.Write([]byte{1})
	mk := mac.Sum(nil)
	okm, err := hkdf.Expand(sha256.New, mk, "parley/v1/group-key"+string(m.MsgID[:]), 44)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(okm[:32])
	gcm, _ := cipher.NewGCM(block)
	pt, err := gcm.Open(nil, okm[32:], m.Ciphertext, slices.Concat([]byte("parley/v1/group-msg"), canonical))
	if err != nil {
		t.Fatalf("the documented decryption fails: %v", err)
	}
	n := binary.BigEndian.Uint32(pt)
	if got := hex.EncodeToString(pt[4 : 4+n]); got != wantHex || len(pt)%256 != 0 {
		t.Fatalf("the documented decryption gives %s (%d bytes padded)", got, len(pt))
	}
}
