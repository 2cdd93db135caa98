package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/store"
)

// backupConfig is testConfig with a cheap backup KDF.
func backupConfig(tb testing.TB, key string) Config {
	cfg := testConfig(tb, key)
	cfg.BackupWorkFactor = 10
	return cfg
}

// chattedPair is two friends who exchanged a few messages, all delivered.
func chattedPair(t *testing.T) (a, b *Node) {
	t.Helper()
	ctx := context.Background()
	a = startNode(t, backupConfig(t, "alice-2048"), "alice")
	b = startNode(t, backupConfig(t, "bob-2048"), "bob")
	befriend(t, a, b)
	ma, mb := meOf(t, a), meOf(t, b)
	for _, s := range []string{"one", "two"} {
		if _, err := a.Send(ctx, mb.UserID, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Send(ctx, ma.UserID, "three"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "all delivered", func() bool {
		h := convHistory(t, a, mb.UserID)
		return len(h) == 3 && allStatus(outgoing(h), store.StatusDelivered)
	})
	return a, b
}

func outgoing(ms []store.Message) []store.Message {
	var out []store.Message
	for _, m := range ms {
		if m.Direction == store.Out {
			out = append(out, m)
		}
	}
	return out
}

// dirSnapshot is the names and sizes of everything under dir, to show
// that a refused restore changed nothing.
func dirSnapshot(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	snap := make(map[string]int64)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			snap[p] = fi.Size()
		}
		return nil
	})
	return snap
}

func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	a, b := chattedPair(t)
	ma, mb := meOf(t, a), meOf(t, b)
	before := convHistory(t, a, mb.UserID)

	// A wrong passphrase writes nothing.
	var buf bytes.Buffer
	if err := a.Backup(ctx, []byte("wrong passphrase!"), &buf); !errors.Is(err, ErrBadPassphrase) || buf.Len() != 0 {
		t.Fatalf("backup with a wrong passphrase: %v, %d bytes written", err, buf.Len())
	}
	if err := a.Backup(ctx, []byte(testPass), &buf); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	for _, secret := range [][]byte{[]byte("two"), []byte(testPass), []byte(ma.UserID.String())} {
		if bytes.Contains(buf.Bytes(), secret) {
			t.Fatalf("the backup file shows %q in clear", secret)
		}
	}
	closeNode(t, a)

	// Restore on "another machine": a fresh directory.
	dir := filepath.Join(t.TempDir(), "restored")
	got, err := Restore(ctx, bytes.NewReader(buf.Bytes()), dir, []byte(testPass), RestoreOptions{})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got.UserID != ma.UserID.String() || got.PeerID != ma.PeerID.String() {
		t.Fatalf("restored %+v, want user %s peer %s", got, ma.UserID, ma.PeerID)
	}
	cfg := backupConfig(t, "alice-2048")
	cfg.DataDir = dir
	a2 := unlockNode(t, cfg)
	m2 := meOf(t, a2)
	if m2.UserID != ma.UserID || m2.PeerID != ma.PeerID {
		t.Fatalf("restored node is %s/%s, want %s/%s", m2.UserID, m2.PeerID, ma.UserID, ma.PeerID)
	}
	after := convHistory(t, a2, mb.UserID)
	if !slices.Equal(bodies(after), bodies(before)) {
		t.Fatalf("history after restore %q, want %q", bodies(after), bodies(before))
	}
	if st := friendStatus(a2, mb.UserID); st != store.FriendAccepted {
		t.Fatalf("friend status after restore %s", st)
	}

	// The restored directory refuses a second restore without Force.
	if _, err := Restore(ctx, bytes.NewReader(buf.Bytes()), dir, []byte(testPass), RestoreOptions{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("restore over a running node: %v, want ErrInUse", err)
	}
	closeNode(t, a2)
	if _, err := Restore(ctx, bytes.NewReader(buf.Bytes()), dir, []byte(testPass), RestoreOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("restore over an identity: %v, want ErrExists", err)
	}
	if _, err := Restore(ctx, bytes.NewReader(buf.Bytes()), dir, []byte(testPass), RestoreOptions{Force: true}); err != nil {
		t.Fatalf("restore with Force: %v", err)
	}
}

// TestRestoreRefusesBadFiles: a wrong passphrase, a truncated file and a
// flipped byte each fail with their error, and the directory restored
// into (one with an identity, replaced with Force) is unchanged, with no
// leftovers beside it.
func TestRestoreRefusesBadFiles(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, backupConfig(t, "alice-2048"), "alice")
	var buf bytes.Buffer
	if err := a.Backup(ctx, []byte(testPass), &buf); err != nil {
		t.Fatal(err)
	}
	closeNode(t, a)
	file := buf.Bytes()

	// The target: another node's directory, stopped.
	other := startNode(t, backupConfig(t, "bob-2048"), "bob")
	dir := other.DataDir()
	closeNode(t, other)
	parent := filepath.Dir(dir)
	snap, parentSnap := dirSnapshot(t, dir), dirSnapshot(t, parent)

	flipped := bytes.Clone(file)
	flipped[len(flipped)*2/3] ^= 0x04
	cases := []struct {
		name string
		file []byte
		pass string
		want error
	}{
		{"wrong passphrase", file, "not the passphrase", ErrBadPassphrase},
		{"truncated", file[:len(file)-100], testPass, ErrBackupCorrupt},
		{"cut in the header", file[:40], testPass, ErrNotBackup},
		{"flipped byte", flipped, testPass, ErrBackupCorrupt},
		{"not a backup", []byte("hello\n"), testPass, ErrNotBackup},
	}
	for _, c := range cases {
		_, err := Restore(ctx, bytes.NewReader(c.file), dir, []byte(c.pass), RestoreOptions{Force: true})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if got := dirSnapshot(t, parent); !maps(got, parentSnap) {
			t.Errorf("%s: the parent directory changed: %v, was %v", c.name, got, parentSnap)
		}
	}
	if got := dirSnapshot(t, dir); !maps(got, snap) {
		t.Fatalf("the data directory changed")
	}
	// A directory that did not exist is not created by a failed restore.
	fresh := filepath.Join(t.TempDir(), "new")
	if _, err := Restore(ctx, bytes.NewReader(flipped), fresh, []byte(testPass), RestoreOptions{}); !errors.Is(err, ErrBackupCorrupt) {
		t.Fatalf("flipped into a new directory: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(fresh)); len(ents) != 0 {
		t.Fatalf("a failed restore left %v", ents)
	}
}

func maps(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestBackupDir backs up a stopped node, and refuses while it runs.
func TestBackupDir(t *testing.T) {
	ctx := context.Background()
	cfg := backupConfig(t, "alice-2048")
	a := startNode(t, cfg, "alice")
	var buf bytes.Buffer
	o := BackupOptions{WorkFactor: 10}
	if err := BackupDir(ctx, cfg.DataDir, []byte(testPass), &buf, o); !errors.Is(err, ErrInUse) {
		t.Fatalf("offline backup of a running node: %v, want ErrInUse", err)
	}
	me := meOf(t, a)
	closeNode(t, a)
	if err := BackupDir(ctx, cfg.DataDir, []byte("wrong passphrase"), &buf, o); !errors.Is(err, ErrBadPassphrase) || buf.Len() != 0 {
		t.Fatalf("offline backup, wrong passphrase: %v, %d bytes", err, buf.Len())
	}
	if err := BackupDir(ctx, cfg.DataDir, []byte(testPass), &buf, o); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "copy")
	r, err := Restore(ctx, &buf, dir, []byte(testPass), RestoreOptions{})
	if err != nil || r.UserID != me.UserID.String() {
		t.Fatalf("Restore: %+v, %v", r, err)
	}
}

// TestBackupThrottled: wrong passphrases to Backup count as wrong logins,
// so the backup route cannot be used to guess the passphrase faster.
func TestBackupThrottled(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, backupConfig(t, "alice-2048"), "alice")
	var buf bytes.Buffer
	for i := range freeTries {
		if err := a.Backup(ctx, []byte("wrong passphrase!"), &buf); !errors.Is(err, ErrBadPassphrase) {
			t.Fatalf("wrong passphrase %d: %v", i+1, err)
		}
	}
	if err := a.Backup(ctx, []byte(testPass), &buf); !errors.Is(err, ErrThrottled) || buf.Len() != 0 {
		t.Fatalf("backup after %d wrong passphrases: %v, %d bytes, want ErrThrottled and nothing", freeTries, err, buf.Len())
	}
}
