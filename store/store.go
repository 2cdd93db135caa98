package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// valueLogFileSize caps badger's value log files. Rows are far below
// badger's value threshold, so the value log stays nearly empty; the cap
// keeps its preallocated (sparse) files small.
const valueLogFileSize = 16 << 20

// Store is an unlocked store. Its methods are safe for concurrent use.
type Store struct {
	dir     string
	opts    Options
	meta    *metadata
	db      *badger.DB
	rows    *sealer // ordinary rows
	secrets *sealer // identity, prekeys, host key
	id      *protocol.PrivateKey
	commits *committer // the one writer (commit.go)
	// outboxSeq is the last outbox sequence number given (outbox.go).
	outboxSeq atomic.Uint64

	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
}

// Create makes a new store in dir (created 0700 if missing) for identity
// id, locked by passphrase. It fails with ErrExists if dir already holds a
// store, or a database without metadata (the remains of an interrupted
// Create; remove dir/db to start over). The metadata file is written last,
// so a crash before then leaves no store behind.
func Create(dir string, passphrase []byte, id *protocol.PrivateKey, opts Options) (*Store, error) {
	if id == nil {
		return nil, fmt.Errorf("%w: no identity key", ErrInvalid)
	}
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", ErrInvalid)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := o.KDF.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: creating %s: %w", dir, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, MetaFile)); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrExists, dir)
	}
	// Making the database directory is what claims dir: a concurrent
	// Create fails here, so the clean-ups below only remove our own files.
	dbDir := filepath.Join(dir, DBDir)
	if err := os.Mkdir(dbDir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %s exists without %s (an interrupted Create?)", ErrExists, dbDir, MetaFile)
		}
		return nil, fmt.Errorf("store: creating %s: %w", dbDir, err)
	}

	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		os.Remove(dbDir)
		return nil, fmt.Errorf("store: reading salt: %w", err)
	}
	master := masterKey(passphrase, salt, o.KDF)
	keys, err := deriveKeys(master)
	clear(master)
	if err != nil {
		os.Remove(dbDir)
		return nil, err
	}
	m := &metadata{kdf: o.KDF, salt: salt, verifier: bytes.Clone(keys.verifier), userID: id.ID(), pub: id.Public()}
	s, err := openDB(dir, m, keys, o)
	if err != nil {
		os.RemoveAll(dbDir)
		os.RemoveAll(filepath.Join(dir, journalDir))
		return nil, err
	}
	fail := func(err error) (*Store, error) {
		s.abort()
		os.Remove(filepath.Join(dir, MetaFile))
		os.RemoveAll(dbDir)
		os.RemoveAll(filepath.Join(dir, journalDir))
		return nil, err
	}
	der := id.Bytes()
	plain := make([]byte, 0, protocol.IDSize+len(der))
	plain = append(append(plain, m.userID[:]...), der...)
	clear(der)
	err = s.update(context.Background(), func(txn *badger.Txn) error {
		return s.set(txn, identityKey(), s.secrets.seal(identityKey(), plain))
	})
	clear(plain)
	if err != nil {
		return fail(fmt.Errorf("store: writing identity: %w", err))
	}
	if err := writeMeta(dir, m); err != nil {
		return fail(err)
	}
	s.id = id
	return s, nil
}

// Open unlocks the store in dir with passphrase. A wrong passphrase is
// ErrBadPassphrase and changes nothing on disk: it is checked against the
// metadata before the database is opened. Open uses the KDF parameters of
// the metadata (ErrBadParams if they are out of range) and ignores
// opts.KDF. An identity in the database that is not the one the metadata
// names is ErrTampered; a store that is already open is ErrLocked.
func Open(dir string, passphrase []byte, opts Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := readMeta(dir)
	if err != nil {
		return nil, err
	}
	keys, err := unlock(passphrase, m)
	if err != nil {
		return nil, err
	}
	dbDir := filepath.Join(dir, DBDir)
	if fi, err := os.Stat(dbDir); err != nil || !fi.IsDir() {
		keys.wipe()
		return nil, fmt.Errorf("%w: database directory %s missing", ErrCorrupt, dbDir)
	}
	s, err := openDB(dir, m, keys, o)
	if err != nil {
		return nil, err
	}
	if s.id, err = s.loadIdentity(); err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

// openDB opens badger in dir/db and takes ownership of keys.
func openDB(dir string, m *metadata, keys *derivedKeys, o Options) (*Store, error) {
	defer keys.wipe()
	rows, err := newSealer(keys.rows)
	if err != nil {
		return nil, err
	}
	secrets, err := newSealer(keys.secrets)
	if err != nil {
		return nil, err
	}
	// badger keeps the slice it is given, so it gets its own copy.
	// The journal makes writes durable (journal.go), not badger's msync.
	bo := badgerOptions(filepath.Join(dir, DBDir), append([]byte(nil), keys.badger...), o).WithSyncWrites(false)
	db, err := badger.Open(bo)
	if err != nil {
		// badger formats its lock error with %+v, not %w.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("store: opening database: %w", err)
	}
	j, err := openJournal(dir, db, keys.journal)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{dir: dir, opts: o, meta: m, db: db, rows: rows, secrets: secrets}
	if err := s.migrate(); err != nil {
		j.close(false)
		db.Close()
		return nil, err
	}
	s.commits = newCommitter(db, j, o.Logger)
	return s, nil
}

// badgerOptions are the store's badger settings for the database in dir,
// encrypted with key: sized for a chat history (see Options).
func badgerOptions(dir string, key []byte, o Options) badger.Options {
	bo := badger.DefaultOptions(dir).
		WithEncryptionKey(key).
		WithLogger(badgerLogger{o.Logger}).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		WithNumCompactors(2).
		WithValueLogFileSize(valueLogFileSize)
	// badger refuses a value threshold above its batch size (15% of the
	// memtable); small memtables get a smaller threshold.
	return bo.WithValueThreshold(min(bo.ValueThreshold, o.MemTableSize*15/100-1))
}

// loadIdentity reads the sealed identity and checks it against the
// metadata.
func (s *Store) loadIdentity() (*protocol.PrivateKey, error) {
	var plain []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		plain, err = s.getSealed(txn, s.secrets, rowIdentity, identityKey())
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, &RowError{Kind: rowIdentity, Err: fmt.Errorf("%w: no identity in the database", ErrTampered)}
	}
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	if len(plain) <= protocol.IDSize {
		return nil, corrupt(rowIdentity, "too short")
	}
	k, err := protocol.ParsePrivateKey(plain[protocol.IDSize:])
	if err != nil {
		return nil, corrupt(rowIdentity, err.Error())
	}
	if protocol.ID(plain[:protocol.IDSize]) != s.meta.userID {
		return nil, &RowError{Kind: rowIdentity, Err: fmt.Errorf("%w: identity does not match the metadata", ErrTampered)}
	}
	if err := s.checkIdentity(k); err != nil {
		return nil, err
	}
	return k, nil
}

// Close closes the database. Calls after Close fail with ErrClosed; Close
// waits for calls in progress.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.id = nil
	s.commits.close() // commits what is queued
	if err := s.db.Close(); err != nil {
		s.commits.j.close(false)
		return fmt.Errorf("store: closing database: %w", err)
	}
	// badger's Close flushed its memtables into synced tables and synced
	// its value logs (each mapped file is synced as it is closed): the
	// journal is spent.
	return s.commits.j.close(true)
}

// abort closes a store that failed to open: the journal is kept.
func (s *Store) abort() {
	s.commits.close()
	s.db.Close()
	s.commits.j.close(false)
}

// Identity returns the user's private identity key.
func (s *Store) Identity() (*protocol.PrivateKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.id, nil
}

// UserID returns the user's ID (also readable while locked, via ReadInfo).
func (s *Store) UserID() protocol.ID { return s.meta.userID }

// Info returns the store's metadata.
func (s *Store) Info() *Info { return s.meta.info() }

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) now() time.Time { return s.opts.Now() }

// acquire marks a call in progress; it fails once the store is closed.
func (s *Store) acquire() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) release() { s.mu.RUnlock() }

// view runs fn in a read-only transaction and returns once everything
// it could see is durable.
func (s *Store) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.View(fn); err != nil {
		return dbErr(err)
	}
	// What fn read may include writes whose journal record is not durable
	// yet (durability): the read answers once they are.
	return s.commits.d.settled(ctx)
}

// dbErr passes the store's own errors through and labels badger's.
func dbErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrDBClosed):
		return ErrClosed
	}
	return err
}

// badgerLogger routes badger's warnings and errors to slog. badger's own
// level option only applies to its default logger, so this one drops
// info and debug messages itself.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, v ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, v...)), "component", "badger")
}

func (b badgerLogger) Warningf(f string, v ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, v...)), "component", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// CheckPassphrase reports whether passphrase unlocks the store in dir
// (ErrBadPassphrase if not) without opening the database, so it works
// while the store is open elsewhere. It costs one key derivation.
func CheckPassphrase(dir string, passphrase []byte) error {
	m, err := readMeta(dir)
	if err != nil {
		return err
	}
	keys, err := unlock(passphrase, m)
	if err != nil {
		return err
	}
	keys.wipe()
	return nil
}
