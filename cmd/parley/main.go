// Command parley is the one Parley binary: it creates, runs and maintains a
// node (init, run, relay, id, backup, restore, rotate-key, bench, version).
//
// It stays thin: parsing arguments, signal handling and wiring node to api
// happen here, everything else lives in the packages. Built so far:
//
//   - run (run.go): a node with the local API on 127.0.0.1:7733 (or over
//     TLS), until SIGINT or SIGTERM; flags and PARLEY_* environment
//     variables. Its test-only PARLEY_TEST_* settings exist only in a
//     binary built with the parleytest tag (testsettings_on.go), as the
//     end-to-end tests build it;
//   - id (id.go): the user ID, peer ID and fingerprint of a data
//     directory, without the passphrase;
//   - version and help.
//
// adapter.go adapts *node.Node to api.Node, the one place where the two
// meet. The other subcommands report that they are not built yet.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is set at link time: go build -ldflags "-X main.version=v0.1.0".
var version = "dev"

var (
	// errUsage marks a command line parley does not understand (exit code 2).
	errUsage = errors.New("usage error")
	// errNotImplemented marks a subcommand that exists in the design but is
	// not built yet (exit code 2).
	errNotImplemented = errors.New("not implemented yet (see README)")
)

// command is one subcommand of parley.
type command struct {
	name    string
	summary string
	// run is nil for subcommands that are not built yet.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order usage shows them.
func commands() []command {
	return []command{
		{name: "init", summary: "create a data directory: RSA identity, host key, encrypted store", run: runInit},
		{name: "run", summary: "run a node with the local API and web UI on 127.0.0.1:7733", run: runRun},
		{name: "relay", summary: "run a relay: DHT server, bootstrap peer, circuit relay, AutoNAT, gossipsub", run: runRelay},
		{name: "id", summary: "print this node's user ID, fingerprint and peer ID", run: runID},
		{name: "backup", summary: "write the whole node (keys and database) to one encrypted file", run: runBackup},
		{name: "restore", summary: "restore a node from a backup file", run: runRestore},
		{name: "rotate-key", summary: "replace the RSA identity key, signed by the old key", run: runRotateKey},
		{name: "bench", summary: "measure this machine's crypto and storage hot paths"},
		{name: "version", summary: "print the parley and Go versions", run: runVersion},
		{name: "config", summary: "print the effective settings of run or relay (flags, PARLEY_*, --config file)", run: runConfigCmd},
	}
}

// The Go runtime's garbage collection settings for parley, unless
// GOMEMLIMIT or GOGC say otherwise: a chat node is a desktop program, not
// a server, so the collector works harder to stay small. The heap may
// grow to 1.5 times what is live (instead of twice), and to 40 MiB in all
// before the collector runs more often. Measured (BenchmarkAPIProcesses):
// an idle node with two friends 40.2 -> 38.1 MiB RSS with gcPercent, a
// 5,000-message burst's peak 137 -> 74 MiB with memoryLimit, at the same
// burst rate.
const (
	memoryLimit = 40 << 20
	gcPercent   = 50
)

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a clean shutdown; stop then restores the
	// default handling, so that a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(exitCode(err))
}

// run executes the command line args (without the program name) and
// returns an error wrapping errUsage or errNotImplemented when parley
// cannot do what was asked.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return fmt.Errorf("parley: no command given: %w", errUsage)
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		if c.run == nil {
			return fmt.Errorf("parley %s: %w", name, errNotImplemented)
		}
		return c.run(ctx, rest, stdout, stderr)
	}
	usage(stderr)
	return fmt.Errorf("parley: unknown command %q: %w", name, errUsage)
}

// defaultDataDir is the data directory of a subcommand given neither
// --data-dir nor PARLEY_DATA_DIR: ~/.parley.
func defaultDataDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the default data directory (give --data-dir): %w", err)
	}
	return filepath.Join(home, ".parley"), nil
}

// exitCode maps the error returned by run to the process exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, errNotImplemented):
		return 2
	default:
		return 1
	}
}

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("parley version: takes no arguments, got %q: %w", args, errUsage)
	}
	_, err := fmt.Fprintf(stdout, "parley %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("parley version: %w", err)
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Parley is a peer-to-peer, end-to-end encrypted chat node.\n\n")
	fmt.Fprint(w, "Usage: parley <command> [arguments]\n\nCommands:\n")
	for _, c := range commands() {
		note := ""
		if c.run == nil {
			note = " (not implemented yet)"
		}
		fmt.Fprintf(w, "  %-11s %s%s\n", c.name, c.summary, note)
	}
	fmt.Fprint(w, "  help        print this help\n")
	fmt.Fprint(w, "\nRun 'parley <command> -h' for the flags of a command.\n")
}
