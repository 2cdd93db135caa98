// Package archive is the format of a Parley backup file: one file holding
// a node's small state files and its database stream, encrypted under the
// node's passphrase. It owns the format only; what goes in it is node's
// business (node/backup.go), and the database stream is the store's.
//
// # Format
//
// The file is an age file (filippo.io/age, https://age-encryption.org/v1)
// with one scrypt passphrase recipient: the payload is encrypted and
// authenticated with ChaCha20-Poly1305 in 64 KiB chunks (age's STREAM), so
// a flipped byte anywhere, a truncated file or trailing data is an error,
// never wrong data. The payload is
//
//	"parley-backup/1\n"
//	manifest length, uint32 big-endian, then the manifest (JSON)
//	the database stream, to the end (see store.Store.Backup)
//
// The passphrase is the node's: age's scrypt recipient derives the file
// key from it (work factor 2^18 by default), independently of the store's
// Argon2id.
package archive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"
)

// magic starts every payload.
const magic = "parley-backup/1\n"

// maxManifest bounds the manifest (it holds a few small files).
const maxManifest = 1 << 20

// Errors of Open and of the body reader it returns.
var (
	// ErrNotBackup is a file that is not a passphrase-encrypted age file
	// (or one whose header is damaged beyond parsing).
	ErrNotBackup = errors.New("archive: not a Parley backup file (or its header is damaged)")
	// ErrBadPassphrase is a passphrase that does not open the file. A
	// damaged recipient stanza looks the same.
	ErrBadPassphrase = errors.New("archive: wrong passphrase for this backup")
	// ErrCorrupt is a file that was truncated or changed after it was
	// written: authentication failed somewhere in it.
	ErrCorrupt = errors.New("archive: backup file is damaged or truncated")
)

// Manifest describes a backup and carries the node's small files.
type Manifest struct {
	Created time.Time `json:"created"`
	UserID  string    `json:"user_id"`
	PeerID  string    `json:"peer_id,omitempty"`
	// Files are the data directory's state files by name, whole.
	Files map[string][]byte `json:"files"`
}

// Options tune Write.
type Options struct {
	// WorkFactor is scrypt's log2(N); 0 is age's default (18). Tests
	// lower it; Open accepts up to age's maximum (22).
	WorkFactor int
}

// Write writes a backup to w: m, then what body writes. It returns once
// the age stream is closed (its last chunk written); the caller syncs.
func Write(w io.Writer, passphrase []byte, m Manifest, body func(io.Writer) error, o Options) error {
	if len(passphrase) == 0 {
		return errors.New("archive: empty passphrase")
	}
	rcp, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if o.WorkFactor != 0 {
		if o.WorkFactor < 1 || o.WorkFactor > 30 {
			return fmt.Errorf("archive: work factor %d out of range", o.WorkFactor)
		}
		rcp.SetWorkFactor(o.WorkFactor)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("archive: encoding manifest: %w", err)
	}
	if len(mb) > maxManifest {
		return fmt.Errorf("archive: manifest of %d bytes is over %d", len(mb), maxManifest)
	}
	enc, err := age.Encrypt(w, rcp)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	bw := bufio.NewWriterSize(enc, 64<<10)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(mb)))
	bw.WriteString(magic)
	bw.Write(n[:])
	if _, err := bw.Write(mb); err != nil {
		return fmt.Errorf("archive: writing manifest: %w", err)
	}
	if err := body(bw); err != nil {
		return fmt.Errorf("archive: writing body: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("archive: writing: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("archive: finishing: %w", err)
	}
	return nil
}

// Open checks the passphrase and reads the manifest of the backup in r.
// The body reader returns the database stream; any error it returns
// wraps ErrCorrupt, and its io.EOF means the file is whole. A caller must
// read it to io.EOF before trusting anything it read.
func Open(r io.Reader, passphrase []byte) (*Manifest, io.Reader, error) {
	id, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadPassphrase, err)
	}
	dec, err := age.Decrypt(r, id)
	if err != nil {
		var nm *age.NoIdentityMatchError
		switch {
		case errors.As(err, &nm) && errors.Is(err, age.ErrIncorrectIdentity):
			return nil, nil, ErrBadPassphrase
		case errors.As(err, &nm):
			// A file for another kind of recipient (an X25519 key), or a
			// damaged scrypt stanza.
			return nil, nil, fmt.Errorf("%w: %v", ErrNotBackup, err)
		case err.Error() == "bad header MAC":
			return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrNotBackup, err)
	}
	body := &corruptReader{r: bufio.NewReaderSize(dec, 64<<10)}
	head := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(body, head); err != nil {
		return nil, nil, truncated(err)
	}
	if !bytes.Equal(head[:len(magic)], []byte(magic)) {
		return nil, nil, fmt.Errorf("%w: unknown payload format", ErrNotBackup)
	}
	size := binary.BigEndian.Uint32(head[len(magic):])
	if size > maxManifest {
		return nil, nil, fmt.Errorf("%w: manifest of %d bytes", ErrCorrupt, size)
	}
	mb := make([]byte, size)
	if _, err := io.ReadFull(body, mb); err != nil {
		return nil, nil, truncated(err)
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	return &m, body, nil
}

// corruptReader labels every read error but io.EOF as ErrCorrupt: age
// authenticates each chunk and the end, so any such error is damage.
type corruptReader struct{ r io.Reader }

func (c *corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, ErrCorrupt) {
			return n, err
		}
		return n, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return n, err
}

// truncated labels an end of data where more was due as ErrCorrupt.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: ends early", ErrCorrupt)
	}
	return err
}
