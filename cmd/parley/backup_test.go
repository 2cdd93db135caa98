package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupCommandRefusals: parley backup refuses a node that runs and a
// wrong passphrase, and leaves no file (nor a temporary one) behind;
// parley restore refuses a file that is no backup and changes nothing.
func TestBackupCommandRefusals(t *testing.T) {
	clearParleyEnv(t)
	n := registeredNode(t, "alice-2048", "Alice")
	dir := n.DataDir()
	work := t.TempDir()
	out := filepath.Join(work, "alice.age")
	wrong := filepath.Join(work, "wrong")
	right := filepath.Join(work, "right")
	os.WriteFile(wrong, []byte("not the passphrase\n"), 0o600)
	os.WriteFile(right, []byte(testPass+"\n"), 0o600)
	backup := func(pass string) error {
		var o, e bytes.Buffer
		return run(context.Background(), []string{"backup", "--data-dir", dir, "--out", out, "--passphrase-file", pass}, &o, &e)
	}
	if err := backup(right); err == nil || !strings.Contains(err.Error(), "another running parley") {
		t.Fatalf("backup of a running node: %v", err)
	}
	n.Close()
	if err := backup(wrong); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("backup with a wrong passphrase: %v", err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 2 {
		t.Fatalf("a refused backup left files: %v", ents)
	}
	var o, e bytes.Buffer
	err := run(context.Background(), []string{"backup", "--data-dir", dir}, &o, &e)
	if err == nil || exitCode(err) != 2 {
		t.Fatalf("backup without --out: %v", err)
	}

	// restore: not a backup; into the existing identity without --force.
	notBackup := filepath.Join(work, "note.txt")
	os.WriteFile(notBackup, []byte("hello\n"), 0o600)
	target := filepath.Join(work, "target")
	err = run(context.Background(), []string{"restore", "--in", notBackup, "--data-dir", target, "--passphrase-file", right}, &o, &e)
	if err == nil || !strings.Contains(err.Error(), "not a Parley backup") {
		t.Fatalf("restore of a text file: %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a refused restore made %s", target)
	}
}
