package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/store"
)

// Environment variables of `parley run`. A flag given on the command line
// overrides its variable; the list variables take comma-separated values.
const (
	envDataDir        = "PARLEY_DATA_DIR"
	envAPI            = "PARLEY_API"
	envListen         = "PARLEY_LISTEN"
	envBootstrap      = "PARLEY_BOOTSTRAP"
	envPassphraseFile = "PARLEY_PASSPHRASE_FILE"
	envLogLevel       = "PARLEY_LOG_LEVEL"
)

// Test-only environment variables, read by `parley run` alone. They make
// a new identity cheap to create, for the end-to-end tests, and weaken
// it: never set them for a real node. Unset, they change nothing; an
// unknown value is an error rather than a silent default.
const (
	// envTestKDF=cheap creates a new store with Argon2id t=1, m=1 MiB,
	// p=1 instead of store.DefaultKDF. An existing store keeps the
	// parameters it was created with.
	envTestKDF = "PARLEY_TEST_KDF"
	// envTestKeyBits=2048 (or 3072, 4096) sets the size of a new RSA
	// identity key instead of node.DefaultKeyBits.
	envTestKeyBits = "PARLEY_TEST_KEY_BITS"
)

// cheapKDF is what PARLEY_TEST_KDF=cheap selects.
var cheapKDF = store.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}

// maxPassphraseFile bounds the size of a passphrase file.
const maxPassphraseFile = 4 << 10

// runConfig is what `parley run` was told by its flags and environment.
type runConfig struct {
	dataDir        string
	apiAddr        string
	listen         []string // nil: node.DefaultListen
	bootstrap      []string
	passphraseFile string
	logLevel       slog.Level

	// Test-only settings (see envTestKDF); zero means the default.
	kdf     store.KDFParams
	keyBits int
}

// listFlag is a repeatable flag of strings. Each value may also hold a
// comma-separated list. It starts with the values of its environment
// variable; the first value given on the command line replaces those.
type listFlag struct {
	values []string
	set    bool // given on the command line
}

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	items := splitList(v)
	if len(items) == 0 {
		return errors.New("empty value")
	}
	l.values = append(l.values, items...)
	return nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseRunConfig reads the flags of `parley run` from args and, for what
// the flags do not say, the environment through getenv. A -h answers
// flag.ErrHelp after printing the flags to out.
func parseRunConfig(args []string, getenv func(string) string, out io.Writer) (runConfig, error) {
	var c runConfig
	fs := flag.NewFlagSet("parley run", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, "Usage: parley run [flags]\n\n"+
			"Runs a node and its local API and web UI until SIGINT or SIGTERM. Each flag\n"+
			"can also come from the environment variable named in brackets; the flag wins.\n"+
			"Lists take the flag repeatedly, or comma-separated values.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.dataDir, "data-dir", getenv(envDataDir),
		"the node's data `directory` (default ~/.parley) ["+envDataDir+"]")
	fs.StringVar(&c.apiAddr, "api", orDefault(getenv(envAPI), api.DefaultAddr),
		"the `address` of the local API, a loopback address and port ["+envAPI+"]")
	listen := &listFlag{values: splitList(getenv(envListen))}
	fs.Var(listen, "listen", "a libp2p listen `multiaddr` (default "+strings.Join(node.DefaultListen, ", ")+
		"); repeatable ["+envListen+"]")
	bootstrap := &listFlag{values: splitList(getenv(envBootstrap))}
	fs.Var(bootstrap, "bootstrap", "a peer `multiaddr` ending in /p2p/<peer ID> to dial at start; repeatable ["+envBootstrap+"]")
	fs.StringVar(&c.passphraseFile, "passphrase-file", getenv(envPassphraseFile),
		"unlock the node at start with the passphrase in this `file` (one trailing newline is ignored) ["+envPassphraseFile+"]")
	level := fs.String("log-level", orDefault(getenv(envLogLevel), "info"),
		"log `level`: debug, info, warn or error; logs go to stderr ["+envLogLevel+"]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("parley run: %v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("parley run: unexpected arguments %q: %w", fs.Args(), errUsage)
	}
	c.listen, c.bootstrap = listen.values, bootstrap.values

	lvl, err := parseLogLevel(*level)
	if err != nil {
		return c, fmt.Errorf("parley run: %v: %w", err, errUsage)
	}
	c.logLevel = lvl

	if c.dataDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("parley run: no home directory for the default data directory (give --data-dir): %w", err)
		}
		c.dataDir = filepath.Join(home, ".parley")
	}
	if c.kdf, c.keyBits, err = testSettings(getenv); err != nil {
		return c, fmt.Errorf("parley run: %v: %w", err, errUsage)
	}
	return c, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// parseLogLevel parses debug, info, warn (or warning) and error, in any
// case.
func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}

// testSettings reads the test-only variables (see envTestKDF).
func testSettings(getenv func(string) string) (store.KDFParams, int, error) {
	var kdf store.KDFParams
	switch v := getenv(envTestKDF); v {
	case "":
	case "cheap":
		kdf = cheapKDF
	default:
		return kdf, 0, fmt.Errorf("%s=%q: the only value is cheap", envTestKDF, v)
	}
	bits := 0
	switch v := getenv(envTestKeyBits); v {
	case "":
	case "2048", "3072", "4096":
		bits, _ = strconv.Atoi(v)
	default:
		return kdf, 0, fmt.Errorf("%s=%q: want 2048, 3072 or 4096", envTestKeyBits, v)
	}
	return kdf, bits, nil
}

// runRun is `parley run`.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseRunConfig(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	return serveNode(ctx, c, log, stdout)
}

// serveNode runs a node and its API until ctx ends: node.New, the unlock
// from the passphrase file if any, the API listener, the URL on stdout,
// then Serve; on the way out the API closes first, then the node (which
// syncs its store).
func serveNode(ctx context.Context, c runConfig, log *slog.Logger, stdout io.Writer) (err error) {
	if c.kdf != (store.KDFParams{}) {
		log.Warn("test-only setting: a new identity gets a weak passphrase KDF", "env", envTestKDF)
	}
	if c.keyBits != 0 {
		log.Warn("test-only setting: a new identity key has a non-default size", "env", envTestKeyBits, "bits", c.keyBits)
	}
	n, err := node.New(node.Config{
		DataDir:   c.dataDir,
		Listen:    c.listen,
		Bootstrap: c.bootstrap,
		Logger:    log,
		KDF:       c.kdf,
		KeyBits:   c.keyBits,
	})
	if err != nil {
		return fmt.Errorf("parley run: %w", err)
	}
	defer func() {
		if cerr := n.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("parley run: closing the node: %w", cerr))
		}
	}()

	if c.passphraseFile != "" {
		if err := unlockFromFile(ctx, n, c.passphraseFile, log); err != nil {
			return fmt.Errorf("parley run: %w", err)
		}
	}

	ln, err := api.Listen(c.apiAddr, nil)
	if errors.Is(err, api.ErrNotLoopback) {
		return fmt.Errorf("parley run: --api %s: the API serves plain HTTP, so only on a loopback address "+
			"(127.0.0.1, [::1] or localhost): %w", c.apiAddr, err)
	}
	if err != nil {
		return fmt.Errorf("parley run: %w", err)
	}
	srv, err := api.New(newNodeAPI(n), api.Options{Logger: log})
	if err != nil {
		ln.Close()
		return fmt.Errorf("parley run: %w", err)
	}

	fmt.Fprintf(stdout, "Parley is running: open http://%s/\n", hostPort(ln.Addr()))
	fmt.Fprintln(stdout, stateLine(n))

	serveErr := srv.Serve(ctx, ln) // returns once ctx ends and the API has shut down
	log.Info("shutting down")
	if serveErr != nil {
		return fmt.Errorf("parley run: %w", serveErr)
	}
	return nil
}

// hostPort is the HOST:PORT of a listener address as a URL takes it.
func hostPort(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return net.JoinHostPort(ta.IP.String(), strconv.Itoa(ta.Port))
	}
	return a.String()
}

// stateLine tells, on stdout, what the node waits for.
func stateLine(n *node.Node) string {
	switch st := n.State(); st {
	case node.StateNew:
		return "State: new (no identity yet: open the URL to register)"
	case node.StateLocked:
		return "State: locked (open the URL and log in with your passphrase)"
	default:
		return "State: " + string(st)
	}
}

// unlockFromFile unlocks n with the passphrase in file. The passphrase is
// wiped after use and never logged.
func unlockFromFile(ctx context.Context, n *node.Node, file string, log *slog.Logger) error {
	if n.State() == node.StateNew {
		return fmt.Errorf("--passphrase-file: there is no identity in %s yet; start without it and register at the URL", n.DataDir())
	}
	pass, loose, err := readPassphraseFile(file)
	if err != nil {
		return err
	}
	defer wipe(pass)
	if loose {
		log.Warn("the passphrase file can be read by other users; chmod 600 it", "file", file)
	}
	err = n.Unlock(ctx, pass)
	var te *node.ThrottledError
	switch {
	case err == nil:
		log.Info("unlocked with the passphrase file", "file", file)
		return nil
	case errors.Is(err, node.ErrBadPassphrase):
		return fmt.Errorf("the passphrase in %s is wrong", file)
	case errors.As(err, &te):
		return fmt.Errorf("unlocking: too many wrong passphrases; try again in %s", retryText(te.RetryAfter))
	default:
		return fmt.Errorf("unlocking: %w", err)
	}
}

// readPassphraseFile reads a passphrase from file, without one trailing
// "\n" or "\r\n". The caller wipes the result. loose reports a file that
// users other than its owner may read.
func readPassphraseFile(file string) (pass []byte, loose bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false, fmt.Errorf("passphrase file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("passphrase file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("passphrase file %s is not a regular file", file)
	}
	if fi.Size() > maxPassphraseFile {
		return nil, false, fmt.Errorf("passphrase file %s is larger than %d bytes", file, maxPassphraseFile)
	}
	// One buffer of the right size, so that no copy of the passphrase
	// is left behind by a growing read.
	buf := make([]byte, fi.Size()+1)
	nr, err := io.ReadFull(f, buf)
	switch {
	case err == nil:
		wipe(buf)
		return nil, false, fmt.Errorf("passphrase file %s grew while being read", file)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		wipe(buf)
		return nil, false, fmt.Errorf("passphrase file: %w", err)
	}
	pass = trimNewline(buf[:nr])
	if len(pass) == 0 {
		wipe(buf)
		return nil, false, fmt.Errorf("passphrase file %s is empty", file)
	}
	return pass, fi.Mode().Perm()&0o077 != 0, nil
}

// trimNewline drops one trailing "\n" or "\r\n".
func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// wipe zeroes a buffer that held a secret, up to its capacity.
func wipe(b []byte) {
	clear(b[:cap(b)])
}
