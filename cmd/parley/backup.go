package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/parley-chat/parley/node"
)

// backupConfig is what `parley backup` and `parley restore` were told.
type backupConfig struct {
	dataDir        string
	file           string // --out or --in
	passphraseFile string
	force          bool
	test           testSettings
}

// parseBackupConfig reads the flags of backup (restore false) or restore.
func parseBackupConfig(name string, args []string, getenv func(string) string, out io.Writer) (backupConfig, error) {
	var c backupConfig
	restore := name == "restore"
	var fs *flag.FlagSet
	if restore {
		fs = newFlagSet("parley restore", "parley restore --in FILE [--data-dir DIR] [--force]",
			"Restores a stopped node from a backup file (parley backup). The data directory\n"+
				"must not hold an identity, unless --force replaces it. Nothing in it changes\n"+
				"unless the whole file reads and checks. The passphrase is the node's at the\n"+
				"time of the backup, read from --passphrase-file or a terminal prompt.")
	} else {
		fs = newFlagSet("parley backup", "parley backup --out FILE [--data-dir DIR]",
			"Writes the whole stopped node (keys, friends, sessions, history) to one file,\n"+
				"encrypted under its passphrase (age, scrypt). For a running node use\n"+
				"POST /api/v1/backup, or Settings > Download backup in the web UI.")
	}
	fs.StringVar(&c.dataDir, "data-dir", getenv(envDataDir), "the node's data `directory` (default ~/.parley) ["+envDataDir+"]")
	if restore {
		fs.StringVar(&c.file, "in", "", "the backup `file` to restore")
		fs.BoolVar(&c.force, "force", false, "replace the identity already in the data directory")
	} else {
		fs.StringVar(&c.file, "out", "", "the backup `file` to write (replaced atomically)")
	}
	fs.StringVar(&c.passphraseFile, "passphrase-file", getenv(envPassphraseFile),
		"read the passphrase from this `file` instead of prompting ["+envPassphraseFile+"]")
	if err := parseFlags(fs, args, out); err != nil {
		return c, err
	}
	if c.file == "" {
		flagName := "--out"
		if restore {
			flagName = "--in"
		}
		return c, fmt.Errorf("parley %s: %s is required: %w", name, flagName, errUsage)
	}
	var err error
	if c.dataDir == "" {
		if c.dataDir, err = defaultDataDir(); err != nil {
			return c, fmt.Errorf("parley %s: %w", name, err)
		}
	}
	if c.test, err = readTestSettings(getenv); err != nil {
		return c, fmt.Errorf("parley %s: %v: %w", name, err, errUsage)
	}
	return c, nil
}

// runBackup is `parley backup`.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseBackupConfig("backup", args, os.Getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	pass, err := readPassphrase(c.passphraseFile, false, stderr)
	if err != nil {
		return fmt.Errorf("parley backup: %w", err)
	}
	defer wipe(pass)
	err = writeFileAtomic(c.file, func(w io.Writer) error {
		return node.BackupDir(ctx, c.dataDir, pass, w, node.BackupOptions{WorkFactor: c.test.backupWork})
	})
	switch {
	case errors.Is(err, node.ErrBadPassphrase):
		return fmt.Errorf("parley backup: wrong passphrase for %s", c.dataDir)
	case err != nil:
		return fmt.Errorf("parley backup: %w", err)
	}
	auditCLI(c.dataDir, "backup_made", map[string]string{"via": "cli"})
	fmt.Fprintf(stdout, "Backup of %s written to %s\n", c.dataDir, c.file)
	return nil
}

// runRestore is `parley restore`.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseBackupConfig("restore", args, os.Getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	f, err := os.Open(c.file)
	if err != nil {
		return fmt.Errorf("parley restore: %w", err)
	}
	defer f.Close()
	pass, err := readPassphrase(c.passphraseFile, false, stderr)
	if err != nil {
		return fmt.Errorf("parley restore: %w", err)
	}
	defer wipe(pass)
	dir, err := filepath.Abs(c.dataDir)
	if err != nil {
		return fmt.Errorf("parley restore: %w", err)
	}
	r, err := node.Restore(ctx, f, dir, pass, node.RestoreOptions{Force: c.force})
	switch {
	case errors.Is(err, node.ErrBadPassphrase):
		return fmt.Errorf("parley restore: wrong passphrase for %s (nothing changed)", c.file)
	case errors.Is(err, node.ErrBackupCorrupt):
		return fmt.Errorf("parley restore: %s is damaged or truncated (nothing changed): %w", c.file, err)
	case errors.Is(err, node.ErrNotBackup):
		return fmt.Errorf("parley restore: %s is not a Parley backup (nothing changed): %w", c.file, err)
	case errors.Is(err, node.ErrExists):
		return fmt.Errorf("parley restore: %w (nothing changed)", err)
	case err != nil:
		return fmt.Errorf("parley restore: %w (nothing changed)", err)
	}
	auditCLI(dir, "backup_restored", map[string]string{"via": "cli", "backup_created": r.Created.Format("2006-01-02T15:04:05Z")})
	fmt.Fprintf(stdout, "Restored user %s (peer %s), backed up %s, into %s\n",
		r.UserID, r.PeerID, r.Created.Format("2006-01-02 15:04 MST"), dir)
	return nil
}

// writeFileAtomic writes path from fill: a temporary file beside it
// (mode 0600), synced, renamed over path, the directory synced. A failure
// leaves no file at path (nor a temporary one).
func writeFileAtomic(path string, fill func(io.Writer) error) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
