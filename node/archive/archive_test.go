package archive

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

const testWork = 10 // scrypt 2^10: fast

var pass = []byte("correct horse battery")

// sample writes a backup with a body of n bytes (many age chunks).
func sample(t *testing.T, n int) ([]byte, []byte) {
	t.Helper()
	body := bytes.Repeat([]byte("0123456789abcdef"), n/16)
	m := Manifest{Created: time.Unix(1700000000, 0).UTC(), UserID: "u", PeerID: "p",
		Files: map[string][]byte{"parley.json": []byte(`{"a":1}`)}}
	var buf bytes.Buffer
	err := Write(&buf, pass, m, func(w io.Writer) error { _, err := w.Write(body); return err }, Options{WorkFactor: testWork})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), body
}

// readAll opens a backup and reads its body to the end.
func readAll(b, pass []byte) (*Manifest, []byte, error) {
	m, r, err := Open(bytes.NewReader(b), pass)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(r)
	return m, body, err
}

func TestRoundTrip(t *testing.T) {
	file, body := sample(t, 200<<10)
	if bytes.Contains(file, []byte("parley.json")) || bytes.Contains(file, body[:64]) {
		t.Fatal("the file shows its plaintext")
	}
	m, got, err := readAll(file, pass)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) || m.UserID != "u" || m.PeerID != "p" || string(m.Files["parley.json"]) != `{"a":1}` {
		t.Fatalf("round trip changed the backup: %+v, body %d bytes", m, len(got))
	}
}

func TestWrongPassphrase(t *testing.T) {
	file, _ := sample(t, 1<<10)
	if _, _, err := readAll(file, []byte("not the passphrase")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v, want ErrBadPassphrase", err)
	}
}

func TestTruncated(t *testing.T) {
	file, _ := sample(t, 200<<10)
	for _, cut := range []int{len(file) - 1, len(file) - 20, len(file) / 2, 300} {
		_, _, err := readAll(file[:cut], pass)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("cut at %d of %d: %v, want ErrCorrupt", cut, len(file), err)
		}
	}
	for _, cut := range []int{0, 10} {
		if _, _, err := readAll(file[:cut], pass); !errors.Is(err, ErrNotBackup) {
			t.Errorf("cut at %d: %v, want ErrNotBackup", cut, err)
		}
	}
}

// TestFlippedByte flips one bit at places through the file: the header's
// text, its MAC, the nonce, the first and a middle chunk, the last byte.
// Each is refused with a typed error, never read as data.
func TestFlippedByte(t *testing.T) {
	file, _ := sample(t, 200<<10)
	hdrEnd := bytes.Index(file, []byte("\n---"))
	for _, at := range []int{5, hdrEnd + 6, hdrEnd + 40, hdrEnd + 80, len(file) / 2, len(file) - 1} {
		b := bytes.Clone(file)
		b[at] ^= 0x01
		_, _, err := readAll(b, pass)
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotBackup) && !errors.Is(err, ErrBadPassphrase) {
			t.Errorf("flip at %d of %d: %v, want a typed error", at, len(file), err)
		}
		if err == nil {
			t.Errorf("flip at %d: read without error", at)
		}
	}
	// A flip in the payload is damage, not a wrong passphrase.
	b := bytes.Clone(file)
	b[len(b)/2] ^= 0x80
	if _, _, err := readAll(b, pass); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flip in the payload: %v, want ErrCorrupt", err)
	}
}

func TestNotBackup(t *testing.T) {
	if _, _, err := readAll([]byte(strings.Repeat("not an age file\n", 10)), pass); !errors.Is(err, ErrNotBackup) {
		t.Fatalf("%v, want ErrNotBackup", err)
	}
}
