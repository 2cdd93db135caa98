package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/parley-chat/parley/protocol"
)

const (
	// MetaFile is the clear-text metadata file inside a data directory.
	MetaFile = "parley.json"
	// DBDir is the badger directory inside a data directory.
	DBDir = "db"

	formatName    = "parley-store"
	formatVersion = 1
	maxMetaSize   = 64 << 10
)

// Info is what a locked store tells without its passphrase.
type Info struct {
	Version   int
	UserID    protocol.ID
	PublicKey *protocol.PublicKey
	KDF       KDFParams
}

// metaFile is parley.json. It holds nothing secret: the verifier costs an
// attacker an Argon2id run per guess, like the database itself.
type metaFile struct {
	Format    string  `json:"format"`
	Version   int     `json:"version"`
	KDF       metaKDF `json:"kdf"`
	Verifier  []byte  `json:"verifier"`
	UserID    string  `json:"user_id"`
	PublicKey []byte  `json:"public_key"`
}

type metaKDF struct {
	Algorithm string `json:"algorithm"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// metadata is a parsed and checked metaFile.
type metadata struct {
	kdf      KDFParams
	salt     []byte
	verifier []byte
	userID   protocol.ID
	pub      *protocol.PublicKey
}

func (m *metadata) info() *Info {
	return &Info{Version: formatVersion, UserID: m.userID, PublicKey: m.pub, KDF: m.kdf}
}

// Exists reports whether dir holds a store (its metadata file).
func Exists(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, MetaFile))
	return err == nil && fi.Mode().IsRegular()
}

// ReadInfo reads the metadata of the store in dir; it needs no passphrase
// and opens no database. A missing store is ErrNoStore.
func ReadInfo(dir string) (*Info, error) {
	m, err := readMeta(dir)
	if err != nil {
		return nil, err
	}
	return m.info(), nil
}

func readMeta(dir string) (*metadata, error) {
	f, err := os.Open(filepath.Join(dir, MetaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoStore, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading metadata: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetaSize+1))
	if err != nil {
		return nil, fmt.Errorf("store: reading metadata: %w", err)
	}
	if len(b) > maxMetaSize {
		return nil, fmt.Errorf("%w: metadata file over %d bytes", ErrCorrupt, maxMetaSize)
	}
	return parseMeta(b)
}

func parseMeta(b []byte) (*metadata, error) {
	var mf metaFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&mf); err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", ErrCorrupt, err)
	}
	if mf.Format != formatName || mf.Version != formatVersion {
		return nil, fmt.Errorf("%w: metadata format %q version %d (want %q %d)",
			ErrCorrupt, mf.Format, mf.Version, formatName, formatVersion)
	}
	if mf.KDF.Algorithm != "argon2id" {
		return nil, fmt.Errorf("%w: KDF %q (want argon2id)", ErrBadParams, mf.KDF.Algorithm)
	}
	p := KDFParams{Time: mf.KDF.Time, MemoryKiB: mf.KDF.MemoryKiB, Threads: mf.KDF.Threads}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(mf.KDF.Salt) != saltSize {
		return nil, fmt.Errorf("%w: salt of %d bytes (want %d)", ErrBadParams, len(mf.KDF.Salt), saltSize)
	}
	if len(mf.Verifier) != keySize {
		return nil, fmt.Errorf("%w: verifier of %d bytes", ErrCorrupt, len(mf.Verifier))
	}
	uid, err := protocol.ParseID(mf.UserID)
	if err != nil {
		return nil, fmt.Errorf("%w: user ID: %v", ErrCorrupt, err)
	}
	pub, err := protocol.ParsePublicKey(mf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrCorrupt, err)
	}
	return &metadata{kdf: p, salt: mf.KDF.Salt, verifier: mf.Verifier, userID: uid, pub: pub}, nil
}

func (m *metadata) marshal() ([]byte, error) {
	mf := metaFile{
		Format:  formatName,
		Version: formatVersion,
		KDF: metaKDF{
			Algorithm: "argon2id",
			Time:      m.kdf.Time,
			MemoryKiB: m.kdf.MemoryKiB,
			Threads:   m.kdf.Threads,
			Salt:      m.salt,
		},
		Verifier:  m.verifier,
		UserID:    m.userID.String(),
		PublicKey: m.pub.Bytes(),
	}
	b, err := json.MarshalIndent(mf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("store: encoding metadata: %w", err)
	}
	return append(b, '\n'), nil
}

// writeMeta writes the metadata file atomically: a temporary file in the
// same directory, fsync, rename over MetaFile, fsync of the directory.
func writeMeta(dir string, m *metadata) (err error) {
	b, err := m.marshal()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+MetaFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("store: writing metadata: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("store: writing metadata: %w", err)
	}
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("store: writing metadata: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("store: syncing metadata: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("store: writing metadata: %w", err)
	}
	if err = os.Rename(tmp.Name(), filepath.Join(dir, MetaFile)); err != nil {
		return fmt.Errorf("store: installing metadata: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: syncing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: syncing directory: %w", err)
	}
	return nil
}
