package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func openTest(t *testing.T, o Options) (*Log, string) {
	t.Helper()
	dir := t.TempDir()
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	if o.Now == nil {
		o.Now = c.now
	}
	l, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir
}

// lines reads every line of the log files in dir, checking each is one
// JSON object.
func lines(t *testing.T, dir string) []Event {
	t.Helper()
	var out []Event
	files, _ := filepath.Glob(filepath.Join(dir, File+"*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if ln == "" {
				continue
			}
			var e Event
			if err := json.Unmarshal([]byte(ln), &e); err != nil {
				t.Fatalf("%s: line %q: %v", f, ln, err)
			}
			out = append(out, e)
		}
	}
	return out
}

// TestRecordKeepsOnlyIdentifiers: a field outside the allowed list (a
// caller's mistake carrying a text or a passphrase) never reaches the
// file.
func TestRecordKeepsOnlyIdentifiers(t *testing.T) {
	l, dir := openTest(t, Options{})
	l.Record(LoginFailed, map[string]string{"via": "api", "passphrase": "hunter2 hunter2", "text": "secret message"})
	l.Record(FriendAdded, map[string]string{"user_id": "abc", "name": "Bob"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, File))
	for _, s := range []string{"hunter2", "secret message", "Bob"} {
		if strings.Contains(string(b), s) {
			t.Fatalf("the log holds %q:\n%s", s, b)
		}
	}
	evs := lines(t, dir)
	if len(evs) != 2 || evs[0].Type != LoginFailed || evs[0].Fields["via"] != "api" || evs[1].Fields["user_id"] != "abc" {
		t.Fatalf("lines %+v", evs)
	}
	if fi, _ := os.Stat(filepath.Join(dir, File)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}
}

// TestRefusalsCounted: a thousand refusals from two peers are two lines,
// one per peer and code, with their counts.
func TestRefusalsCounted(t *testing.T) {
	l, dir := openTest(t, Options{})
	for range 700 {
		l.Refused("peerA", "bad_signature")
	}
	for range 300 {
		l.Refused("peerB", "replay")
	}
	l.Refused("peerA", "replay")
	l.Flush()
	evs := lines(t, dir)
	got := map[string]string{}
	for _, e := range evs {
		if e.Type != EnvelopesRefused {
			t.Fatalf("line %+v", e)
		}
		got[e.Fields["peer_id"]+"/"+e.Fields["code"]] = e.Fields["count"]
	}
	want := map[string]string{"peerA/bad_signature": "700", "peerB/replay": "300", "peerA/replay": "1"}
	if len(got) != len(want) {
		t.Fatalf("refusal lines %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: count %s, want %s", k, got[k], v)
		}
	}
}

// TestRotationBounded: the files never pass MaxSize each nor MaxFiles in
// number, and Recent reads across them newest first.
func TestRotationBounded(t *testing.T) {
	l, dir := openTest(t, Options{MaxSize: 2000, MaxFiles: 3})
	const n = 200
	for i := range n {
		l.Record(Login, map[string]string{"count": strings.Repeat("9", 3) + string(rune('a'+i%26))})
	}
	files, _ := filepath.Glob(filepath.Join(dir, File+"*"))
	if len(files) != 3 {
		t.Fatalf("files %v, want 3", files)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > 2000 {
			t.Errorf("%s is %d bytes", f, fi.Size())
		}
	}
	recent, err := l.Recent(1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) == 0 || len(recent) >= n {
		t.Fatalf("recent has %d events", len(recent))
	}
	for i := 1; i < len(recent); i++ {
		if !recent[i].Time.Before(recent[i-1].Time) {
			t.Fatalf("recent not newest first at %d: %v then %v", i, recent[i-1].Time, recent[i].Time)
		}
	}
	if got, _ := l.Recent(5); len(got) != 5 || !got[0].Time.Equal(recent[0].Time) {
		t.Fatalf("Recent(5) = %v", got)
	}
}

// TestReopenAppends: a second Open appends to the same file.
func TestReopenAppends(t *testing.T) {
	l, dir := openTest(t, Options{})
	l.Record(Registered, nil)
	l.Close()
	l2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l2.Record(Login, nil)
	l2.Close()
	if evs := lines(t, dir); len(evs) != 2 {
		t.Fatalf("lines %+v", evs)
	}
	var nilLog *Log
	nilLog.Record(Login, nil) // records nothing, does not panic
}
