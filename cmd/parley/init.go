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
	"github.com/parley-chat/parley/protocol"
)

// initConfig is what `parley init` was told.
type initConfig struct {
	dataDir        string
	name           string
	passphraseFile string
	test           testSettings
}

func parseInitConfig(args []string, getenv func(string) string, out io.Writer) (initConfig, error) {
	var c initConfig
	fs := newFlagSet("parley init", "parley init --name NAME [--data-dir DIR] [--passphrase-file FILE]",
		"Creates an identity without the web UI, for servers and scripts: the RSA key,\n"+
			"the encrypted store and the host key. The passphrase comes from --passphrase-file\n"+
			"or a terminal prompt (asked twice). Then `parley run --passphrase-file FILE`\n"+
			"starts the node unlocked.")
	fs.StringVar(&c.dataDir, "data-dir", getenv(envDataDir), "the node's data `directory` (default ~/.parley) ["+envDataDir+"]")
	fs.StringVar(&c.name, "name", "", "the display `name` (a label others see; not an identity)")
	fs.StringVar(&c.passphraseFile, "passphrase-file", getenv(envPassphraseFile),
		"read the passphrase from this `file` (one trailing newline is ignored) ["+envPassphraseFile+"]")
	if err := parseFlags(fs, args, out); err != nil {
		return c, err
	}
	if c.name == "" {
		return c, fmt.Errorf("parley init: --name is required: %w", errUsage)
	}
	var err error
	if c.dataDir == "" {
		if c.dataDir, err = defaultDataDir(); err != nil {
			return c, fmt.Errorf("parley init: %w", err)
		}
	}
	if c.test, err = readTestSettings(getenv); err != nil {
		return c, fmt.Errorf("parley init: %v: %w", err, errUsage)
	}
	return c, nil
}

// runInit is `parley init`.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseInitConfig(args, os.Getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	pass, err := readPassphrase(c.passphraseFile, true, stderr)
	if err != nil {
		return fmt.Errorf("parley init: %w", err)
	}
	defer wipe(pass)
	return initNode(ctx, c, pass, nil, stdout)
}

// initNode registers c.name on a new node in c.dataDir and closes it.
// newKey, when set, makes the identity key (tests hand in fixtures).
func initNode(ctx context.Context, c initConfig, pass []byte, newKey func(int) (*protocol.PrivateKey, error), stdout io.Writer) (err error) {
	n, err := node.New(node.Config{
		DataDir: c.dataDir,
		// A host must run to make the identity: on loopback, any port,
		// so that init never meets a running node's port.
		Listen:  []string{"/ip4/127.0.0.1/tcp/0"},
		Logger:  slog.New(slog.DiscardHandler),
		KDF:     c.test.kdf,
		KeyBits: c.test.keyBits,
		NewKey:  newKey,
	})
	if err != nil {
		return fmt.Errorf("parley init: %w", err)
	}
	defer func() {
		if cerr := n.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("parley init: %w", cerr)
		}
	}()
	if n.State() != node.StateNew {
		return fmt.Errorf("parley init: %s already holds an identity (parley id shows it): %w", c.dataDir, node.ErrExists)
	}
	if err := n.Register(ctx, c.name, pass); err != nil {
		return fmt.Errorf("parley init: %w", err)
	}
	me, err := n.Me(ctx)
	if err != nil {
		return fmt.Errorf("parley init: %w", err)
	}
	auditCLI(c.dataDir, "registered", map[string]string{"via": "cli", "user_id": me.UserID.String()})
	fmt.Fprintf(stdout, "Created %s in %s\nuser ID:     %s\npeer ID:     %s\nfingerprint: %s\ninvite:      %s\n",
		me.Name, c.dataDir, me.UserID, me.PeerID, me.Fingerprint, me.Invite)
	return nil
}
