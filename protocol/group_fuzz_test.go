package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// Fuzz targets of the group parsers (see fuzz_test.go for the common
// property), seeded with the group golden vectors. FuzzGroupOpen also
// opens whatever parses with the golden sender key: no panic, a sentinel
// error, and the chain unchanged on failure.

func FuzzParseGroupState(f *testing.F) {
	fuzzAddBytes(f, fuzzGoldenFiles(f, "groups/state*.bin")...)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseGroupState(b)
		if err != nil {
			fuzzCheckErr(t, "ParseGroupState", err)
			return
		}
		if !bytes.Equal(s.Marshal(), b) || !bytes.Equal(s.marshal(), b) {
			t.Fatal("ParseGroupState accepted a non-canonical encoding")
		}
		_ = s.Canonical()
		_ = s.Hash()
	})
}

func FuzzParseSenderKeyDistribution(f *testing.F) {
	fuzzAddBytes(f, fuzzGoldenFiles(f, "groups/sender-key.bin")...)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseSenderKeyDistribution(b)
		if err != nil {
			fuzzCheckErr(t, "ParseSenderKeyDistribution", err)
			return
		}
		if !bytes.Equal(d.Marshal(), b) {
			t.Fatal("ParseSenderKeyDistribution accepted a non-canonical encoding")
		}
	})
}

func FuzzGroupOpen(f *testing.F) {
	fuzzAddBytes(f, fuzzGoldenFiles(f, "groups/m*.bin")...)
	d, err := ParseSenderKeyDistribution(goldenRead(f, goldenGroupDir, "sender-key.bin"))
	if err != nil {
		f.Fatal(err)
	}
	s2, err := ParseGroupState(goldenRead(f, goldenGroupDir, "state2.bin"))
	if err != nil {
		f.Fatal(err)
	}
	chain, err := AcceptSenderKey(s2, d, d.Sender)
	if err != nil {
		f.Fatal(err)
	}
	before := chain.Marshal()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseGroupMessage(b)
		if err != nil {
			fuzzCheckErr(t, "ParseGroupMessage", err)
			return
		}
		if !bytes.Equal(m.Marshal(), b) {
			t.Fatal("ParseGroupMessage accepted a non-canonical encoding")
		}
		if _, _, err := chain.Open(m); err != nil {
			if !bytes.Equal(chain.Marshal(), before) {
				t.Fatal("a failed Open changed the chain")
			}
			for _, s := range []error{ErrGroupWrongGroup, ErrGroupEpoch, ErrGroupWrongSender, ErrGroupReplay, ErrGroupTooFarAhead} {
				if errors.Is(err, s) {
					return
				}
			}
			fuzzCheckErr(t, "SenderChain.Open", err)
		}
	})
}
