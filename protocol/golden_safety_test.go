package protocol

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// Golden safety numbers across key changes (testdata/golden/safety-keys.json):
// what viewer shows for friend, whose key in use is key. A chained rotation
// (friend's genesis → key, signed both ways) keeps the genesis number; a key
// that arrived without a chain from the pinned one gives a new number, even
// when it is the friend's genesis key. Regenerate only on purpose, with
//
//	go test ./protocol/ -run '^TestGoldenSafetyAcrossKeyChanges$' -update
type goldenKeySafety struct {
	Name    string `json:"name"`
	Viewer  string `json:"viewer"`  // fixture key: the viewer's genesis key
	Friend  string `json:"friend"`  // fixture key: the friend's genesis key (their user ID)
	Key     string `json:"key"`     // fixture key: the friend's key being shown
	Chained bool   `json:"chained"` // key follows from the genesis by a rotation chain
	Number  string `json:"number"`
	// SameAsGenesis says whether Number equals the genesis-key number of
	// viewer and friend: true for a chained rotation, false for a change.
	SameAsGenesis bool `json:"same_as_genesis"`
}

var goldenKeySafetyCases = []goldenKeySafety{
	{Name: "chained-rotation", Viewer: "bob-2048", Friend: "alice-2048", Key: "alice-3072", Chained: true},
	{Name: "unchained-change", Viewer: "bob-2048", Friend: "alice-2048", Key: "carol-3072"},
	{Name: "unchained-back-to-genesis", Viewer: "bob-2048", Friend: "alice-2048", Key: "alice-2048"},
}

// goldenFriendSafety is the number viewer shows for friend with key in
// use, following doc.go: over the genesis keys when the key follows from
// the friend's genesis by a verified chain, over the new key otherwise.
func goldenFriendSafety(t *testing.T, c goldenKeySafety) string {
	t.Helper()
	v, f, k := testKey(t, c.Viewer), testKey(t, c.Friend), testKey(t, c.Key)
	if !c.Chained {
		return ChangedKeySafetyNumber(v.ID(), v.Public(), f.ID(), k.Public())
	}
	r, err := NewRotation(f.ID(), f, k, 1, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := VerifyChain(f.ID(), f.Public(), []*Rotation{r})
	if err != nil || !cur.Equal(k.Public()) {
		t.Fatalf("chain to %s: %v", c.Key, err)
	}
	return SafetyNumber(v.ID(), v.Public(), f.ID(), f.Public())
}

func TestGoldenSafetyAcrossKeyChanges(t *testing.T) {
	const file = "safety-keys.json"
	if *goldenUpdate {
		var out []goldenKeySafety
		for _, c := range goldenKeySafetyCases {
			c.Number = goldenFriendSafety(t, c)
			c.SameAsGenesis = c.Chained
			out = append(out, c)
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath(file), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var manifest []goldenKeySafety
	goldenReadJSON(t, &manifest, file)
	if len(manifest) != len(goldenKeySafetyCases) {
		t.Fatalf("%d golden cases, want %d", len(manifest), len(goldenKeySafetyCases))
	}
	for _, m := range manifest {
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			v, f, k := testKey(t, m.Viewer), testKey(t, m.Friend), testKey(t, m.Key)
			got := goldenFriendSafety(t, m)
			if got != m.Number {
				t.Errorf("safety number %s, golden %s", got, m.Number)
			}
			genesis := SafetyNumber(v.ID(), v.Public(), f.ID(), f.Public())
			if (got == genesis) != m.SameAsGenesis || m.SameAsGenesis != m.Chained {
				t.Errorf("equal to the genesis number: %v, want %v", got == genesis, m.Chained)
			}
			// The documented algorithm, with crypto/sha512 alone.
			friendLabel, friendDER := "parley/v1/safety", f.Public().Bytes()
			if !m.Chained {
				friendLabel, friendDER = "parley/v1/key-safety", k.Public().Bytes()
			}
			x := goldenSpecSafetyHalf("parley/v1/safety", v.ID(), v.Public().Bytes())
			y := goldenSpecSafetyHalf(friendLabel, f.ID(), friendDER)
			if spec := min(x, y) + max(x, y); spec != got {
				t.Errorf("safety number %s, the documented algorithm gives %s", got, spec)
			}
			// The halves are sorted, whoever is first.
			if !m.Chained {
				if own := joinSafetyHalves(safetyHalfLabel(LabelKeySafety, f.ID(), k.Public()), safetyHalf(v.ID(), v.Public())); own != got {
					t.Errorf("the halves are not sorted: %s vs %s", own, got)
				}
			}
		})
	}
}

// goldenSpecSafetyHalf is one user's half as doc.go describes it.
func goldenSpecSafetyHalf(label string, id ID, der []byte) string {
	h := sha512.Sum512(slices.Concat([]byte(label), der, id[:]))
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

// The two safety labels are domain-separated from each other and from the
// signing labels: no label is a prefix of another.
func TestSafetyLabelsArePrefixFree(t *testing.T) {
	t.Parallel()
	labels := []string{LabelSafety, LabelKeySafety, LabelEnvSig, LabelOAEP, LabelEnvKey, LabelPrekey, LabelCard,
		LabelRotateOld, LabelRotateNew, LabelSessRoot, LabelSessRatchet, LabelSessKey, LabelSessMsg, LabelSessSig, LabelSessCert}
	for i, a := range labels {
		for j, b := range labels {
			if i != j && strings.HasPrefix(b, a) {
				t.Errorf("label %q is a prefix of %q", a, b)
			}
		}
	}
}
