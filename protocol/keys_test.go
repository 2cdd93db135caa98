package protocol

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Test keys live in testdata/keys as PKCS #8 PEM files, generated once with
// openssl (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:N`). They
// are test fixtures, never used outside tests. Go 1.26 ignores the random
// reader in RSA key generation, so fixed keys must come from files.
//
// Names: alice-2048, alice-3072, bob-2048, bob-3072, carol-2048, carol-3072,
// big-4096, big-8192 (accepted sizes); weak-1024 (too small);
// huge-16384 (too large; huge-16384.pub.pem is its public key).

var testKeys sync.Map // name → *PrivateKey

// testKey returns the named fixture key, parsed once per test binary.
func testKey(tb testing.TB, name string) *PrivateKey {
	tb.Helper()
	if k, ok := testKeys.Load(name); ok {
		return k.(*PrivateKey)
	}
	k, err := ParsePrivateKey(testKeyDER(tb, name+".pem"))
	if err != nil {
		tb.Fatalf("parsing fixture key %s: %v", name, err)
	}
	testKeys.Store(name, k)
	return k
}

// testKeyDER returns the DER bytes inside the named PEM file of testdata/keys.
func testKeyDER(tb testing.TB, file string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", file))
	if err != nil {
		tb.Fatalf("reading fixture key: %v", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatalf("fixture %s is not PEM", file)
	}
	return blk.Bytes
}

// testSender and testRecipient build Seal arguments from fixture keys.
func testSender(k *PrivateKey) Sender { return Sender{UserID: k.ID(), Key: k} }

func testRecipient(k *PrivateKey, pk *Prekey) Recipient {
	r := Recipient{UserID: k.ID(), Key: k.Public()}
	if pk != nil {
		r.Prekey = &pk.Signed
	}
	return r
}

// testOpener returns an Opener for me that trusts exactly the given senders
// and knows exactly the given prekeys.
func testOpener(me *PrivateKey, senders []*PrivateKey, prekeys ...*Prekey) *Opener {
	return &Opener{
		UserID: me.ID(),
		Key:    me,
		SenderKey: func(user, key ID) (*PublicKey, error) {
			for _, s := range senders {
				if s.ID() == user {
					return s.Public(), nil
				}
			}
			return nil, ErrUnknownSender
		},
		Prekey: func(id uint64) (*Prekey, error) {
			for _, p := range prekeys {
				if p.ID() == id {
					return p, nil
				}
			}
			return nil, ErrUnknownPrekey
		},
	}
}
