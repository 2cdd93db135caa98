// Package audit owns a node's audit log: audit.log in the data directory,
// one JSON object per line, of security events and never content — no
// message text, passphrase, key or token ever reaches it (a record keeps
// only the fields named in allowedFields). The file is rotated by size
// and bounded: audit.log, audit.log.1 ... audit.log.<MaxFiles-1>.
//
// Refused envelopes come in floods, so they are counted per peer and
// code over a minute and written as one line per pair at the minute's
// end (Refused), not one line each.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// File is the audit log's name in the data directory.
const File = "audit.log"

// Defaults of Options.
const (
	DefaultMaxSize  = 1 << 20
	DefaultMaxFiles = 3
	refusalWindow   = time.Minute
)

// Event types. Callers may record others; these are the ones Parley
// writes.
const (
	Registered       = "registered"
	Login            = "login"
	LoginFailed      = "login_failed"
	LoginThrottled   = "login_throttled"
	TokenIssued      = "token_issued"
	TokenRevoked     = "token_revoked"
	FriendAdded      = "friend_added"
	FriendRequest    = "friend_request"
	FriendAccepted   = "friend_accepted"
	FriendRemoved    = "friend_removed"
	FriendBlocked    = "friend_blocked"
	FriendVerified   = "friend_verified"
	KeyRotated       = "key_rotated"
	FriendKeyRotated = "friend_key_rotated"
	FriendKeyChanged = "friend_key_changed"
	KeyFork          = "key_fork"
	EnvelopesRefused = "envelopes_refused"
	BackupMade       = "backup_made"
	BackupRefused    = "backup_refused"
	BackupRestored   = "backup_restored"
)

// allowedFields are the only fields a record keeps: identifiers and
// counts. Anything else a caller passes is dropped, so content cannot
// slip in by mistake.
var allowedFields = []string{"user_id", "peer_id", "code", "count", "via", "status", "retry_after_s", "backup_created", "since"}

// Event is one line of the log.
type Event struct {
	Time   time.Time         `json:"time"`
	Type   string            `json:"event"`
	Fields map[string]string `json:"fields,omitempty"`
}

// Options configure a Log.
type Options struct {
	MaxSize  int64            // bytes per file before rotation (DefaultMaxSize)
	MaxFiles int              // files kept, the current one included (DefaultMaxFiles)
	Now      func() time.Time // the clock (time.Now)
}

// Log is an open audit log. Its methods are safe for concurrent use; a
// nil *Log records nothing.
type Log struct {
	path string
	o    Options

	mu       sync.Mutex
	f        *os.File
	size     int64
	refusals map[[2]string]int // (peer, code) -> count in the current window
	since    time.Time         // the current window's start
	timer    *time.Timer
	closed   bool
	err      error // the first write error, reported by Close
}

// Open opens (or creates, 0600) the audit log in dir.
func Open(dir string, o Options) (*Log, error) {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Log{path: filepath.Join(dir, File), o: o, refusals: make(map[[2]string]int)}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Record writes one event now. fields outside the allowed identifiers
// and counts are dropped.
func (l *Log) Record(typ string, fields map[string]string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writeLocked(Event{Time: l.o.Now().UTC(), Type: typ, Fields: clean(fields)})
}

// Refused counts one refused envelope from peer with code; the counts of
// a minute are written together when it ends (or at Flush and Close).
func (l *Log) Refused(peer, code string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if len(l.refusals) == 0 {
		l.since = l.o.Now().UTC()
		l.timer = time.AfterFunc(refusalWindow, l.Flush)
	}
	l.refusals[[2]string{peer, code}]++
}

// Flush writes the refusal counts gathered so far.
func (l *Log) Flush() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *Log) flushLocked() {
	if len(l.refusals) == 0 {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	keys := make([][2]string, 0, len(l.refusals))
	for k := range l.refusals {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := bytes.Compare([]byte(a[0]), []byte(b[0])); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a[1]), []byte(b[1]))
	})
	now := l.o.Now().UTC()
	for _, k := range keys {
		l.writeLocked(Event{Time: now, Type: EnvelopesRefused, Fields: map[string]string{
			"peer_id": k[0], "code": k[1], "count": strconv.Itoa(l.refusals[k]),
			"since": l.since.Format(time.RFC3339),
		}})
	}
	clear(l.refusals)
}

func (l *Log) writeLocked(e Event) {
	if l.closed || l.f == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	if l.size > 0 && l.size+int64(len(b)) > l.o.MaxSize {
		if err := l.rotateLocked(); err != nil {
			l.fail(err)
			return
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	if err != nil {
		l.fail(err)
	}
}

func (l *Log) fail(err error) {
	if l.err == nil {
		l.err = fmt.Errorf("audit: %w", err)
	}
}

// rotateLocked shifts audit.log.N to N+1 (dropping the oldest), the
// current file to .1, and starts a new one.
func (l *Log) rotateLocked() error {
	l.f.Close()
	l.f = nil
	os.Remove(l.name(l.o.MaxFiles - 1))
	for i := l.o.MaxFiles - 2; i >= 0; i-- {
		if err := os.Rename(l.name(i), l.name(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return l.open()
}

// name is the i-th file: audit.log for 0, audit.log.i after.
func (l *Log) name(i int) string {
	if i == 0 {
		return l.path
	}
	return l.path + "." + strconv.Itoa(i)
}

// Recent returns up to limit events, newest first, from the current file
// and the rotated ones. Refusal counts not yet written are written first.
func (l *Log) Recent(limit int) ([]Event, error) {
	if l == nil || limit <= 0 {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	var out []Event
	for i := 0; i < l.o.MaxFiles && len(out) < limit; i++ {
		evs, err := readFile(l.name(i))
		if err != nil {
			return nil, err
		}
		for j := len(evs) - 1; j >= 0 && len(out) < limit; j-- {
			out = append(out, evs[j])
		}
	}
	return out, nil
}

// readFile reads the events of one file, oldest first; a line that does
// not parse (a torn last write) is skipped.
func readFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	var evs []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			evs = append(evs, e)
		}
	}
	return evs, sc.Err()
}

// Close writes pending counts, syncs and closes the file. It returns the
// first write error the log met, if any.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.flushLocked()
	l.closed = true
	if l.f != nil {
		if err := l.f.Sync(); err != nil {
			l.fail(err)
		}
		if err := l.f.Close(); err != nil {
			l.fail(err)
		}
	}
	return l.err
}

// clean keeps the allowed fields that are not empty.
func clean(fields map[string]string) map[string]string {
	var out map[string]string
	for k, v := range fields {
		if v == "" || !slices.Contains(allowedFields, k) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(fields))
		}
		out[k] = v
	}
	return out
}
