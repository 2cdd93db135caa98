package store

import (
	"fmt"
	"log/slog"
	"time"
)

// KDFParams are the Argon2id parameters that turn a passphrase into the
// master key. The ones a store was created with are kept in its metadata
// file; Open uses those.
type KDFParams struct {
	Time      uint32 // passes (t)
	MemoryKiB uint32 // memory in KiB (m)
	Threads   uint8  // parallelism (p)
}

// DefaultKDF is the production setting: t=3, m=64 MiB, p=4.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// Limits on KDFParams. They bound what a tampered metadata file can make
// Open spend; they are not a security floor (a weaker setting in a
// tampered file only fails the verifier).
const (
	MaxKDFTime      = 32
	MinKDFMemoryKiB = 1 << 10 // 1 MiB
	MaxKDFMemoryKiB = 4 << 20 // 4 GiB
	MaxKDFThreads   = 64
)

// Validate reports whether p is within the limits, as ErrBadParams.
func (p KDFParams) Validate() error {
	switch {
	case p.Time < 1 || p.Time > MaxKDFTime:
		return fmt.Errorf("%w: time %d (want 1 to %d)", ErrBadParams, p.Time, MaxKDFTime)
	case p.MemoryKiB < MinKDFMemoryKiB || p.MemoryKiB > MaxKDFMemoryKiB:
		return fmt.Errorf("%w: memory %d KiB (want %d to %d)", ErrBadParams, p.MemoryKiB, MinKDFMemoryKiB, MaxKDFMemoryKiB)
	case p.Threads < 1 || p.Threads > MaxKDFThreads:
		return fmt.Errorf("%w: threads %d (want 1 to %d)", ErrBadParams, p.Threads, MaxKDFThreads)
	}
	return nil
}

// DefaultSeenTTL is how long a seen envelope ID is remembered: longer than
// the protocol's 14-day acceptance window, so that an envelope old enough
// to be forgotten is also too old to be accepted.
const DefaultSeenTTL = 15 * 24 * time.Hour

// Default badger sizes, for a chat history rather than a database server
// (badger's own defaults: 64 MiB memtables, five of them, a 256 MiB block
// cache): a node idles in tens of MiB, and a burst of messages fills a
// memtable of a few MiB in thousands of messages. Each memtable is an
// arena of its full size on the Go heap, and each flush an L0 table of
// that size mapped in memory: 4 MiB keeps an idle node with two friends
// near 40 MiB RSS and a 5,000-message burst under 80 MiB, while a page of
// 50 from 100,000 messages still reads in under 1 ms (BenchmarkMessagesPage).
const (
	DefaultBlockCacheSize = 8 << 20
	DefaultIndexCacheSize = 4 << 20
	DefaultMemTableSize   = 4 << 20
)

// Options tune a store. The zero value is the production setting.
type Options struct {
	// KDF is used by Create; zero means DefaultKDF. Open reads the
	// parameters from the metadata file and ignores this field.
	KDF KDFParams
	// Now is the clock for timestamps, seen-ID expiry and prekey purging;
	// nil means time.Now. badger's own TTL runs on the wall clock: the
	// store sets it to the later of the two expiries, so a row is never
	// dropped before the store's clock says it has expired.
	Now func() time.Time
	// SeenTTL is how long seen IDs are kept; zero means DefaultSeenTTL. In
	// production it must exceed the protocol's acceptance window.
	SeenTTL time.Duration
	// Logger receives badger's warnings and errors; nil discards them.
	Logger *slog.Logger
	// BlockCacheSize, IndexCacheSize and MemTableSize are badger's sizes
	// in bytes; zero means the defaults above. With encryption the block
	// cache must not be empty, so a negative value is an error.
	BlockCacheSize int64
	IndexCacheSize int64
	MemTableSize   int64
}

// withDefaults fills in zero fields and checks the rest.
func (o Options) withDefaults() (Options, error) {
	if o.KDF == (KDFParams{}) {
		o.KDF = DefaultKDF
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SeenTTL == 0 {
		o.SeenTTL = DefaultSeenTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = DefaultBlockCacheSize
	}
	if o.IndexCacheSize == 0 {
		o.IndexCacheSize = DefaultIndexCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	switch {
	case o.SeenTTL < 0:
		return o, fmt.Errorf("%w: negative seen TTL", ErrInvalid)
	case o.BlockCacheSize < 0 || o.IndexCacheSize < 0:
		return o, fmt.Errorf("%w: negative cache size", ErrInvalid)
	case o.MemTableSize < 1<<20:
		return o, fmt.Errorf("%w: memtable size %d under 1 MiB", ErrInvalid, o.MemTableSize)
	}
	return o, nil
}
