package directory

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// Golden records pin the wire format and the signed encoding: each file must
// keep parsing, re-encoding to the same bytes and verifying at its issue
// time. Signatures are randomised (RSA-PSS), so regenerating makes new
// bytes; do it only on purpose, with
//
//	go test ./directory/ -run '^TestGoldenRecords$' -update
var goldenUpdate = flag.Bool("update", false, "regenerate the golden records in testdata/golden")

// goldenRecord describes one golden file.
type goldenRecord struct {
	File      string   `json:"file"`
	UserID    string   `json:"user_id"`
	KeyID     string   `json:"key_id"`
	Name      string   `json:"name"`
	Chain     int      `json:"chain"`
	Devices   []string `json:"devices"`
	Relays    []string `json:"relays"`
	Prekey    bool     `json:"prekey"`
	Seq       uint64   `json:"seq"`
	IssuedAt  int64    `json:"issued_at"`
	ExpiresAt int64    `json:"expires_at"`
}

var goldenDir = filepath.Join("testdata", "golden")

// goldenRecords makes the golden records: a full record, a bare one, and
// one after two rotations (alice-2048 → alice-3072 → bob-3072).
func goldenRecords(tb testing.TB) map[string]*Record {
	alice := key(tb, "alice-2048")
	rot, _ := rotated(tb, alice, 42, key(tb, "alice-3072"), key(tb, "bob-3072"))
	return map[string]*Record{
		"alice-2048.bin":         mustRecord(tb, alice, input(tb, alice, 7), t0),
		"alice-2048-bare.bin":    mustRecord(tb, alice, RecordInput{Name: "A", Lifetime: MaxLifetime}, t0),
		"alice-2048-rotated.bin": rot,
	}
}

func goldenWrite(t *testing.T) {
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var manifest []goldenRecord
	records := goldenRecords(t)
	for _, file := range slices.Sorted(maps.Keys(records)) {
		r := records[file]
		if err := os.WriteFile(filepath.Join(goldenDir, file), r.Marshal(), 0o644); err != nil {
			t.Fatal(err)
		}
		g := goldenRecord{
			File: file, UserID: r.UserID().String(), KeyID: r.Key().ID().String(), Name: r.Name(),
			Chain: len(r.Chain()), Relays: r.Relays(), Prekey: r.Prekey() != nil, Seq: r.Seq(),
			IssuedAt: r.IssuedAt().Unix(), ExpiresAt: r.ExpiresAt().Unix(),
		}
		for _, d := range r.Devices() {
			g.Devices = append(g.Devices, d.Peer.String())
		}
		manifest = append(manifest, g)
	}
	b, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenDir, "records.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goldenFiles returns the golden records' bytes, by file name.
func goldenFiles(tb testing.TB) (map[string][]byte, []goldenRecord) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "records.json"))
	if err != nil {
		tb.Fatalf("golden manifest (regenerate with -update): %v", err)
	}
	var manifest []goldenRecord
	if err := json.Unmarshal(b, &manifest); err != nil {
		tb.Fatal(err)
	}
	files := map[string][]byte{}
	for _, g := range manifest {
		if files[g.File], err = os.ReadFile(filepath.Join(goldenDir, g.File)); err != nil {
			tb.Fatal(err)
		}
	}
	return files, manifest
}

func TestGoldenRecords(t *testing.T) {
	if *goldenUpdate {
		goldenWrite(t)
	}
	files, manifest := goldenFiles(t)
	if len(manifest) != 3 {
		t.Fatalf("%d golden records, want 3", len(manifest))
	}
	for _, g := range manifest {
		t.Run(g.File, func(t *testing.T) {
			b := files[g.File]
			issued := time.Unix(g.IssuedAt, 0)
			r, err := VerifyRecord(b, issued)
			if err != nil {
				t.Fatalf("VerifyRecord: %v", err)
			}
			if !bytes.Equal(r.Marshal(), b) {
				t.Fatal("re-encoding changed the bytes")
			}
			if r.UserID().String() != g.UserID || r.Key().ID().String() != g.KeyID || r.Name() != g.Name ||
				len(r.Chain()) != g.Chain || len(r.Devices()) != len(g.Devices) || len(r.Relays()) != len(g.Relays) ||
				(r.Prekey() != nil) != g.Prekey || r.Seq() != g.Seq || r.ExpiresAt().Unix() != g.ExpiresAt {
				t.Fatalf("record fields differ from the manifest: %+v", g)
			}
			for i, d := range r.Devices() {
				if d.Peer.String() != g.Devices[i] {
					t.Fatalf("device %d = %s, want %s", i, d.Peer, g.Devices[i])
				}
			}
			if g.Chain > 0 && r.UserID() == r.Key().ID() {
				t.Fatal("a rotated record's user ID is its current key's")
			}
			v := Validator{Now: func() time.Time { return issued }}
			if err := v.Validate(Key(r.UserID()), b); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if _, err := VerifyRecord(b, time.Unix(g.ExpiresAt, 0)); !errorsIs(err, ErrExpired) {
				t.Fatalf("at expiry: %v, want ErrExpired", err)
			}
			if id, err := protocol.ParseID(g.UserID); err != nil || Key(id) != Key(r.UserID()) {
				t.Fatal("user ID of the manifest")
			}
		})
	}
}
