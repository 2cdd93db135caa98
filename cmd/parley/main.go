// Command parley is the one Parley binary: it creates, runs and maintains a
// node. Its commands:
//
//   - run (run.go): a node with the local API on 127.0.0.1:7733 (or over
//     TLS), until SIGINT or SIGTERM; flags and PARLEY_* environment
//     variables. Its test-only PARLEY_TEST_* settings exist only in a
//     binary built with the parleytest tag (testsettings_on.go), as the
//     end-to-end tests build it;
//   - relay (relay.go): a relay node;
//   - id (id.go): the user ID, peer ID and fingerprint of a data
//     directory, without the passphrase;
//   - rotate-key (rotate.go): a new identity key for a stopped node;
//   - version, help.
//
// As in other CLIs, `parley --version` prints the version, and `parley
// <command> --help` (or -h, or `parley help <command>`) the command's
// usage and flags: help asked for goes to stdout with exit code 0; a
// command line parley does not understand is an error on stderr with exit
// code 2, and any other failure exit code 1. DESIGN.md's init, backup,
// restore and bench are not listed until they are built.
//
// adapter.go adapts *node.Node to api.Node, the one place where the two
// meet.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at link time: go build -ldflags "-X main.version=v0.1.0".
var version = "dev"

// errUsage marks a command line parley does not understand (exit code 2).
var errUsage = errors.New("usage error")

// command is one subcommand of parley.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
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

// run executes the command line args (without the program name). Help
// asked for goes to stdout; an error wrapping errUsage means parley did
// not understand the command line (main prints it to stderr).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return fmt.Errorf("parley: no command given: %w", errUsage)
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			usage(stdout)
			return nil
		}
		if len(rest) > 1 || strings.HasPrefix(rest[0], "-") {
			return fmt.Errorf("parley help: give one command, got %q: %w", rest, errUsage)
		}
		// parley help <command> is parley <command> --help.
		name, rest = rest[0], []string{"--help"}
	case "--version", "-version":
		name = "version"
		if len(rest) > 0 {
			return fmt.Errorf("parley %s: takes no arguments, got %q: %w", args[0], rest, errUsage)
		}
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, rest, stdout, stderr)
		}
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
	case errors.Is(err, errUsage):
		return 2
	default:
		return 1
	}
}

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("parley version", "parley version", "Prints the parley version, and the Go version and platform it was built with.")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	_, err := fmt.Fprintf(stdout, "parley %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("parley version: %w", err)
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Parley is a peer-to-peer, end-to-end encrypted chat node.\n\n")
	fmt.Fprint(w, "Usage: parley <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "  help        print this help, or a command's: parley help <command>\n")
	fmt.Fprint(w, "\nRun 'parley <command> --help' for the flags of a command, 'parley --version' for the version.\n")
}

// newFlagSet is a command's flag set; its usage is "Usage: " and use, the
// description, and the flags.
func newFlagSet(name, use, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", use, description)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses a command's flags, as other CLIs do: -h, -help or
// --help prints the usage to stdout and answers flag.ErrHelp (the command
// then ends with exit code 0); a flag it does not know, or an argument
// left over, is an error wrapping errUsage that names the command and
// points at its help (main prints it to stderr: exit code 2). Nothing is
// printed on the way.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return err
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err != nil {
		return fmt.Errorf("%s: %v (see '%s --help'): %w", fs.Name(), err, fs.Name(), errUsage)
	}
	return nil
}
