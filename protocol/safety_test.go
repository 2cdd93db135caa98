package protocol

import (
	"strings"
	"testing"
)

func TestSafetyNumberSymmetricAndDecimal(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-3072")
	ab := SafetyNumber(alice.ID(), alice.Public(), bob.ID(), bob.Public())
	ba := SafetyNumber(bob.ID(), bob.Public(), alice.ID(), alice.Public())
	if ab != ba {
		t.Fatalf("safety number depends on argument order:\n%s\n%s", ab, ba)
	}
	if len(ab) != SafetyNumberDigits || SafetyNumberDigits != 60 {
		t.Fatalf("safety number %q has %d digits, want 60", ab, len(ab))
	}
	for i, c := range ab {
		if c < '0' || c > '9' {
			t.Fatalf("safety number %q has %q at %d", ab, c, i)
		}
	}
	// It is the two users' halves, smaller first; each half is that user's
	// alone.
	ha, hb := safetyHalf(alice.ID(), alice.Public()), safetyHalf(bob.ID(), bob.Public())
	if len(ha) != 30 || len(hb) != 30 {
		t.Fatalf("halves of %d and %d digits", len(ha), len(hb))
	}
	if want := min(ha, hb) + max(ha, hb); ab != want {
		t.Fatalf("safety number %s, want the sorted halves %s", ab, want)
	}
	if ab[:30] > ab[30:] {
		t.Fatalf("halves are not in order")
	}
	// Deterministic.
	if again := SafetyNumber(alice.ID(), alice.Public(), bob.ID(), bob.Public()); again != ab {
		t.Fatalf("safety number is not deterministic")
	}
}

func TestSafetyNumberChangesWithEitherKey(t *testing.T) {
	t.Parallel()
	alice, bob, carol := testKey(t, "alice-2048"), testKey(t, "bob-2048"), testKey(t, "carol-2048")
	alice2, bob2 := testKey(t, "alice-3072"), testKey(t, "bob-3072")
	base := SafetyNumber(alice.ID(), alice.Public(), bob.ID(), bob.Public())
	for name, n := range map[string]string{
		// A rotated key under the same user ID (what a key change looks like).
		"alice's key": SafetyNumber(alice.ID(), alice2.Public(), bob.ID(), bob.Public()),
		"bob's key":   SafetyNumber(alice.ID(), alice.Public(), bob.ID(), bob2.Public()),
		"both keys":   SafetyNumber(alice.ID(), alice2.Public(), bob.ID(), bob2.Public()),
		// Someone in the middle substitutes their own key and ID for bob's.
		"bob replaced by carol": SafetyNumber(alice.ID(), alice.Public(), carol.ID(), carol.Public()),
		// Same keys, another user ID.
		"alice's user ID": SafetyNumber(carol.ID(), alice.Public(), bob.ID(), bob.Public()),
	} {
		if n == base {
			t.Errorf("changing %s does not change the safety number", name)
		}
		if len(n) != SafetyNumberDigits {
			t.Errorf("%s: %d digits", name, len(n))
		}
	}
	// Only the changed user's half moves.
	rotated := SafetyNumber(alice.ID(), alice2.Public(), bob.ID(), bob.Public())
	hb := safetyHalf(bob.ID(), bob.Public())
	if !strings.Contains(base, hb) || !strings.Contains(rotated, hb) {
		t.Fatalf("bob's half is not in both numbers")
	}
}

func TestFormatSafetyNumber(t *testing.T) {
	t.Parallel()
	n := SafetyNumber(testKey(t, "alice-2048").ID(), testKey(t, "alice-2048").Public(),
		testKey(t, "bob-2048").ID(), testKey(t, "bob-2048").Public())
	f := FormatSafetyNumber(n)
	groups := strings.Split(f, " ")
	if len(groups) != 12 {
		t.Fatalf("%q has %d groups, want 12", f, len(groups))
	}
	for _, g := range groups {
		if len(g) != 5 {
			t.Fatalf("%q has a group of %d digits", f, len(g))
		}
	}
	if strings.ReplaceAll(f, " ", "") != n || len(f) != 60+11 {
		t.Fatalf("formatting changed the digits: %q", f)
	}
	for in, want := range map[string]string{
		"":           "",
		"123":        "123",
		"12345":      "12345",
		"123456":     "12345 6",
		"1234567890": "12345 67890",
	} {
		if got := FormatSafetyNumber(in); got != want {
			t.Errorf("FormatSafetyNumber(%q) = %q, want %q", in, got, want)
		}
	}
}
