// Package relaydb owns the badger settings of the services a relay runs
// beside its host (the mailbox, the group relay): small caches and
// memtables, like a node's store, with values over 1 KiB (envelopes,
// group messages) in the value log, which each service's sweeper
// garbage-collects; and badger's logger on slog.
package relaydb

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Badger sizes of a relay service's database.
const (
	blockCacheSize   = 8 << 20
	indexCacheSize   = 4 << 20
	memTableSize     = 8 << 20
	valueLogFileSize = 64 << 20
	valueThreshold   = 1 << 10
)

// Options are the badger options of a relay service's database in dir,
// logging badger's warnings and errors to log.
func Options(dir string, log *slog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(Logger{log}).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithNumCompactors(2).
		WithValueLogFileSize(valueLogFileSize).
		WithValueThreshold(valueThreshold)
}

// Logger sends badger's warnings and errors to slog (info and debug are
// dropped: badger is chatty), without the newline badger ends them
// with. (The store has its own: package store imports no internal
// package.)
type Logger struct{ Log *slog.Logger }

func (l Logger) Errorf(f string, a ...any) {
	l.Log.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (l Logger) Warningf(f string, a ...any) {
	l.Log.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l Logger) Infof(string, ...any)  {}
func (l Logger) Debugf(string, ...any) {}
