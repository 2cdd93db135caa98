package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/store"
)

// runID is `parley id [--data-dir DIR]`: it prints the identity of a data
// directory. It needs no passphrase and opens no database, so it works
// while the node is locked and while another process runs it.
func runID(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("parley id", "parley id [--data-dir DIR]",
		"Prints the user ID, peer ID and fingerprint of a data directory. It needs no\n"+
			"passphrase and works while the node runs.")
	dataDir := fs.String("data-dir", os.Getenv(envDataDir), "the node's data `directory` (default ~/.parley) ["+envDataDir+"]")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	dir := *dataDir
	if dir == "" {
		var err error
		if dir, err = defaultDataDir(); err != nil {
			return fmt.Errorf("parley id: %w", err)
		}
	}
	id, err := node.ReadIdentity(dir)
	if errors.Is(err, store.ErrNoStore) {
		return fmt.Errorf("parley id: no identity in %s (run 'parley run' and register first)", dir)
	}
	if err != nil {
		return fmt.Errorf("parley id: %w", err)
	}
	if _, err := fmt.Fprint(stdout, id.String()); err != nil {
		return fmt.Errorf("parley id: %w", err)
	}
	return nil
}
