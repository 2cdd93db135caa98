package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is; the wrapped
// messages say more for logs but never hold passphrases, keys or bodies.
var (
	// ErrBadPassphrase is a passphrase that does not unlock the store.
	ErrBadPassphrase = errors.New("store: wrong passphrase")
	// ErrExists is a Create where a store (or a leftover database) is.
	ErrExists = errors.New("store: a store already exists")
	// ErrNoStore is an Open or ReadInfo where there is no store.
	ErrNoStore = errors.New("store: no store in this directory")
	// ErrNotFound is a row that is not there.
	ErrNotFound = errors.New("store: not found")
	// ErrDuplicate is a message ID that the store has already seen or
	// stored (or a prekey ID it already has).
	ErrDuplicate = errors.New("store: duplicate ID")
	// ErrTampered is data that fails its integrity check: a sealed row that
	// does not open under its key, or a database whose identity is not the
	// one the metadata names.
	ErrTampered = errors.New("store: data has been tampered with")
	// ErrCorrupt is a metadata file or a row that does not parse, or a
	// format version this code does not know.
	ErrCorrupt = errors.New("store: corrupt data")
	// ErrBadParams is a KDF parameter set outside the accepted limits, in
	// Options or in a (tampered) metadata file.
	ErrBadParams = errors.New("store: KDF parameters out of range")
	// ErrInvalid is an argument that is not acceptable: an unknown status,
	// a zero ID, a bad cursor, a time outside what the store can order.
	ErrInvalid = errors.New("store: invalid argument")
	// ErrLocked is an Open of a store that another process (or another
	// Store in this one) has open.
	ErrLocked = errors.New("store: in use by another process")
	// ErrClosed is a call on a closed store.
	ErrClosed = errors.New("store: closed")
	// ErrConflict is a change the row's state does not allow (sending
	// again a message that has not failed).
	ErrConflict = errors.New("store: not possible in the row's state")
)

// RowError reports a problem with one row: which kind of row, and the
// error (ErrTampered or ErrCorrupt). It never holds the row's contents.
type RowError struct {
	Kind string // "friend", "message", "outbox", ...
	Err  error
}

func (e *RowError) Error() string { return fmt.Sprintf("store: %s row: %v", e.Kind, e.Err) }

// Unwrap lets errors.Is see ErrTampered or ErrCorrupt.
func (e *RowError) Unwrap() error { return e.Err }

func tampered(kind string) error { return &RowError{Kind: kind, Err: ErrTampered} }

func corrupt(kind string, detail string) error {
	return &RowError{Kind: kind, Err: fmt.Errorf("%w: %s", ErrCorrupt, detail)}
}
