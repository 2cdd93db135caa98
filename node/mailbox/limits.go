package mailbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
)

// Limits are what a relay holds and accepts. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	// MaxEnvelopes and MaxBytes cap one recipient's mailbox.
	MaxEnvelopes int
	MaxBytes     int64
	// MaxPerDepositor caps the envelopes one depositing peer has held for
	// one recipient, so one sender cannot fill a friend's mailbox.
	MaxPerDepositor int
	// TTL is how long an envelope is held before the sweeper deletes it.
	TTL time.Duration
	// DepositRate (per second) and DepositBurst are the token bucket of
	// each peer: a deposit, register or fetch takes a token.
	DepositRate  float64
	DepositBurst int
	// Registration is how long a registration lasts after the recipient's
	// last register or fetch.
	Registration time.Duration
}

// Default limits.
const (
	DefaultMaxEnvelopes    = 10_000
	DefaultMaxBytes        = 50 << 20
	DefaultMaxPerDepositor = 1_000
	DefaultTTL             = 14 * 24 * time.Hour
	DefaultDepositRate     = 20
	DefaultDepositBurst    = 200
	DefaultRegistration    = 30 * 24 * time.Hour
)

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxEnvelopes: DefaultMaxEnvelopes, MaxBytes: DefaultMaxBytes, MaxPerDepositor: DefaultMaxPerDepositor,
		TTL: DefaultTTL, DepositRate: DefaultDepositRate, DepositBurst: DefaultDepositBurst, Registration: DefaultRegistration,
	}
}

// withDefaults fills zero fields and refuses negative ones.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits()
	if l.MaxEnvelopes < 0 || l.MaxBytes < 0 || l.MaxPerDepositor < 0 || l.TTL < 0 || l.DepositRate < 0 || l.DepositBurst < 0 || l.Registration < 0 {
		return l, fmt.Errorf("mailbox: negative limit in %+v", l)
	}
	if l.MaxEnvelopes == 0 {
		l.MaxEnvelopes = d.MaxEnvelopes
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxPerDepositor == 0 {
		l.MaxPerDepositor = d.MaxPerDepositor
	}
	if l.TTL == 0 {
		l.TTL = d.TTL
	}
	if l.DepositRate == 0 {
		l.DepositRate = d.DepositRate
	}
	if l.DepositBurst == 0 {
		l.DepositBurst = d.DepositBurst
	}
	if l.Registration == 0 {
		l.Registration = d.Registration
	}
	return l, nil
}

// bucket is one peer's token bucket.
type bucket struct {
	tokens float64
	at     time.Time
}

// rateLimiter keeps a token bucket per depositing peer.
type rateLimiter struct {
	rate  float64
	burst float64

	mu sync.Mutex
	m  map[peer.ID]*bucket
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), m: map[peer.ID]*bucket{}}
}

// take takes a token for p at now, or says how long until one is there.
func (l *rateLimiter) take(p peer.ID, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[p]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.m[p] = b
	}
	if now.After(b.at) {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// prune forgets the buckets that have filled up again.
func (l *rateLimiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, b := range l.m {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.m, p)
		}
	}
}

// Directory finds a user's current verified record. *directory.DHT
// implements it; its errors wrap directory.ErrNotFound when there is no
// valid record.
type Directory interface {
	Lookup(ctx context.Context, user protocol.ID) (*directory.Record, error)
}

// Record cache timings: a verified record authorises fetches for
// recordFresh without another lookup (and so without another RSA
// verification); a device not in it triggers a new lookup at most every
// recordRecheck, for a device added a moment ago.
const (
	recordFresh   = 2 * time.Minute
	recordRecheck = 10 * time.Second
)

type cachedRecord struct {
	rec *directory.Record
	at  time.Time
}

// authoriser decides whether a peer is one of a user's devices.
type authoriser struct {
	dir Directory

	mu sync.Mutex
	m  map[protocol.ID]cachedRecord
}

// check returns nil if p is a device in user's current record, else a
// *RefusedError (not authorised, unknown recipient, unavailable).
func (a *authoriser) check(ctx context.Context, user protocol.ID, p peer.ID, now time.Time) error {
	a.mu.Lock()
	c, ok := a.m[user]
	a.mu.Unlock()
	if ok && now.Before(c.rec.ExpiresAt()) {
		age := now.Sub(c.at)
		if age < recordFresh && c.rec.HasDevice(p) {
			return nil
		}
		if age < recordRecheck {
			return &RefusedError{Code: CodeNotAuthorised}
		}
	}
	rec, err := a.dir.Lookup(ctx, user)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return &RefusedError{Code: CodeUnknown, Detail: "no record for the recipient"}
	case err != nil:
		return &RefusedError{Code: CodeUnavailable, Detail: "directory lookup failed"}
	case rec.UserID() != user || !now.Before(rec.ExpiresAt()):
		return &RefusedError{Code: CodeUnknown, Detail: "no current record for the recipient"}
	}
	a.mu.Lock()
	a.m[user] = cachedRecord{rec: rec, at: now}
	a.mu.Unlock()
	if !rec.HasDevice(p) {
		return &RefusedError{Code: CodeNotAuthorised}
	}
	return nil
}

// prune forgets records older than recordFresh.
func (a *authoriser) prune(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for u, c := range a.m {
		if now.Sub(c.at) >= recordFresh {
			delete(a.m, u)
		}
	}
}
