package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-chat/parley/api"
)

// parleyCmd runs the parley binary with args (the test environment, as
// childEnv makes it) and returns its combined output and error.
func parleyCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(parleyBinary(t), args...)
	cmd.Env = childEnv()
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBackupWipeRestore is the move to a new machine, with real
// processes: Alice and Bob chat; Alice downloads a backup from her
// running node; her data directory is wiped; parley restore refuses a
// wrong passphrase and a truncated file, then restores; Alice starts,
// Bob's next message arrives and is stored once, her history is
// complete, and her next message reaches Bob once.
func TestBackupWipeRestore(t *testing.T) {
	a, b := startPair(t)
	a.send(b.userID, "before the move 1")
	b.send(a.userID, "before the move 2")
	waitFor(t, waitTimeout, "both messages delivered", func() bool {
		ms := a.messages(b.userID)
		return len(ms) == 2 && split(ms, "out")[0].Status == "delivered" && len(b.messages(a.userID)) == 2
	})

	// The running node's backup: a wrong passphrase is 403 and no file.
	resp, body := a.call("POST", "/api/v1/backup", map[string]string{"passphrase": "not the passphrase"}, nil)
	if resp.StatusCode != http.StatusForbidden || errorCode(body) != "forbidden" {
		t.Fatalf("backup with a wrong passphrase: %s %s", resp.Status, body)
	}
	resp, backup := a.call("POST", "/api/v1/backup", map[string]string{"passphrase": testPass}, nil)
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(backup, []byte("age-encryption.org/v1\n")) {
		t.Fatalf("backup: %s, %d bytes", resp.Status, len(backup))
	}
	work := t.TempDir()
	file := filepath.Join(work, "alice.age")
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}

	// The offline command refuses a running node.
	if out, err := parleyCmd(t, "backup", "--data-dir", a.dataDir, "--out", filepath.Join(work, "offline.age"),
		"--passphrase-file", a.passFile); err == nil || !strings.Contains(out, "another running parley") {
		t.Fatalf("offline backup of a running node: %v\n%s", err, out)
	}
	a.stop()
	if out, err := parleyCmd(t, "backup", "--data-dir", a.dataDir, "--out", filepath.Join(work, "offline.age"),
		"--passphrase-file", a.passFile); err != nil {
		t.Fatalf("offline backup: %v\n%s", err, out)
	}

	// The old machine's audit log has the backups, the refused one too.
	checkAudit(t, auditOf(t, a.dataDir), "backup_made", "backup_refused", "friend_accepted", "registered")

	// The old machine is gone.
	if err := os.RemoveAll(a.dataDir); err != nil {
		t.Fatal(err)
	}
	wrongPass := filepath.Join(work, "wrong")
	os.WriteFile(wrongPass, []byte("not the passphrase\n"), 0o600)
	truncated := filepath.Join(work, "truncated.age")
	os.WriteFile(truncated, backup[:len(backup)-50], 0o600)
	for _, c := range []struct{ in, pass, want string }{
		{file, wrongPass, "wrong passphrase"},
		{truncated, a.passFile, "damaged or truncated"},
	} {
		out, err := parleyCmd(t, "restore", "--in", c.in, "--data-dir", a.dataDir, "--passphrase-file", c.pass)
		if err == nil || !strings.Contains(out, c.want) {
			t.Fatalf("restore of %s: %v, want %q\n%s", filepath.Base(c.in), err, c.want, out)
		}
		if _, err := os.Stat(a.dataDir); !os.IsNotExist(err) {
			t.Fatalf("a refused restore left %s behind: %v", a.dataDir, err)
		}
	}
	if out, err := parleyCmd(t, "restore", "--in", file, "--data-dir", a.dataDir, "--passphrase-file", a.passFile); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if out, err := parleyCmd(t, "restore", "--in", file, "--data-dir", a.dataDir, "--passphrase-file", a.passFile); err == nil ||
		!strings.Contains(out, "--force") {
		t.Fatalf("a second restore over the identity: %v\n%s", err, out)
	}

	// Alice on the new machine: same data directory path and addresses.
	a2 := startProc(t, "alice", a.dataDir, a.listen, a.passFile)
	a2.userID, a2.invite, a2.listen, a2.passFile = a.userID, a.invite, a.listen, a.passFile
	a2.login()
	b.send(a.userID, "after the move 3")
	waitFor(t, waitTimeout, "Bob's message after the move reaches Alice", func() bool {
		return len(a2.messages(b.userID)) == 3
	})
	a2.send(b.userID, "after the move 4")
	waitFor(t, waitTimeout, "Alice's message after the move reaches Bob", func() bool {
		return len(b.messages(a.userID)) == 4
	})
	all := []string{"before the move 1", "before the move 2", "after the move 3", "after the move 4"}
	checkExactlyOnce(t, "alice", a2.messages(b.userID), all, "")
	checkExactlyOnce(t, "bob", b.messages(a.userID), all, "")

	// The audit log: the backup and the restore, and no message text or
	// passphrase in any line of either node.
	var events struct{ Events []api.AuditEvent }
	a2.must("GET", "/api/v1/audit?limit=100", nil, http.StatusOK, &events)
	checkAudit(t, events.Events, "backup_restored", "login", "token_issued")
	b.must("GET", "/api/v1/audit?limit=100", nil, http.StatusOK, &events)
	checkAudit(t, events.Events, "registered", "friend_request", "friend_added")
	for _, p := range []*proc{a2, b} {
		for _, secret := range append(all, testPass, "not the passphrase") {
			if hits, _ := filesContaining(t, p.dataDir, []byte(secret)); len(hitsNamed(hits, "audit")) > 0 {
				t.Errorf("%s: %q in %v", p.name, secret, hits)
			}
		}
	}
}

// hitsNamed keeps the paths whose base name starts with prefix.
func hitsNamed(paths []string, prefix string) []string {
	var out []string
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), prefix) {
			out = append(out, p)
		}
	}
	return out
}

// auditOf reads the audit log of a stopped node's data directory.
func auditOf(t *testing.T, dir string) []api.AuditEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var evs []api.AuditEvent
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var e api.AuditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// checkAudit checks that events holds each of want.
func checkAudit(t *testing.T, events []api.AuditEvent, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range events {
		seen[e.Event] = true
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("the audit log has no %s: %+v", w, events)
		}
	}
}
