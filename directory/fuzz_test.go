package directory

import (
	"bytes"
	"errors"
	"testing"

	"github.com/parley-chat/parley/protocol"
)

// The fuzz seeds come from goldenFiles.

// FuzzParseRecord: ParseRecord never panics, its failures wrap a sentinel,
// what it accepts is the one canonical encoding, and Verify of anything but
// a golden record fails (nothing else is signed by a fixture key). The
// seeds are the golden records (fixed bytes: seeds made at setup would
// differ between fuzzing processes, RSA-PSS being randomised). Fuzz with
//
//	go test -run '^$' -fuzz '^FuzzParseRecord$' -fuzztime 30s -fuzzminimizetime 3s ./directory/
func FuzzParseRecord(f *testing.F) {
	files, _ := goldenFiles(f)
	var seeds [][]byte
	for _, b := range files {
		seeds = append(seeds, b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
		f.Add(append(bytes.Clone(s), 0))
		for _, i := range []int{0, 3, len(s) / 3, len(s) - 1} {
			c := bytes.Clone(s)
			c[i] ^= 0x40
			f.Add(c)
		}
	}
	sentinels := []error{ErrTooLarge, ErrMalformed, ErrKeySize, ErrBadChain, ErrLifetime, protocol.ErrAuth}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			if r != nil {
				t.Fatal("ParseRecord returned a record and an error")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("ParseRecord: %v wraps no sentinel", err)
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("ParseRecord accepted a non-canonical encoding:\n in %x\nout %x", b, r.Marshal())
		}
		if r.ExpiresAt().Sub(r.IssuedAt()) > MaxLifetime || !r.ExpiresAt().After(r.IssuedAt()) {
			t.Fatal("parsed record with a lifetime out of range")
		}
		if err := r.Verify(r.IssuedAt()); err == nil {
			for _, s := range seeds {
				if bytes.Equal(s, b) {
					return
				}
			}
			t.Fatalf("a record that is not a seed verifies: %x", b)
		}
	})
}
