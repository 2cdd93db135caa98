package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/parley-chat/parley/node"
)

// runRotateKey is `parley rotate-key`: it replaces the identity key of a
// node that is not running. The new record is published, and friends get
// the new card, the next time the node runs (or at once over the API of a
// running node: POST /api/v1/keys/rotate).
func runRotateKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("parley rotate-key", "parley rotate-key [flags]",
		"Replaces the RSA identity key of a stopped node by a new one, signed by the old key.\n"+
			"The user ID and the safety numbers stay the same; friends move to the new key\n"+
			"through the directory. The old key still opens messages for 14 days.")
	dataDir := fs.String("data-dir", os.Getenv(envDataDir), "the node's data `directory` (default ~/.parley) ["+envDataDir+"]")
	passFile := fs.String("passphrase-file", os.Getenv(envPassphraseFile),
		"the `file` holding the passphrase (one trailing newline is ignored) ["+envPassphraseFile+"]")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *passFile == "" {
		return fmt.Errorf("parley rotate-key: --passphrase-file is required: %w", errUsage)
	}
	if *dataDir == "" {
		d, err := defaultDataDir()
		if err != nil {
			return fmt.Errorf("parley rotate-key: %w", err)
		}
		*dataDir = d
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	test, err := readTestSettings(os.Getenv)
	if err != nil {
		return fmt.Errorf("parley rotate-key: %v: %w", err, errUsage)
	}
	n, err := node.New(node.Config{
		DataDir: *dataDir, Logger: log, KeyBits: test.keyBits,
		// Only to run the node for the rotation: nobody needs to reach it.
		Listen: []string{"/ip4/127.0.0.1/tcp/0"},
	})
	if err != nil {
		return fmt.Errorf("parley rotate-key: %w", err)
	}
	defer n.Close()
	if err := unlockFromFile(ctx, n, *passFile, log); err != nil {
		return fmt.Errorf("parley rotate-key: %w", err)
	}
	if err := n.RotateKey(ctx); err != nil {
		return fmt.Errorf("parley rotate-key: %w", err)
	}
	me, err := n.Me(ctx)
	if err != nil {
		return fmt.Errorf("parley rotate-key: %w", err)
	}
	auditCLI(n.DataDir(), "key_rotated", map[string]string{"via": "cli"})
	fmt.Fprintf(stdout, "Rotated the identity key of %s (fingerprint %s, unchanged).\n", me.UserID, me.Fingerprint)
	return n.Close()
}
