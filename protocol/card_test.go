package protocol

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol/pb"
)

func TestCardRoundTrip(t *testing.T) {
	t.Parallel()
	alice := testKey(t, "alice-2048")
	pk := advPrekey(t, alice, advT0)
	for name, tc := range map[string]struct {
		devices [][]byte
		addrs   []string
		prekey  *SignedPrekey
	}{
		"bare":        {nil, nil, nil},
		"with prekey": {[][]byte{advPeerID(1)}, advAddrs, &pk.Signed},
		"no prekey":   {[][]byte{advPeerID(1), advPeerID(2)}, advAddrs[:1], nil},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := NewCard(alice, "Alice Liddell", tc.devices, tc.addrs, tc.prekey, advT0)
			if err != nil {
				t.Fatalf("NewCard: %v", err)
			}
			if c.UserID != alice.ID() || !c.Key.Equal(alice.Public()) || !c.IssuedAt.Equal(time.Unix(advT0.Unix(), 0)) {
				t.Fatalf("NewCard fields: %+v", c)
			}
			uri := c.URI()
			if !strings.HasPrefix(uri, CardURIScheme) {
				t.Fatalf("URI %q lacks the scheme", uri[:20])
			}
			got, err := ParseCardURI(uri)
			if err != nil {
				t.Fatalf("ParseCardURI: %v", err)
			}
			advCardsEqual(t, got, c)
			if got.URI() != uri {
				t.Fatalf("URI(ParseCardURI(uri)) != uri")
			}
			fromBytes, err := ParseCard(c.Marshal())
			if err != nil {
				t.Fatalf("ParseCard: %v", err)
			}
			advCardsEqual(t, fromBytes, c)
		})
	}
}

// A card at the default key size, with two devices, four addresses and a
// prekey, fits in a QR code: version 40 at error correction M holds 2331
// bytes in byte mode.
func TestCardURIFitsQRCode(t *testing.T) {
	t.Parallel()
	alice := testKey(t, "alice-3072")
	pk := advPrekey(t, alice, advT0)
	devices := [][]byte{advPeerID(1), advPeerID(2)}
	if len(devices[0]) != 38 || len(advRelayPeer) != 52 {
		t.Fatalf("fixture sizes: device %d, relay peer ID %d", len(devices[0]), len(advRelayPeer))
	}
	const qrV40M = 2331
	for _, name := range []string{"Alice Liddell", strings.Repeat("é", MaxNameSize/2)} {
		c, err := NewCard(alice, name, devices, advAddrs, &pk.Signed, advT0)
		if err != nil {
			t.Fatalf("NewCard: %v", err)
		}
		uri := c.URI()
		t.Logf("card URI at RSA-3072, name of %d bytes, 2 devices, 4 addrs, prekey: %d characters (QR v40-M holds %d)",
			len(name), len(uri), qrV40M)
		if len(uri) > qrV40M {
			t.Fatalf("card URI of %d characters does not fit a QR code (%d)", len(uri), qrV40M)
		}
		if _, err := ParseCardURI(uri); err != nil {
			t.Fatalf("ParseCardURI: %v", err)
		}
	}
}

func TestCardTampered(t *testing.T) {
	t.Parallel()
	alice := testKey(t, "alice-2048")
	pk, pk2 := advPrekey(t, alice, advT0), advPrekey(t, alice, advT0)
	c, err := NewCard(alice, "Alice", [][]byte{advPeerID(1), advPeerID(2)}, advAddrs, &pk.Signed, advT0)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := NewCard(alice, "Alice", nil, nil, nil, advT0)
	if err != nil {
		t.Fatal(err)
	}
	raw, rawBare := c.Marshal(), bare.Marshal()
	for _, tc := range []struct {
		name string
		raw  []byte
		f    func(c *Card)
	}{
		{"name", raw, func(c *Card) { c.Name = "Alicf" }},
		{"name on bare card", rawBare, func(c *Card) { c.Name = "Mallory" }},
		{"addr changed", raw, func(c *Card) { c.Addrs[0] = "/ip4/198.51.100.66/tcp/7734" }},
		{"addr added", raw, func(c *Card) { c.Addrs = append(c.Addrs, "/ip4/198.51.100.66/tcp/1") }},
		{"addr removed", raw, func(c *Card) { c.Addrs = c.Addrs[1:] }},
		{"addrs reordered", raw, func(c *Card) { c.Addrs[0], c.Addrs[1] = c.Addrs[1], c.Addrs[0] }},
		{"addr on bare card", rawBare, func(c *Card) { c.Addrs = []string{"/ip4/198.51.100.66/tcp/1"} }},
		{"device changed", raw, func(c *Card) { c.Devices[1] = advPeerID(9) }},
		{"device removed", raw, func(c *Card) { c.Devices = c.Devices[:1] }},
		{"device added", raw, func(c *Card) { c.Devices = append(c.Devices, advPeerID(3)) }},
		// The two lists have the same encoding shape: moving an item from one
		// to the other must not keep the signature valid.
		{"addr moved to devices", raw, func(c *Card) {
			c.Devices = append(c.Devices, []byte(c.Addrs[3]))
			c.Addrs = c.Addrs[:3]
		}},
		{"issued at", raw, func(c *Card) { c.IssuedAt = c.IssuedAt.Add(time.Second) }},
		{"signature", raw, func(c *Card) { c.Signature = advFlip(c.Signature, 0, 1) }},
		{"signature truncated", raw, func(c *Card) { c.Signature = c.Signature[:len(c.Signature)-1] }},
		{"prekey swapped for another valid one", raw, func(c *Card) { c.Prekey = &pk2.Signed }},
		{"prekey removed", raw, func(c *Card) { c.Prekey = nil }},
		{"prekey added", rawBare, func(c *Card) { c.Prekey = &pk.Signed }},
		{"prekey public", raw, func(c *Card) { p := *c.Prekey; p.Public[0] ^= 1; c.Prekey = &p }},
		{"prekey expiry extended", raw, func(c *Card) {
			p := *c.Prekey
			p.NotAfter = p.NotAfter.Add(365 * 24 * time.Hour)
			c.Prekey = &p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCard(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			tc.f(c)
			b := c.Marshal()
			if got, err := ParseCard(b); !errors.Is(err, ErrAuth) || got != nil {
				t.Fatalf("ParseCard = %v, %v; want nil, ErrAuth", got, err)
			}
			uri := CardURIScheme + cardEncoding.EncodeToString(b)
			if got, err := ParseCardURI(uri); !errors.Is(err, ErrAuth) || got != nil {
				t.Fatalf("ParseCardURI = %v, %v; want nil, ErrAuth", got, err)
			}
		})
	}
}

func TestCardKeyMustHashToUserID(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	c, err := NewCard(alice, "Alice", nil, nil, nil, advT0)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(c *Card){
		"user ID changed":             func(c *Card) { c.UserID[0] ^= 1 },
		"user ID is bob's":            func(c *Card) { c.UserID = bob.ID() },
		"key is bob's":                func(c *Card) { c.Key = bob.Public() },
		"user ID and key are bob's":   func(c *Card) { c.UserID, c.Key = bob.ID(), bob.Public() },
		"key of another size (alice)": func(c *Card) { c.Key = testKey(t, "alice-3072").Public() },
	} {
		cc := *c
		f(&cc)
		if got, err := ParseCard(cc.Marshal()); !errors.Is(err, ErrAuth) || got != nil {
			t.Errorf("%s: ParseCard = %v, %v; want nil, ErrAuth", name, got, err)
		}
	}
	// A card carrying an unacceptable key is refused for the key size.
	weak, err := x509.ParsePKCS8PrivateKey(testKeyDER(t, "weak-1024.pem"))
	if err != nil {
		t.Fatal(err)
	}
	weakDER, err := x509.MarshalPKIXPublicKey(&weak.(*rsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{
		"1024 bits":  weakDER,
		"16384 bits": testKeyDER(t, "huge-16384.pub.pem"),
	} {
		id := ID(sha256.Sum256(der)) // the user ID the key hashes to
		m := &pb.Card{Version: CardVersion, UserId: id[:], Name: "Alice", PublicKey: der, IssuedAt: advT0.Unix(), Signature: c.Signature}
		if got, err := ParseCard(marshal(m)); !errors.Is(err, ErrKeySize) || got != nil {
			t.Errorf("%s key: ParseCard = %v, %v; want nil, ErrKeySize", name, got, err)
		}
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for _, good := range []string{"a", "Alice", "Alice Liddell", "Ålice 🙂", "李", strings.Repeat("x", MaxNameSize), strings.Repeat("é", MaxNameSize/2)} {
		if err := CheckName(good); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", good, err)
		}
	}
	for name, bad := range map[string]string{
		"empty":            "",
		"65 bytes":         strings.Repeat("x", MaxNameSize+1),
		"65 bytes UTF-8":   strings.Repeat("é", MaxNameSize/2) + "x",
		"NUL":              "a\x00b",
		"newline":          "a\nb",
		"tab":              "a\tb",
		"DEL":              "a\x7fb",
		"C1 control (NEL)": "a\u0085b",
		"escape":           "\x1b[31mred",
		"invalid UTF-8":    "a\xffb",
		"truncated UTF-8":  "caf\xc3",
		"leading space":    " alice",
		"trailing space":   "alice ",
		"leading tab":      "\talice",
		"only spaces":      "   ",
		"trailing NBSP":    "alice\u00a0",
	} {
		if err := CheckName(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: CheckName(%q) = %v, want ErrMalformed", name, bad, err)
		}
	}
}

func TestNewCardRejects(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	devices := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = advPeerID(byte(i))
		}
		return out
	}
	addrs := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = advAddrs[i%len(advAddrs)]
		}
		return out
	}
	for name, tc := range map[string]struct {
		name    string
		devices [][]byte
		addrs   []string
	}{
		"empty name":          {"", nil, nil},
		"65-byte name":        {strings.Repeat("x", 65), nil, nil},
		"control char":        {"ali\x07ce", nil, nil},
		"invalid UTF-8":       {"ali\xc0ce", nil, nil},
		"surrounding spaces":  {" alice ", nil, nil},
		"too many devices":    {"Alice", devices(MaxCardDevices + 1), nil},
		"too many addrs":      {"Alice", nil, addrs(MaxCardAddrs + 1)},
		"empty device":        {"Alice", [][]byte{{}}, nil},
		"device too long":     {"Alice", [][]byte{make([]byte, MaxDeviceSize+1)}, nil},
		"empty addr":          {"Alice", nil, []string{""}},
		"addr too long":       {"Alice", nil, []string{"/dns4/" + strings.Repeat("a", MaxAddrSize)}},
		"addr invalid UTF-8":  {"Alice", nil, []string{"/dns4/\xff/tcp/1"}},
		"addr among good one": {"Alice", nil, []string{advAddrs[0], ""}},
	} {
		if c, err := NewCard(alice, tc.name, tc.devices, tc.addrs, nil, advT0); !errors.Is(err, ErrMalformed) || c != nil {
			t.Errorf("%s: NewCard = %v, %v; want nil, ErrMalformed", name, c, err)
		}
	}
	// At the limits: accepted, and parses back.
	c, err := NewCard(alice, strings.Repeat("x", MaxNameSize), devices(MaxCardDevices), addrs(MaxCardAddrs), nil, advT0)
	if err != nil {
		t.Fatalf("NewCard at the limits: %v", err)
	}
	if _, err := ParseCardURI(c.URI()); err != nil {
		t.Fatalf("ParseCardURI of a card at the limits: %v", err)
	}
	// A prekey signed by someone else.
	if c, err := NewCard(alice, "Alice", nil, nil, &advPrekey(t, bob, advT0).Signed, advT0); !errors.Is(err, ErrAuth) || c != nil {
		t.Errorf("NewCard with bob's prekey = %v, %v; want nil, ErrAuth", c, err)
	}
	// ParseCard applies the same field rules (checked before the signature).
	bad := *c
	bad.Name = " x"
	if got, err := ParseCard(bad.Marshal()); !errors.Is(err, ErrMalformed) || got != nil {
		t.Errorf("ParseCard with a bad name = %v, %v; want nil, ErrMalformed", got, err)
	}
	bad = *c
	bad.Devices = append(devices(MaxCardDevices), advPeerID(99))
	if got, err := ParseCard(bad.Marshal()); !errors.Is(err, ErrMalformed) || got != nil {
		t.Errorf("ParseCard with too many devices = %v, %v; want nil, ErrMalformed", got, err)
	}
}

func TestParseCardURIForm(t *testing.T) {
	t.Parallel()
	alice := testKey(t, "alice-2048")
	c, err := NewCard(alice, "Alice", [][]byte{advPeerID(1)}, advAddrs[:2], nil, advT0)
	if err != nil {
		t.Fatal(err)
	}
	uri := c.URI()
	payload := uri[len(CardURIScheme):]
	// The scheme is case-insensitive and surrounding white space is ignored
	// (links get pasted).
	for _, ok := range []string{
		uri,
		"PARLEY:CARD/" + payload,
		"Parley:Card/" + payload,
		"  " + uri + "\n",
		"\t" + uri,
	} {
		got, err := ParseCardURI(ok)
		if err != nil {
			t.Fatalf("ParseCardURI(%.20q…) = %v", ok, err)
		}
		if got.UserID != alice.ID() {
			t.Fatalf("wrong card")
		}
	}
	for name, bad := range map[string]string{
		"empty":           "",
		"scheme only":     CardURIScheme,
		"no scheme":       payload,
		"other scheme":    "parley:kard/" + payload,
		"URL form":        "parley://card/" + payload,
		"https":           "https://parley.example/card/" + payload,
		"missing slash":   "parley:card" + payload,
		"padded base64":   uri + "==",
		"std base64 +":    CardURIScheme + strings.ReplaceAll(strings.ReplaceAll(payload, "-", "+"), "_", "/") + "+/",
		"bad character":   uri[:40] + "!" + uri[41:],
		"inner space":     uri[:40] + " " + uri[40:],
		"truncated":       uri[:len(uri)-10],
		"garbage payload": CardURIScheme + "AAAA",
	} {
		if got, err := ParseCardURI(bad); !errors.Is(err, ErrMalformed) || got != nil {
			t.Errorf("%s: ParseCardURI = %v, %v; want nil, ErrMalformed", name, got, err)
		}
	}
	// Oversized: refused before decoding, whatever the content.
	limit := len(CardURIScheme) + cardEncoding.EncodedLen(MaxCardSize)
	huge := CardURIScheme + strings.Repeat("A", limit-len(CardURIScheme)+1)
	if got, err := ParseCardURI(huge); !errors.Is(err, ErrTooLarge) || got != nil {
		t.Errorf("oversized link: ParseCardURI = %v, %v; want nil, ErrTooLarge", got, err)
	}
	if got, err := ParseCardURI(strings.Repeat("x", 1<<20)); !errors.Is(err, ErrTooLarge) || got != nil {
		t.Errorf("1 MiB link: ParseCardURI = %v, %v; want nil, ErrTooLarge", got, err)
	}
	// At the limit the link is decoded, and the card is judged on content.
	atLimit := CardURIScheme + strings.Repeat("A", limit-len(CardURIScheme))
	if _, err := ParseCardURI(atLimit); !errors.Is(err, ErrMalformed) {
		t.Errorf("link at the size limit: %v, want ErrMalformed", err)
	}
	if got, err := ParseCard(make([]byte, MaxCardSize+1)); !errors.Is(err, ErrTooLarge) || got != nil {
		t.Errorf("oversized card: ParseCard = %v, %v; want nil, ErrTooLarge", got, err)
	}
}

func TestParseCardRejectsForm(t *testing.T) {
	t.Parallel()
	alice := testKey(t, "alice-2048")
	c, err := NewCard(alice, "Alice", nil, nil, nil, advT0)
	if err != nil {
		t.Fatal(err)
	}
	good := &pb.Card{
		Version: CardVersion, UserId: c.UserID[:], Name: c.Name, PublicKey: c.Key.Bytes(),
		IssuedAt: c.IssuedAt.Unix(), Signature: c.Signature,
	}
	if _, err := ParseCard(marshal(good)); err != nil {
		t.Fatalf("control: %v", err)
	}
	raw := c.Marshal()
	for name, b := range map[string][]byte{
		"version 2":       marshal(&pb.Card{Version: 2, UserId: good.UserId, Name: good.Name, PublicKey: good.PublicKey, IssuedAt: good.IssuedAt, Signature: good.Signature}),
		"version 0":       marshal(&pb.Card{UserId: good.UserId, Name: good.Name, PublicKey: good.PublicKey, IssuedAt: good.IssuedAt, Signature: good.Signature}),
		"short user ID":   marshal(&pb.Card{Version: 1, UserId: good.UserId[:31], Name: good.Name, PublicKey: good.PublicKey, IssuedAt: good.IssuedAt, Signature: good.Signature}),
		"no key":          marshal(&pb.Card{Version: 1, UserId: good.UserId, Name: good.Name, IssuedAt: good.IssuedAt, Signature: good.Signature}),
		"malformed key":   marshal(&pb.Card{Version: 1, UserId: good.UserId, Name: good.Name, PublicKey: good.PublicKey[1:], IssuedAt: good.IssuedAt, Signature: good.Signature}),
		"unknown field":   append(bytes.Clone(raw), 0x50, 0x01),
		"duplicate field": append(bytes.Clone(raw), raw[:2]...),
		"truncated":       raw[:len(raw)-1],
		"empty prekey":    marshal(&pb.Card{Version: 1, UserId: good.UserId, Name: good.Name, PublicKey: good.PublicKey, Prekey: &pb.SignedPrekey{}, IssuedAt: good.IssuedAt, Signature: good.Signature}),
	} {
		if got, err := ParseCard(b); !errors.Is(err, ErrMalformed) || got != nil {
			t.Errorf("%s: ParseCard = %v, %v; want nil, ErrMalformed", name, got, err)
		}
	}
}

// Bob signs, with his own key, a card that claims alice's user ID. The
// signature is valid; the key does not hash to the user ID.
func TestCardClaimingAnotherUsersID(t *testing.T) {
	t.Parallel()
	alice, bob := testKey(t, "alice-2048"), testKey(t, "bob-2048")
	c, err := NewCard(bob, "Alice", nil, nil, nil, advT0)
	if err != nil {
		t.Fatal(err)
	}
	c.UserID = alice.ID()
	if c.Signature, err = bob.Sign(LabelCard, c.canonical()); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseCard(c.Marshal()); !errors.Is(err, ErrAuth) || got != nil {
		t.Fatalf("ParseCard = %v, %v; want nil, ErrAuth", got, err)
	}
}

// A card signed by alice that carries a prekey signed by someone else (here
// carol) is refused: the prekey must be the card owner's.
func TestCardWithAnotherOwnersPrekey(t *testing.T) {
	t.Parallel()
	alice, carol := testKey(t, "alice-2048"), testKey(t, "carol-2048")
	c, err := NewCard(alice, "Alice", nil, nil, nil, advT0)
	if err != nil {
		t.Fatal(err)
	}
	carols := advPrekey(t, carol, advT0)
	for name, sp := range map[string]SignedPrekey{
		"carol's prekey": carols.Signed,
		// The owner field rewritten to alice's key ID: carol's signature
		// no longer matches.
		"carol's prekey claiming alice": func() SignedPrekey { p := carols.Signed; p.Owner = alice.ID(); return p }(),
	} {
		cc := *c
		cc.Prekey = &sp
		if cc.Signature, err = alice.Sign(LabelCard, cc.canonical()); err != nil {
			t.Fatal(err)
		}
		if got, err := ParseCard(cc.Marshal()); !errors.Is(err, ErrAuth) || got != nil {
			t.Errorf("%s: ParseCard = %v, %v; want nil, ErrAuth", name, got, err)
		}
	}
}
