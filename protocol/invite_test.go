package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func testInvite(t *testing.T) *Invite {
	t.Helper()
	var user ID
	user[0], user[31] = 1, 2
	dev := bytes.Repeat([]byte{0xd}, 38)                                                             // an Ed25519 peer ID is 38 bytes
	addrs := [][]byte{{0x04, 127, 0, 0, 1, 0x06, 0x1c, 0xa6}, {0x04, 10, 0, 0, 7, 0x06, 0x1c, 0xa6}} // /ip4/…/tcp/7334
	iv, err := NewInvite(user, DeriveInviteSecret([]byte("device seed")), dev, addrs)
	if err != nil {
		t.Fatal(err)
	}
	return iv
}

func TestInviteRoundTrip(t *testing.T) {
	iv := testInvite(t)
	uri := iv.URI()
	if !strings.HasPrefix(uri, InviteURIScheme) || !IsInviteURI(uri) || IsInviteURI("parley:card/AAAA") {
		t.Fatalf("URI %q", uri)
	}
	// The form an RSA-3072 user's invite has: short enough for a small QR code.
	if len(uri) > 200 {
		t.Fatalf("invite link of %d characters", len(uri))
	}
	got, err := ParseInviteURI("  " + strings.ToUpper(uri[:len(InviteURIScheme)]) + uri[len(InviteURIScheme):] + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != iv.UserID || got.Secret != iv.Secret || !bytes.Equal(got.Device, iv.Device) || len(got.Addrs) != 2 ||
		!bytes.Equal(got.Addrs[1], iv.Addrs[1]) {
		t.Fatalf("parsed %+v, want %+v", got, iv)
	}
	if s := DeriveInviteSecret([]byte("device seed")); s != iv.Secret || s == DeriveInviteSecret([]byte("other")) {
		t.Fatal("DeriveInviteSecret is not a function of its seed")
	}
}

func TestInviteMalformed(t *testing.T) {
	raw := testInvite(t).Marshal()
	for name, b := range map[string][]byte{
		"empty":          nil,
		"version 2":      append([]byte{2}, raw[1:]...),
		"cut short":      raw[:len(raw)-1],
		"trailing byte":  append(bytes.Clone(raw), 0),
		"no device":      append(append(bytes.Clone(raw[:1+IDSize+InviteSecretSize]), 0), 0),
		"three addrs":    append(append(bytes.Clone(raw[:1+IDSize+InviteSecretSize+1+38]), 3), raw[1+IDSize+InviteSecretSize+1+38+1:]...),
		"too large":      make([]byte, maxInviteSize+1),
		"zero user":      append(append([]byte{1}, make([]byte, IDSize)...), raw[1+IDSize:]...),
		"empty address":  append(bytes.Clone(raw[:1+IDSize+InviteSecretSize+1+38]), 1, 0),
		"address length": append(bytes.Clone(raw[:1+IDSize+InviteSecretSize+1+38]), 1, 200),
	} {
		if _, err := ParseInvite(b); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	for _, s := range []string{"", "parley:invite/", "parley:invite/!!", "parley:card/" + testInvite(t).URI()[len(InviteURIScheme):],
		InviteURIScheme + strings.Repeat("A", 400), testInvite(t).URI()[:40] + "\n" + testInvite(t).URI()[40:]} {
		if _, err := ParseInviteURI(s); err == nil {
			t.Errorf("ParseInviteURI(%.40q) = nil error", s)
		}
	}
	if _, err := NewInvite(ID{1}, InviteSecret{}, []byte{1}, make([][]byte, 3)); !errors.Is(err, ErrMalformed) {
		t.Errorf("NewInvite with three addresses: %v", err)
	}
}

func TestCardFrames(t *testing.T) {
	iv := testInvite(t)
	var buf bytes.Buffer
	if err := WriteCardRequest(&buf, &CardRequest{UserID: iv.UserID, Secret: iv.Secret}); err != nil {
		t.Fatal(err)
	}
	req, err := ReadCardRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if !req.Matches(iv.UserID, iv.Secret) {
		t.Fatal("request does not match its own invite")
	}
	wrong := iv.Secret
	wrong[11] ^= 1
	if req.Matches(iv.UserID, wrong) || req.Matches(ID{9}, iv.Secret) {
		t.Fatal("request matches another secret or user")
	}
	for name, frame := range map[string][]byte{
		"short": {5, 1, 2, 3, 4, 5},
		"long":  append([]byte{cardRequestSize + 1}, make([]byte, cardRequestSize+1)...),
		"v2":    append([]byte{cardRequestSize, 2}, make([]byte, cardRequestSize-1)...),
	} {
		if _, err := ReadCardRequest(bufio.NewReader(bytes.NewReader(frame))); err == nil {
			t.Errorf("ReadCardRequest(%s) = nil error", name)
		}
	}

	buf.Reset()
	if err := WriteCardResponse(&buf, CardOK, []byte("card")); err != nil {
		t.Fatal(err)
	}
	if err := WriteCardResponse(&buf, CardRefused, []byte("not sent")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&buf)
	if code, card, err := ReadCardResponse(br); err != nil || code != CardOK || string(card) != "card" {
		t.Fatalf("ok response: %v %q %v", code, card, err)
	}
	if code, card, err := ReadCardResponse(br); err != nil || code != CardRefused || len(card) != 0 {
		t.Fatalf("refused response: %v %q %v", code, card, err)
	}
	for name, frame := range map[string][]byte{
		"empty":             {0},
		"ok without a card": {1, 0},
		"refused with body": {2, 1, 9},
		"unknown code":      {1, 7},
	} {
		if _, _, err := ReadCardResponse(bufio.NewReader(bytes.NewReader(frame))); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadCardResponse(%s): %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParseInvite(f *testing.F) {
	f.Add(testInviteBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		iv, err := ParseInvite(b)
		if err != nil {
			return
		}
		if !bytes.Equal(iv.Marshal(), b) {
			t.Fatalf("ParseInvite accepted a non-canonical encoding")
		}
	})
}

func testInviteBytes() []byte {
	iv := &Invite{UserID: ID{1}, Device: []byte{1, 2, 3}, Addrs: [][]byte{{4, 127, 0, 0, 1}}}
	return iv.Marshal()
}

// TestInviteGolden pins the short invite's encoding and the secret's
// derivation (checked against an independent Python encoding:
// hmac.new(seed, b"parley/v1/invite-secret", sha256), and the byte layout
// of invite.go).
func TestInviteGolden(t *testing.T) {
	const (
		wantSecret = "818d1402d6e63c045c640532"
		wantURI    = "parley:invite/AQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACgY0UAtbmPARcZAUyJg0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NAggEfwAAAQYcpggECgAABwYcpg"
	)
	s := DeriveInviteSecret([]byte("device seed"))
	if got := fmt.Sprintf("%x", s[:]); got != wantSecret {
		t.Errorf("DeriveInviteSecret = %s, want %s", got, wantSecret)
	}
	if got := testInvite(t).URI(); got != wantURI {
		t.Errorf("URI = %s\nwant  %s", got, wantURI)
	}
}
