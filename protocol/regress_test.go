package protocol

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Regressions for bugs found in review. Each failed before its fix.

// A prekey lifetime under a second truncated to NotAfter == NotBefore: the
// prekey could never be used, parsed or reloaded.
func TestRegressPrekeyLifetimeUnderASecond(t *testing.T) {
	bob := testKey(t, "bob-2048")
	_, err := GeneratePrekey(bob, advT0, 500*time.Millisecond)
	advCheckErr(t, "GeneratePrekey(500ms)", err, ErrMalformed)
	pk, err := GeneratePrekey(bob, advT0, time.Second)
	if err != nil {
		t.Fatalf("GeneratePrekey(1s): %v", err)
	}
	if _, err := ParsePrekey(pk.Marshal()); err != nil {
		t.Fatalf("a 1 s prekey must reload: %v", err)
	}
}

// NewCard signed cards larger than ParseCard accepts.
func TestRegressCardTooLargeToParse(t *testing.T) {
	alice := testKey(t, "alice-2048")
	var devs [][]byte
	for i := range MaxCardDevices {
		devs = append(devs, bytes.Repeat([]byte{byte(i + 1)}, MaxDeviceSize))
	}
	var addrs []string
	for i := range MaxCardAddrs {
		addrs = append(addrs, "/dns4/"+strings.Repeat(string(rune('a'+i)), MaxAddrSize-15)+"/tcp/1")
	}
	_, err := NewCard(alice, "Alice", devs, addrs, nil, advT0)
	advCheckErr(t, "NewCard(oversized)", err, ErrTooLarge)
}

// The last base32 character of an ID has unused bits; sixteen spellings
// decoded to the same ID.
func TestRegressIDSpellingsAreUnique(t *testing.T) {
	id := testKey(t, "alice-2048").ID()
	s := id.String()
	same := 0
	for _, c := range "abcdefghijklmnopqrstuvwxyz234567" {
		alt := s[:len(s)-1] + string(c)
		got, err := ParseID(alt)
		if err != nil {
			continue
		}
		if got.String() != alt {
			t.Fatalf("ParseID(%q) = %s: accepted a non-canonical spelling", alt, got)
		}
		if got == id {
			same++
		}
	}
	if same != 1 {
		t.Fatalf("%d spellings parse to %s, want exactly 1", same, s)
	}
	if got, err := ParseID(strings.ToUpper(s)); err != nil || got != id {
		t.Fatalf("upper-case spelling: %v", err)
	}
}

// A prekey callback that returned a Prekey without its private half made
// Open panic.
func TestRegressPrekeyWithoutPrivateHalf(t *testing.T) {
	c := advNewCast(t)
	raw := advSeal(t, c.alice, c.bob, c.pk, KindText, []byte("hi"), advT0).Marshal()
	o := c.bobOpener()
	o.Prekey = func(uint64) (*Prekey, error) { return &Prekey{Signed: c.pk.Signed}, nil }
	advOpenFails(t, o, raw, ErrUnknownPrekey)
}

// Card links were not strict base64: one card had many links.
func TestRegressCardLinkIsStrict(t *testing.T) {
	card, err := NewCard(testKey(t, "alice-2048"), "Alice", nil, nil, nil, advT0)
	if err != nil {
		t.Fatal(err)
	}
	uri := card.URI()
	if _, err := ParseCardURI(uri); err != nil {
		t.Fatal(err)
	}
	mid := len(CardURIScheme) + 10
	for name, bad := range map[string]string{
		"newline":      uri[:mid] + "\n" + uri[mid:],
		"carriage":     uri[:mid] + "\r" + uri[mid:],
		"tail bits":    uri[:len(uri)-1] + advOtherTail(uri[len(uri)-1]),
		"padding":      uri + "==",
		"bad alphabet": uri[:mid] + "+" + uri[mid+1:],
	} {
		if _, err := ParseCardURI(bad); err == nil {
			t.Errorf("%s: ParseCardURI accepted a second link for the same card", name)
		}
	}
}

// advOtherTail returns a base64url character that differs from c only in
// the bits a final character may leave unused.
func advOtherTail(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}
