package directory

import (
	"bytes"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	alice := key(t, "alice-2048")
	in := input(t, alice, 7)
	r := mustRecord(t, alice, in, t0.Add(500*time.Millisecond))
	b := r.Marshal()
	got, err := VerifyRecord(b, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("VerifyRecord: %v", err)
	}
	if !bytes.Equal(got.Marshal(), b) || got.UserID() != alice.ID() || got.Name() != in.Name ||
		!got.Key().Equal(alice.Public()) || !got.Genesis().Equal(alice.Public()) || len(got.Chain()) != 0 ||
		got.Seq() != 7 || !got.IssuedAt().Equal(t0) || !got.ExpiresAt().Equal(t0.Add(24*time.Hour)) ||
		len(got.Devices()) != 2 || got.Devices()[1].Peer != in.Devices[1].Peer ||
		len(got.Relays()) != 2 || got.Relays()[0] != testRelays[0] ||
		got.Prekey() == nil || got.Prekey().ID != in.Prekey.ID || got.Fingerprint() != alice.ID().Fingerprint() {
		t.Fatalf("round trip changed the record")
	}
	if err := (Validator{Now: func() time.Time { return t0 }}).Validate(Key(alice.ID()), b); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
