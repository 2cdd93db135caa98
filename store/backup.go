package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
)

// Backup writes the whole database to w as badger's backup stream (a
// consistent snapshot: one read timestamp), every row as it is stored, so
// content and key rows stay sealed under the store's keys. It needs
// MetaFile beside it to be opened again (see Load). It returns the
// snapshot's version.
func (s *Store) Backup(ctx context.Context, w io.Writer) (uint64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	stream := s.db.NewStream()
	stream.LogPrefix = "store.Backup"
	stream.NumGo = 2
	v, err := stream.Backup(ctxWriter{ctx, w}, 0)
	if err == nil {
		err = s.commits.d.settled(ctx) // the snapshot holds only durable writes
	}
	if err != nil {
		return 0, fmt.Errorf("store: backup: %w", dbErr(err))
	}
	return v, nil
}

// ctxWriter fails writes once ctx ends, which stops a backup stream whose
// reader went away.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Load fills the empty store in dir from a backup stream r (Store.Backup).
// dir must hold the MetaFile the backup was taken with, and no database;
// passphrase must unlock it (ErrBadPassphrase if not). Afterwards the
// store is opened once, so that an identity that does not match the
// metadata is ErrTampered here rather than at the next login. On any
// error the caller removes dir: Load leaves a half-filled database.
func Load(dir string, passphrase []byte, r io.Reader, opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	m, err := readMeta(dir)
	if err != nil {
		return err
	}
	keys, err := unlock(passphrase, m)
	if err != nil {
		return err
	}
	dbDir := filepath.Join(dir, DBDir)
	if err := os.Mkdir(dbDir, 0o700); err != nil {
		keys.wipe()
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s already has a database", ErrExists, dir)
		}
		return fmt.Errorf("store: creating %s: %w", dbDir, err)
	}
	// A journal left without its database belonged to another one.
	if err := os.RemoveAll(filepath.Join(dir, journalDir)); err != nil {
		keys.wipe()
		return fmt.Errorf("store: removing a stale journal: %w", err)
	}
	// Loaded without a sync per batch: Close below makes it durable
	// (badger flushes its memtables into synced tables and syncs its
	// value logs as it closes them).
	bo := badgerOptions(dbDir, append([]byte(nil), keys.badger...), o)
	keys.wipe()
	db, err := badger.Open(bo)
	if err != nil {
		return fmt.Errorf("store: opening database: %w", err)
	}
	if err := db.Load(r, 256); err != nil {
		db.Close()
		return fmt.Errorf("store: loading backup: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("store: closing database: %w", err)
	}
	s, err := Open(dir, passphrase, opts)
	if err != nil {
		return fmt.Errorf("store: opening the restored store: %w", err)
	}
	return s.Close()
}
