package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// stateFile is the node's small plaintext file beside the store. It holds
// what the node needs while locked: the device's peer ID (for `parley id`)
// and the login throttle, which must survive a restart. Nothing in it is
// secret.
const stateFile = "node.json"

type nodeState struct {
	PeerID string `json:"peer_id,omitempty"`
	// UserID and Name say whose node it is while it is locked (the login
	// screen); both are public (the directory record carries them).
	UserID        string `json:"user_id,omitempty"`
	Name          string `json:"name,omitempty"`
	LoginFailures int    `json:"login_failures,omitempty"`
	// LoginNotBefore is when the next passphrase may be tried (unix ms).
	LoginNotBefore int64 `json:"login_not_before,omitempty"`
}

func readState(dir string) (nodeState, error) {
	var st nodeState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("node: read %s: %w", stateFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("node: parse %s: %w", stateFile, err)
	}
	return st, nil
}

// writeState replaces the state file atomically and durably.
func writeState(dir string, st nodeState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, stateFile), b, 0o600); err != nil {
		return fmt.Errorf("node: write %s: %w", stateFile, err)
	}
	return nil
}

// writeFileAtomic replaces path with b: a synced temporary file renamed
// over it, then the directory synced, so a crash leaves the old file or
// the new one.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// Login throttling: the first freeTries wrong passphrases cost nothing but
// the KDF; after that each wrong one doubles the wait before the next try,
// from Config.LoginBackoff (DefaultLoginBackoff) up to throttleMax.
const (
	freeTries   = 5
	throttleMax = 15 * time.Minute
)

// throttleWait is the wait after the n-th consecutive wrong passphrase,
// starting from base.
func throttleWait(n int, base time.Duration) time.Duration {
	if n < freeTries {
		return 0
	}
	d := base
	for i := freeTries; i < n && d < throttleMax; i++ {
		d *= 2
	}
	return min(d, throttleMax)
}
