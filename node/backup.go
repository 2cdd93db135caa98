package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/parley-chat/parley/node/archive"
	"github.com/parley-chat/parley/store"
)

// A backup (package node/archive) holds the store's metadata file, the
// node's state file and the whole database stream: identity and host
// keys, prekeys, friends and pins, sessions, conversations, messages, the
// outbox and the seen-ID cache. The lock file and the audit log are not
// in it: they belong to a machine, not to the identity.
var backupFiles = []string{store.MetaFile, stateFile}

// Backup errors.
var (
	// ErrBackupCorrupt is a backup file that is truncated or was changed.
	ErrBackupCorrupt = archive.ErrCorrupt
	// ErrNotBackup is a file that is not a Parley backup.
	ErrNotBackup = archive.ErrNotBackup
)

// BackupOptions tune a backup.
type BackupOptions struct {
	// WorkFactor is the backup file's scrypt log2(N) (0: age's default,
	// 18); tests lower it.
	WorkFactor int
}

// Backup writes an encrypted backup of the running node to w. The
// passphrase must be the node's: it is checked as a second login is (in
// constant time, counted by the login throttle) before anything is
// written, so a wrong one is ErrBadPassphrase (or ErrThrottled) and w
// stays empty. The database part is one consistent snapshot.
func (n *Node) Backup(ctx context.Context, passphrase []byte, w io.Writer) error {
	u, err := n.running()
	if err != nil {
		return err
	}
	if err := n.Unlock(ctx, passphrase); err != nil {
		return err
	}
	if err := writeBackup(ctx, n.cfg.DataDir, u.st, passphrase, w, BackupOptions{WorkFactor: n.cfg.BackupWorkFactor}); err != nil {
		return err
	}
	n.log.Info("backup written")
	return nil
}

// BackupDir writes an encrypted backup of the stopped node in dir to w.
// It takes the data directory's lock (ErrInUse while a node runs on it)
// and opens the store with passphrase (ErrBadPassphrase if wrong).
func BackupDir(ctx context.Context, dir string, passphrase []byte, w io.Writer, o BackupOptions) error {
	if !store.Exists(dir) {
		return fmt.Errorf("%w: no identity in %s", ErrWrongState, dir)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	st, err := store.Open(dir, passphrase, store.Options{})
	releaseKDFMemory()
	if errors.Is(err, store.ErrBadPassphrase) {
		return ErrBadPassphrase
	}
	if err != nil {
		return fmt.Errorf("node: open store: %w", err)
	}
	defer st.Close()
	return writeBackup(ctx, dir, st, passphrase, w, o)
}

func writeBackup(ctx context.Context, dir string, st *store.Store, passphrase []byte, w io.Writer, o BackupOptions) error {
	ns, err := readState(dir)
	if err != nil {
		return err
	}
	m := archive.Manifest{
		Created: time.Now().UTC(),
		UserID:  st.UserID().String(),
		PeerID:  ns.PeerID,
		Files:   make(map[string][]byte),
	}
	for _, name := range backupFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("node: backup: %w", err)
		}
		m.Files[name] = b
	}
	err = archive.Write(w, passphrase, m, func(w io.Writer) error {
		_, err := st.Backup(ctx, w)
		return err
	}, archive.Options{WorkFactor: o.WorkFactor})
	if err != nil {
		return fmt.Errorf("node: backup: %w", err)
	}
	return nil
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Force replaces an identity that is already in the data directory.
	Force bool
}

// Restored describes what Restore put in place.
type Restored struct {
	UserID  string
	PeerID  string
	Created time.Time // when the backup was made
}

// Restore makes dir the node of the backup read from r, for a stopped
// node. It refuses (ErrExists) a dir that holds an identity unless
// o.Force, and a dir in use (ErrInUse). It restores into a new directory
// beside dir and renames it into place only when everything was read and
// checked, so a wrong passphrase (ErrBadPassphrase), a damaged or
// truncated file (ErrBackupCorrupt) or any other failure leaves dir as it
// was. The passphrase is the node's at the time of the backup; it stays
// the passphrase of the restored node.
func Restore(ctx context.Context, r io.Reader, dir string, passphrase []byte, o RestoreOptions) (*Restored, error) {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	exists := false
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("%w: %s is not a directory", ErrInvalid, dir)
		}
		exists = true
		lock, err := lockDir(dir)
		if err != nil {
			return nil, err
		}
		defer lock.Close()
		if err := checkReplaceable(dir, o.Force); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("node: restore: %w", err)
	}

	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".restore-")
	if err != nil {
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	placed := false
	defer func() {
		if !placed {
			os.RemoveAll(tmp)
		}
	}()
	m, body, err := archive.Open(r, passphrase)
	if errors.Is(err, archive.ErrBadPassphrase) {
		return nil, ErrBadPassphrase
	}
	if err != nil {
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	if _, ok := m.Files[store.MetaFile]; !ok {
		return nil, fmt.Errorf("node: restore: %w: no %s in the backup", archive.ErrCorrupt, store.MetaFile)
	}
	for name, b := range m.Files {
		if !slices.Contains(backupFiles, name) {
			return nil, fmt.Errorf("node: restore: %w: unexpected file %q in the backup", archive.ErrCorrupt, name)
		}
		if name == stateFile {
			// The login throttle is the old machine's business.
			b, err = resetThrottle(b)
			if err != nil {
				return nil, fmt.Errorf("node: restore: %w: %v", archive.ErrCorrupt, err)
			}
		}
		if err := writeFileAtomic(filepath.Join(tmp, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("node: restore: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err = store.Load(tmp, passphrase, body, store.Options{})
	releaseKDFMemory()
	switch {
	case errors.Is(err, archive.ErrCorrupt):
		return nil, fmt.Errorf("node: restore: %w", archive.ErrCorrupt)
	case errors.Is(err, store.ErrBadPassphrase):
		// The file opened with this passphrase but its store does not:
		// a backup of a node whose passphrase was another.
		return nil, fmt.Errorf("node: restore: %w: the backup's store is locked with another passphrase", ErrBadPassphrase)
	case err != nil:
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	// age checks the end of the file when the body is read to its end;
	// Load stopped at the end of badger's stream, which is the same place.
	if n, err := io.Copy(io.Discard, body); err != nil || n != 0 {
		return nil, fmt.Errorf("node: restore: %w: trailing data", archive.ErrCorrupt)
	}
	syncDir(tmp)

	// Swap: the old directory aside, the new one in, the old one gone.
	if exists {
		old := tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return nil, fmt.Errorf("node: restore: moving %s aside: %w", dir, err)
		}
		keepAudit(old, tmp)
		if err := os.Rename(tmp, dir); err != nil {
			keepAudit(tmp, old)
			os.Rename(old, dir)
			return nil, fmt.Errorf("node: restore: %w", err)
		}
		placed = true
		os.RemoveAll(old)
	} else {
		if err := os.Rename(tmp, dir); err != nil {
			return nil, fmt.Errorf("node: restore: %w", err)
		}
		placed = true
	}
	syncDir(parent)
	return &Restored{UserID: m.UserID, PeerID: m.PeerID, Created: m.Created}, nil
}

// checkReplaceable allows replacing an existing data directory: one with
// an identity only with force; one without, only when it holds nothing
// but the files a node that never registered leaves (or with force).
func checkReplaceable(dir string, force bool) error {
	if force {
		return nil
	}
	if store.Exists(dir) {
		return fmt.Errorf("%w: %s already holds an identity; restore with --force to replace it", ErrExists, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("node: restore: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if name == lockFile || name == stateFile || strings.HasPrefix(name, "audit") {
			continue
		}
		return fmt.Errorf("%w: %s holds %s, which is not a node's; restore with --force to replace the directory", ErrExists, dir, name)
	}
	return nil
}

// resetThrottle clears the login throttle in a state file's bytes.
func resetThrottle(b []byte) ([]byte, error) {
	var ns nodeState
	if err := json.Unmarshal(b, &ns); err != nil {
		return nil, fmt.Errorf("%s: %v", stateFile, err)
	}
	ns.LoginFailures, ns.LoginNotBefore = 0, 0
	return json.MarshalIndent(ns, "", "  ")
}

// keepAudit moves the audit log files of the directory being replaced
// into its replacement: they are this machine's record.
func keepAudit(from, to string) {
	ents, err := os.ReadDir(from)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "audit") && e.Type().IsRegular() {
			os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name()))
		}
	}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
