package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// crashAfterJournal makes s's later writes reach its journal only, then
// returns a function that "crashes" s: stops it without badger or the
// journal being told (badger's clean close flushes only what it has).
func crashAfterJournal(t *testing.T, s *Store) (crash func()) {
	t.Helper()
	// Set from the test before any write is queued; the commit queue
	// reads it only while it commits.
	s.commits.crashBeforeBadger = true
	return func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.abort()
	}
}

// recordEnds lists where each record of a segment's bytes ends.
func recordEnds(b []byte) []int {
	var ends []int
	for off := len(journalMagic) + genSize; off+4 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n == 0 {
			break
		}
		off += 4 + n
		ends = append(ends, off)
	}
	return ends
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, journalDir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// journalOnlyWrites makes a store, makes n writes reach its journal only
// and crashes it; it returns the store's directory and clock, the
// friend written to, and the last segment's path and bytes.
func journalOnlyWrites(t *testing.T, n int) (dir string, c *testClock, friend protocol.ID, last string, seg []byte) {
	t.Helper()
	s, dir, c := newTestStore(t)
	friend = randUser()
	crash := crashAfterJournal(t, s)
	for i := range n {
		m, e := bigOutgoing(friend, i, 100)
		if _, err := s.AddOutgoing(t.Context(), m, e); err != nil {
			t.Fatal(err)
		}
	}
	crash()
	segs := segmentFiles(t, dir)
	last = segs[len(segs)-1]
	seg, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	return dir, c, friend, last, seg
}

// TestJournalReplaysWritesBadgerLost: writes acknowledged from the
// journal alone (badger never committed them) are in the store after the
// next Open, in order, the later write of a row winning.
func TestJournalReplaysWritesBadgerLost(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	crash := crashAfterJournal(t, s)
	var ids []MsgID
	for i := range 3 {
		m, e := bigOutgoing(friend, i, 100)
		if _, err := s.AddOutgoing(ctx, m, e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	// badger does not have them: only the journal does.
	if _, err := s.Message(ctx, ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before the crash, badger has the message (err %v): the test proves nothing", err)
	}
	crash()

	s2 := openTest(t, dir, c)
	got := allMessages(t, s2, DirectConversation(friend))
	if len(got) != 3 {
		t.Fatalf("after replay %d messages, want 3", len(got))
	}
	if ids, _ := queueIDs(t, s2, friend, 0, 10); len(ids) != 3 {
		t.Fatalf("after replay %d queued entries, want 3", len(ids))
	}
	// Replayed and made durable: the journal holds only the new segment.
	if segs := segmentFiles(t, dir); len(segs) != 1 {
		t.Fatalf("segments after replay: %v", segs)
	}
	// A second replay-free reopen still has them (badger's own files).
	s3 := reopen(t, s2, c)
	if got := allMessages(t, s3, DirectConversation(friend)); len(got) != 3 {
		t.Fatalf("after a clean reopen %d messages, want 3", len(got))
	}
}

// TestJournalTornTail: a record cut short at the end of the journal (a
// crash in mid-append: never acknowledged) is dropped; what came before
// is kept.
func TestJournalTornTail(t *testing.T) {
	t.Parallel()
	dir, c, friend, last, b := journalOnlyWrites(t, 2)
	// Tear the last record: its final bytes never reached the disk.
	ends := recordEnds(b)
	if len(ends) < 2 {
		t.Fatalf("%d records in the segment, want the two writes'", len(ends))
	}
	end := ends[len(ends)-1]
	clear(b[end-7 : end])
	if err := os.WriteFile(last, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, dir, c)
	if got := allMessages(t, s2, DirectConversation(friend)); len(got) != 1 {
		t.Fatalf("after a torn tail %d messages, want the 1 before it", len(got))
	}
}

// TestJournalTamperedRecord: a damaged record with a good one after it
// was acknowledged and then changed on disk: Open refuses (ErrTampered)
// rather than drop it silently.
func TestJournalTamperedRecord(t *testing.T) {
	t.Parallel()
	dir, _, _, last, b := journalOnlyWrites(t, 2)
	b[len(journalMagic)+genSize+40] ^= 1 // inside the first record
	if err := os.WriteFile(last, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testPass, testOptions(newClock())); !errors.Is(err, ErrTampered) {
		t.Fatalf("Open with a damaged journal record = %v, want ErrTampered", err)
	}
}

// TestJournalCheckpoint: past segmentLimit the journal starts a new
// segment and removes the old ones once badger's files are synced; a
// clean Close leaves no journal, and everything is there after Open.
func TestJournalCheckpoint(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	const size = 16 << 10
	n := 2*segmentLimit/(2*size) + 10 // two segments' worth of body and envelope
	for i := range n {
		m, e := bigOutgoing(friend, i, size)
		if _, err := s.AddOutgoing(ctx, m, e); err != nil {
			t.Fatal(err)
		}
	}
	if s.commits.j.seg < 2 {
		t.Fatalf("after %d writes of %d KiB the journal is at segment %d, want a new one", n, 2*size>>10, s.commits.j.seg)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(segmentFiles(t, dir)) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("old segments never removed: %v", segmentFiles(t, dir))
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Fatalf("journal segments still there after a clean close: %v", segs)
	}
	// The last segment is kept, zeroed, as the next Open's spare.
	spare, err := os.ReadFile(filepath.Join(dir, journalDir, spareName))
	if err != nil {
		t.Fatalf("no spare after a clean close: %v", err)
	}
	if len(spare) < segmentLimit || !bytes.Equal(spare, make([]byte, len(spare))) {
		t.Fatalf("the spare (%d bytes) is not a zeroed segment", len(spare))
	}
	s2 := openTest(t, dir, c)
	if _, err := os.Stat(filepath.Join(dir, journalDir, spareName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open did not take the spare as its segment: %v", err)
	}
	if got := allMessages(t, s2, DirectConversation(friend)); len(got) != n {
		t.Fatalf("%d messages after reopen, want %d", len(got), n)
	}
}

// TestWritesGoThroughJournal holds the package to its rule: badger is
// written only by set, setEntry and del (writes.go) and by the journal's
// replay, so that no write escapes the journal.
func TestWritesGoThroughJournal(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	raw := regexp.MustCompile(`\.(Set|SetEntry|Delete)\(`)
	allowed := map[string]bool{"writes.go": true, "journal.go": true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || allowed[f] {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if raw.MatchString(line) && strings.Contains(line, "txn") {
				t.Errorf("%s:%d writes badger directly (use s.set, s.setEntry or s.del): %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
