package directory

import (
	"strings"
	"testing"

	"github.com/parley-chat/parley/protocol"
)

// A chain through every fixture key size (2048 → 8192) verifies, and the
// record that carries it stays within MaxRecordSize or is refused for size
// when signed, never later.
func TestRecordLongChain(t *testing.T) {
	t.Parallel()
	names := []string{"bob-2048", "carol-2048", "alice-3072", "bob-3072", "carol-3072", "big-4096", "big-8192"}
	genesis := key(t, "alice-2048")
	var next []*protocol.PrivateKey
	for _, n := range names {
		next = append(next, key(t, n))
	}
	for n := 1; n <= len(next); n++ {
		var chain []*protocol.Rotation
		cur := genesis
		for i, k := range next[:n] {
			chain = append(chain, rotate(t, genesis.ID(), cur, k, uint64(i+1)))
			cur = k
		}
		in := input(t, genesis, 1)
		in.Prekey = prekey(t, cur)
		in.Genesis, in.Chain = genesis.Public(), chain
		r, err := NewRecord(cur, in, t0)
		if err != nil {
			checkErr(t, "NewRecord with a long chain", err, ErrTooLarge)
			t.Logf("%d links up to RSA-%d: refused for size", n, cur.Public().Bits())
			continue
		}
		t.Logf("%d links up to RSA-%d: %d bytes", n, cur.Public().Bits(), len(r.Marshal()))
		got, err := VerifyRecord(r.Marshal(), t0)
		if err != nil {
			t.Fatalf("%d links: %v", n, err)
		}
		if got.UserID() != genesis.ID() || !got.Key().Equal(cur.Public()) {
			t.Fatalf("%d links: user %s key %s", n, got.UserID(), got.Key())
		}
		if n == len(next) {
			// The longest chain with every list at its cap is over the
			// size limit: refused when signed.
			in.Relays = nil
			for i := range MaxRelays {
				in.Relays = append(in.Relays, "/dns4/"+strings.Repeat(string(rune('a'+i)), MaxRelaySize-13)+"/tcp/1")
			}
			_, err := NewRecord(cur, in, t0)
			checkErr(t, "NewRecord over MaxRecordSize", err, ErrTooLarge)
		}
	}
}

// Every label signed with an identity or device key is distinct, and none
// is a prefix of another (what is signed is label ‖ message).
func TestLabelsArePrefixFree(t *testing.T) {
	t.Parallel()
	labels := []string{protocol.LabelCard, protocol.LabelPrekey, protocol.LabelRotateOld, protocol.LabelRotateNew, LabelRecord, LabelDevice}
	for i, a := range labels {
		for j, b := range labels {
			if i != j && strings.HasPrefix(b, a) {
				t.Errorf("label %q is a prefix of %q", a, b)
			}
		}
	}
}
