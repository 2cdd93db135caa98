package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGoldenSignedPrekeys(t *testing.T) {
	goldenSetup(t)
	var manifest []goldenPrekey
	goldenReadJSON(t, &manifest, "prekeys", "prekeys.json")
	var owners []string
	for _, m := range manifest {
		owners = append(owners, m.Owner)
	}
	for _, want := range goldenPrekeyOwners {
		if !slices.Contains(owners, want) {
			t.Errorf("golden prekey of %s is missing", want)
		}
	}
	for _, m := range manifest {
		t.Run(m.Owner, func(t *testing.T) {
			owner := testKey(t, m.Owner)
			raw := goldenRead(t, "prekeys", m.SignedPrekey)
			sp, err := ParseSignedPrekey(raw)
			if err != nil {
				t.Fatalf("ParseSignedPrekey: %v", err)
			}
			if !bytes.Equal(sp.Marshal(), raw) {
				t.Error("ParseSignedPrekey(b).Marshal() != b")
			}
			if sp.ID != m.ID || hex.EncodeToString(sp.Public[:]) != m.PublicHex ||
				sp.NotBefore.Unix() != m.NotBefore || sp.NotAfter.Unix() != m.NotAfter || sp.Owner != owner.ID() {
				t.Errorf("signed prekey = {id %d, public %x, %d..%d, owner %s}, manifest %+v",
					sp.ID, sp.Public, sp.NotBefore.Unix(), sp.NotAfter.Unix(), sp.Owner, m)
			}
			at, err := time.Parse(time.RFC3339Nano, m.VerifyAt)
			if err != nil {
				t.Fatal(err)
			}
			if err := sp.Verify(owner.Public(), at); err != nil {
				t.Errorf("Verify with %s at %s: %v", m.Owner, m.VerifyAt, err)
			}
			if err := sp.Verify(owner.Public(), sp.NotAfter); !errors.Is(err, ErrExpired) {
				t.Errorf("Verify at not_after: %v, want ErrExpired", err)
			}
			if err := sp.Verify(testKey(t, "carol-2048").Public(), at); !errors.Is(err, ErrAuth) {
				t.Errorf("Verify with another key: %v, want ErrAuth", err)
			}

			// The private prekey file holds the same signed half.
			rawPriv := goldenRead(t, "prekeys", m.Prekey)
			pk, err := ParsePrekey(rawPriv)
			if err != nil {
				t.Fatalf("ParsePrekey: %v", err)
			}
			if !bytes.Equal(pk.Marshal(), rawPriv) {
				t.Error("ParsePrekey(b).Marshal() != b")
			}
			if !bytes.Equal(pk.Signed.Marshal(), raw) {
				t.Error("the prekey file's signed half differs from the signed-prekey file")
			}
		})
	}
}

func TestGoldenCards(t *testing.T) {
	goldenSetup(t)
	var manifest []goldenCard
	goldenReadJSON(t, &manifest, "cards", "cards.json")
	if len(manifest) != 2 {
		t.Fatalf("%d golden cards, want 2 (with and without prekey)", len(manifest))
	}
	var withPrekey, withoutPrekey bool
	for _, m := range manifest {
		withPrekey = withPrekey || m.PrekeyID != 0
		withoutPrekey = withoutPrekey || m.PrekeyID == 0
		t.Run(m.Name, func(t *testing.T) {
			uri := strings.TrimSuffix(string(goldenRead(t, "cards", m.URI)), "\n")
			c, err := ParseCardURI(uri)
			if err != nil {
				t.Fatalf("ParseCardURI: %v", err)
			}
			if c.URI() != uri {
				t.Error("ParseCardURI(s).URI() != s")
			}
			owner := testKey(t, m.Owner)
			if c.UserID.String() != m.UserID || c.UserID != owner.ID() || !c.Key.Equal(owner.Public()) {
				t.Errorf("card user %s key %s, want %s (%s)", c.UserID, c.Key, m.UserID, m.Owner)
			}
			if c.Name != m.CardName {
				t.Errorf("name = %q, want %q", c.Name, m.CardName)
			}
			var devices []string
			for _, d := range c.Devices {
				devices = append(devices, hex.EncodeToString(d))
			}
			if !slices.Equal(devices, m.DevicesHex) {
				t.Errorf("devices = %v, want %v", devices, m.DevicesHex)
			}
			if !slices.Equal(c.Addrs, m.Addrs) {
				t.Errorf("addrs = %q, want %q", c.Addrs, m.Addrs)
			}
			if c.IssuedAt.Unix() != m.IssuedAt {
				t.Errorf("issued at %d, want %d", c.IssuedAt.Unix(), m.IssuedAt)
			}
			switch {
			case m.PrekeyID == 0 && c.Prekey != nil:
				t.Errorf("card has prekey %d, want none", c.Prekey.ID)
			case m.PrekeyID != 0 && (c.Prekey == nil || c.Prekey.ID != m.PrekeyID):
				t.Errorf("card prekey = %v, want ID %d", c.Prekey, m.PrekeyID)
			}
			if c.Prekey != nil {
				if r := c.Recipient(goldenNow); r.Prekey == nil {
					t.Error("card prekey is not usable at the golden time")
				}
			}
		})
	}
	if !withPrekey || !withoutPrekey {
		t.Error("golden cards must include one with and one without a prekey")
	}
}
