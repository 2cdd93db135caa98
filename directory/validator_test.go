package directory

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/parley-chat/parley/protocol"
)

func TestKey(t *testing.T) {
	t.Parallel()
	alice := key(t, "alice-2048")
	k := Key(alice.ID())
	if k != "/parley-user/"+alice.ID().String() || len(k) != len("/parley-user/")+52 {
		t.Fatalf("Key = %q", k)
	}
	if id, err := ParseKey(k); err != nil || id != alice.ID() {
		t.Fatalf("ParseKey(Key) = %v, %v", id, err)
	}
	for _, bad := range []string{
		"", "/parley-user/", "/parley-user", "parley-user/" + alice.ID().String(),
		"/parley-user/" + strings.ToUpper(alice.ID().String()),
		"/parley-user/" + alice.ID().String() + "/",
		"/parley-user/" + alice.ID().String() + "a",
		"/parley-user//" + alice.ID().String(),
		"/pk/" + alice.ID().String(),
		"/ipns/" + alice.ID().String(),
	} {
		if _, err := ParseKey(bad); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("ParseKey(%q) = %v, want ErrKeyMismatch", bad, err)
		}
	}
}

func TestValidateKey(t *testing.T) {
	t.Parallel()
	alice, bob := key(t, "alice-2048"), key(t, "bob-2048")
	b := mustRecord(t, alice, input(t, alice, 1), t0).Marshal()
	var calls, fails atomic.Int32
	v := Validator{Now: func() time.Time { return t0 }, OnValidate: func(err error) {
		calls.Add(1)
		if err != nil {
			fails.Add(1)
		}
	}}
	if err := v.Validate(Key(alice.ID()), b); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{Key(bob.ID()), "/parley-user/x", "/pk/" + alice.ID().String()} {
		if err := v.Validate(k, b); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("Validate under %q: %v, want ErrKeyMismatch", k, err)
		}
	}
	if calls.Load() != 4 || fails.Load() != 3 {
		t.Fatalf("OnValidate called %d times, %d failures; want 4 and 3", calls.Load(), fails.Load())
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	alice, bob := key(t, "alice-2048"), key(t, "bob-2048")
	k := Key(alice.ID())
	v := Validator{Now: func() time.Time { return t0.Add(time.Hour) }}
	rec := func(seq uint64, at time.Time) []byte { return mustRecord(t, alice, input(t, alice, seq), at).Marshal() }
	s1, s2, s3 := rec(1, t0), rec(2, t0), rec(3, t0)
	// Same sequence, same issue time: two encodings (RSA-PSS is randomised).
	tieA, tieB := rec(4, t0), rec(4, t0)
	if bytes.Equal(tieA, tieB) {
		t.Fatal("two signings gave the same bytes")
	}
	small, large := tieA, tieB
	if bytes.Compare(small, large) > 0 {
		small, large = large, small
	}
	s2later := rec(2, t0.Add(time.Minute))
	expired := mustRecord(t, alice, RecordInput{Name: "Alice", Seq: 9, Lifetime: time.Minute}, t0).Marshal()
	forged := resigned(t, mustRecord(t, alice, input(t, alice, 9), t0), bob, func(*Record) {})
	bobs := mustRecord(t, bob, input(t, bob, 99), t0).Marshal()
	for _, tc := range []struct {
		name   string
		values [][]byte
		want   []byte
	}{
		{"highest seq", [][]byte{s1, s3, s2}, s3},
		{"highest seq first", [][]byte{s3, s1, s2}, s3},
		{"rolled back record loses", [][]byte{s2, s1}, s2},
		{"tie: smallest encoding", [][]byte{large, small}, small},
		{"tie, other order", [][]byte{small, large}, small},
		{"same seq: later issue wins", [][]byte{s2, s2later}, s2later},
		{"same seq: later issue wins, other order", [][]byte{s2later, s2}, s2later},
		{"identical values", [][]byte{s3, s3}, s3},
		{"invalid higher seq ignored: expired", [][]byte{expired, s1}, s1},
		{"invalid higher seq ignored: wrong signer", [][]byte{s2, forged}, s2},
		{"invalid higher seq ignored: another user's record", [][]byte{bobs, s1}, s1},
		{"garbage ignored", [][]byte{{1, 2, 3}, nil, s1}, s1},
	} {
		i, err := v.Select(k, tc.values)
		if err != nil {
			t.Errorf("%s: Select: %v", tc.name, err)
			continue
		}
		if !bytes.Equal(tc.values[i], tc.want) {
			t.Errorf("%s: Select = %d", tc.name, i)
		}
		// The choice does not depend on the order of the values.
		rev := make([][]byte, len(tc.values))
		for j, b := range tc.values {
			rev[len(rev)-1-j] = b
		}
		if j, err := v.Select(k, rev); err != nil || !bytes.Equal(rev[j], tc.want) {
			t.Errorf("%s: Select of the reversed values = %d, %v", tc.name, j, err)
		}
	}
	for name, values := range map[string][][]byte{
		"no values":    nil,
		"none valid":   {expired, forged, bobs, {0}},
		"only garbage": {{0}},
		"only expired": {expired},
		"other user's": {bobs},
	} {
		if i, err := v.Select(k, values); !errors.Is(err, ErrNoValidRecord) || i != -1 {
			t.Errorf("%s: Select = %d, %v; want -1, ErrNoValidRecord", name, i, err)
		}
	}
	if _, err := v.Select("/parley-user/nope", [][]byte{s1}); !errors.Is(err, ErrNoValidRecord) || !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("Select under a bad key: %v", err)
	}
}

func TestNormalizeName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"alice":             "alice",
		"Alice":             "alice",
		"  ALICE \n":        "alice",
		"Ａｌｉｃｅ":             "alice", // full-width
		"ﬁona":              "fiona", // ligature
		"Ǆemal":             "džemal",
		"Cafe\u0301":        "café", // combining accent composed
		"café":              "café",
		"Ålice Liddell":     "ålice liddell",
		"李":                 "李",
		"\u00a0Alice\u00a0": "alice", // NBSP is white space under NFKC
		"":                  "",
	} {
		if got := NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNameCID(t *testing.T) {
	t.Parallel()
	c := NameCID("Alice")
	if c.Version() != 1 || c.Type() != cid.Raw {
		t.Fatalf("NameCID = %s: version %d codec %x", c, c.Version(), c.Type())
	}
	want, err := mh.Sum([]byte("parley-name:alice"), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Hash(), want) || !c.Equals(cid.NewCidV1(cid.Raw, want)) {
		t.Fatalf("NameCID(Alice) = %s, want the SHA-256 multihash of parley-name:alice", c)
	}
	for _, same := range []string{"alice", " ALICE ", "Ａｌｉｃｅ"} {
		if !NameCID(same).Equals(c) {
			t.Errorf("NameCID(%q) != NameCID(Alice)", same)
		}
	}
	if NameCID("Alicia").Equals(c) || NameCID("alice2").Equals(c) {
		t.Error("different names share a CID")
	}
	// The printed form is stable: a change would split the name index.
	if got := c.String(); got != cid.NewCidV1(cid.Raw, want).String() || !strings.HasPrefix(got, "bafkrei") {
		t.Errorf("NameCID(Alice) = %s", got)
	}
}

func TestSignDevice(t *testing.T) {
	t.Parallel()
	alice := key(t, "alice-2048")
	d := device(t, 1, alice.ID())
	if err := d.Verify(alice.ID()); err != nil {
		t.Fatal(err)
	}
	if err := d.Verify(key(t, "bob-2048").ID()); !errors.Is(err, ErrBadDevice) || !errors.Is(err, protocol.ErrAuth) {
		t.Fatalf("device verified for another user: %v", err)
	}
	if _, err := SignDevice(nil, alice.ID()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SignDevice(nil): %v", err)
	}
}
