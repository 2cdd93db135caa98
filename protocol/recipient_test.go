package protocol

import (
	"testing"
	"time"
)

// NewRecipient checks the prekey once; Seal trusts that check only for the
// exact key and prekey it was made for.
func TestNewRecipientChecksPrekeyOnce(t *testing.T) {
	c := advNewCast(t)
	r, err := NewRecipient(c.bob.ID(), c.bob.Public(), &c.pk.Signed, advT0)
	if err != nil {
		t.Fatalf("NewRecipient: %v", err)
	}
	e, err := Seal(testSender(c.alice), r, KindText, []byte("hi"), advT0)
	if err != nil || e.Suite != SuiteRSAX25519 {
		t.Fatalf("Seal: suite %v, err %v", e.Suite, err)
	}
	advOpenOK(t, c.bobOpener(), e.Marshal())

	// Still checked for validity at each Seal.
	_, err = Seal(testSender(c.alice), r, KindText, nil, c.pk.Signed.NotAfter)
	advCheckErr(t, "Seal after the prekey expired", err, ErrExpired)

	// A prekey swapped in after the check is verified in full.
	forged := c.pk.Signed
	forged.Public[0] ^= 1
	r2 := r
	r2.Prekey = &forged
	_, err = Seal(testSender(c.alice), r2, KindText, nil, advT0)
	advCheckErr(t, "Seal with a swapped, forged prekey", err, ErrAuth)

	// So is the same prekey under a different key.
	r3 := r
	r3.Key = c.carol.Public()
	_, err = Seal(testSender(c.alice), r3, KindText, nil, advT0)
	advCheckErr(t, "Seal with the key swapped", err, ErrAuth)

	// NewRecipient itself refuses forged, foreign and expired prekeys.
	_, err = NewRecipient(c.bob.ID(), c.bob.Public(), &forged, advT0)
	advCheckErr(t, "NewRecipient(forged)", err, ErrAuth)
	_, err = NewRecipient(c.bob.ID(), c.bob.Public(), &c.carolPK.Signed, advT0)
	advCheckErr(t, "NewRecipient(carol's prekey)", err, ErrAuth)
	_, err = NewRecipient(c.bob.ID(), c.bob.Public(), &c.pk.Signed, advT0.Add(31*24*time.Hour))
	advCheckErr(t, "NewRecipient(expired)", err, ErrExpired)
	if r, err := NewRecipient(c.bob.ID(), c.bob.Public(), nil, advT0); err != nil || r.Prekey != nil {
		t.Fatalf("NewRecipient without prekey: %+v, %v", r, err)
	}
}
