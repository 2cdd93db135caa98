package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// Fuzz targets of the session parsers (see fuzz_test.go): seeded with the
// golden session files and damaged copies of them. The property: no
// panic, every failure wraps ErrMalformed or ErrTooLarge, and what parses
// re-encodes to the input.

func sessFuzzSeeds(f *testing.F, files ...string) {
	for _, name := range files {
		b := goldenRead(f, goldenSessionDir, name)
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(append(bytes.Clone(b), 0))
		c := bytes.Clone(b)
		c[len(c)/3] ^= 0x40
		f.Add(c)
	}
	f.Add([]byte{})
}

func sessFuzzErr(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%s: %v wraps neither ErrMalformed nor ErrTooLarge", what, err)
	}
}

func FuzzParseSessionMessage(f *testing.F) {
	sessFuzzSeeds(f, "a1.bin", "b1.bin", "a4.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSessionMessage(b)
		if err != nil {
			sessFuzzErr(t, "ParseSessionMessage", err)
			return
		}
		if !bytes.Equal(m.Marshal(), b) {
			t.Fatal("a parsed session message does not re-encode to its input")
		}
	})
}

func FuzzParsePeerSessions(f *testing.F) {
	sessFuzzSeeds(f, "alice.state.bin", "b3.state-before.bin", "a3.state-before.bin")
	alice, bob := testKey(f, "alice-3072").ID(), testKey(f, "bob-3072").ID()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ids := range [][2]ID{{alice, bob}, {bob, alice}} {
			p, err := ParsePeerSessions(b, ids[0], ids[1])
			if err != nil {
				sessFuzzErr(t, "ParsePeerSessions", err)
				continue
			}
			if !bytes.Equal(p.Marshal(), b) {
				t.Fatal("parsed sessions do not re-encode to their input")
			}
			// Trusting no key of the peer, no session is anchored.
			if got := p.Unanchored(Anchors{}, sessT0); len(got) != len(p.sessions) {
				t.Fatalf("%d of %d sessions unanchored with no trusted key", len(got), len(p.sessions))
			}
		}
	})
}

func FuzzParseSessionReset(f *testing.F) {
	f.Add(MarshalSessionReset(SessionID{1, 2, 3}))
	f.Add([]byte{0x0a, 0x10})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseSessionReset(b)
		if err != nil {
			sessFuzzErr(t, "ParseSessionReset", err)
			return
		}
		if !bytes.Equal(MarshalSessionReset(id), b) {
			t.Fatal("a parsed reset does not re-encode to its input")
		}
	})
}

func TestParsePeerSessionsRefuses(t *testing.T) {
	ak, bk := testKey(t, "alice-3072").ID(), testKey(t, "bob-3072").ID()
	carol := testKey(t, "carol-2048").ID()
	good := goldenRead(t, goldenSessionDir, "b3.state-before.bin") // alice's state
	if _, err := ParsePeerSessions(good, ak, bk); err != nil {
		t.Fatalf("the golden state: %v", err)
	}
	for name, c := range map[string]struct {
		b         []byte
		me, peer  ID
		wantError error
	}{
		"other users": {good, ak, carol, ErrMalformed},
		"swapped":     {good, bk, ak, ErrMalformed},
		"trailing":    {append(bytes.Clone(good), 0x08, 0x01), ak, bk, ErrMalformed},
		"truncated":   {good[:len(good)-1], ak, bk, ErrMalformed},
		"too large":   {make([]byte, MaxPeerSessionsSize+1), ak, bk, ErrTooLarge},
	} {
		if _, err := ParsePeerSessions(c.b, c.me, c.peer); !errors.Is(err, c.wantError) {
			t.Errorf("%s: %v, want %v", name, err, c.wantError)
		}
	}
	if _, err := ParseSession(make([]byte, MaxSessionStateSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ParseSession over its cap: %v", err)
	}

	// Field by field: a session state with one field broken.
	ps, _ := ParsePeerSessions(good, ak, bk)
	s := ps.Current()
	for name, mut := range map[string]func(*Session){
		"zero ID":           func(s *Session) { s.id = SessionID{} },
		"responder no cert": func(s *Session) { s.initiator = false; s.certSig = nil },
		"initiator cert":    func(s *Session) { s.initiator = true; s.certSig = make([]byte, 256) },
		"too many skipped": func(s *Session) {
			s.r.skipped = make([]skippedKey, MaxSkippedKeys+1)
		},
	} {
		c := s.clone()
		mut(c)
		if _, err := ParseSession(c.Marshal()); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if back, err := ParseSession(s.Marshal()); err != nil || !bytes.Equal(back.Marshal(), s.Marshal()) {
		t.Fatalf("ParseSession round trip: %v", err)
	}
}
