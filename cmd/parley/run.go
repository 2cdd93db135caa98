package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/store"
	"github.com/parley-chat/parley/web"
)

// Environment variables of `parley run`. A flag given on the command line
// overrides its variable; the list variables take comma-separated values.
const (
	envDataDir        = "PARLEY_DATA_DIR"
	envAPI            = "PARLEY_API"
	envAPITLSCert     = "PARLEY_API_TLS_CERT"
	envAPITLSKey      = "PARLEY_API_TLS_KEY"
	envAPIHost        = "PARLEY_API_HOST"
	envListen         = "PARLEY_LISTEN"
	envBootstrap      = "PARLEY_BOOTSTRAP"
	envMailboxRelay   = "PARLEY_MAILBOX_RELAY"
	envPassphraseFile = "PARLEY_PASSPHRASE_FILE"
	envLogLevel       = "PARLEY_LOG_LEVEL"
	envStrictRSA      = "PARLEY_STRICT_RSA_SIGNATURES"
)

// maxPassphraseFile bounds the size of a passphrase file.
const maxPassphraseFile = 4 << 10

// runConfig is what `parley run` was told by its flags and environment.
type runConfig struct {
	dataDir        string
	apiAddr        string
	listen         []string // nil: node.DefaultListen
	bootstrap      []string
	mailboxRelays  []string
	passphraseFile string
	logLevel       slog.Level
	metrics        string            // --metrics address, or ""
	strictRSA      bool              // --strict-rsa-signatures
	groupLimits    groupguard.Config // --group-rate-*, --group-peer-rate-*

	// The API's TLS certificate and key files, both or neither, and the
	// extra Host names it accepts (api.Options.AllowedHosts, TLS only).
	apiTLSCert, apiTLSKey string
	apiHosts              []string

	// test holds the test-only settings of a parleytest build; zero, as
	// always in a release build, means the defaults.
	test testSettings
}

// testSettings are the test-only settings that a binary built with the
// parleytest tag reads from PARLEY_TEST_* variables (testsettings_on.go).
// A release build reads none (testsettings_off.go): they stay zero.
type testSettings struct {
	kdf          store.KDFParams // a new store's KDF (store.DefaultKDF)
	keyBits      int             // a new RSA identity key's size (node.DefaultKeyBits)
	loginBackoff time.Duration   // node.Config.LoginBackoff (node.DefaultLoginBackoff)
	backupWork   int             // backups' scrypt log2(N) (node.BackupOptions.WorkFactor)
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
// the flags do not say, the environment through getenv. A -h or --help
// answers flag.ErrHelp after printing the usage and flags to out.
func parseRunConfig(args []string, getenv func(string) string, out io.Writer) (runConfig, error) {
	var c runConfig
	fs := newFlagSet("parley run", "parley run [flags]",
		"Runs a node and its local API and web UI until SIGINT or SIGTERM. Each flag\n"+
			"can also come from the environment variable named in brackets; the flag wins.\n"+
			"Lists take the flag repeatedly, or comma-separated values.")
	fs.StringVar(&c.dataDir, "data-dir", getenv(envDataDir),
		"the node's data `directory` (default ~/.parley) ["+envDataDir+"]")
	fs.StringVar(&c.apiAddr, "api", orDefault(getenv(envAPI), api.DefaultAddr),
		"the `address` of the local API, a loopback address and port unless with TLS ["+envAPI+"]")
	fs.StringVar(&c.apiTLSCert, "api-tls-cert", getenv(envAPITLSCert),
		"serve the API over HTTPS with the PEM certificate (chain) in this `file`; needs --api-tls-key ["+envAPITLSCert+"]")
	fs.StringVar(&c.apiTLSKey, "api-tls-key", getenv(envAPITLSKey),
		"the PEM private key `file` of --api-tls-cert ["+envAPITLSKey+"]")
	apiHosts := &listFlag{values: splitList(getenv(envAPIHost))}
	fs.Var(apiHosts, "api-host", "with TLS, a Host `name` the API accepts besides loopback ones, exactly as browsers send it "+
		"(chat.example.org for port 443, else chat.example.org:PORT); repeatable ["+envAPIHost+"]")
	listen := &listFlag{values: splitList(getenv(envListen))}
	fs.Var(listen, "listen", "a libp2p listen `multiaddr` (default "+strings.Join(node.DefaultListen, ", ")+
		"); repeatable ["+envListen+"]")
	bootstrap := &listFlag{values: splitList(getenv(envBootstrap))}
	fs.Var(bootstrap, "bootstrap", "a peer `multiaddr` ending in /p2p/<peer ID> to dial at start; repeatable ["+envBootstrap+"]")
	mailboxRelays := &listFlag{values: splitList(getenv(envMailboxRelay))}
	fs.Var(mailboxRelays, "mailbox-relay", "a relay `multiaddr` ending in /p2p/<peer ID> whose mailbox holds this node's messages "+
		"while it is offline, instead of the --bootstrap peers; repeatable ["+envMailboxRelay+"]")
	fs.StringVar(&c.passphraseFile, "passphrase-file", getenv(envPassphraseFile),
		"unlock the node at start with the passphrase in this `file` (one trailing newline is ignored) ["+envPassphraseFile+"]")
	fs.BoolVar(&c.strictRSA, "strict-rsa-signatures", getenv(envStrictRSA) == "1" || getenv(envStrictRSA) == "true",
		"sign every session message with the RSA identity key (RSA-PSS) instead of the session's Ed25519 key "+
			"certified by it; slower, the original per-message RSA signature ["+envStrictRSA+"=1]")
	envErr := groupLimitFlags(fs, &c.groupLimits, getenv)
	level := metricsAndLogFlags(fs, getenv, &c.metrics)
	if err := parseFlags(fs, args, out); err != nil {
		return c, err
	}
	if envErr != nil {
		return c, fmt.Errorf("parley run: %v: %w", envErr, errUsage)
	}
	if err := checkGroupLimits(c.groupLimits); err != nil {
		return c, fmt.Errorf("parley run: %v: %w", err, errUsage)
	}
	c.listen, c.bootstrap, c.apiHosts = listen.values, bootstrap.values, apiHosts.values
	c.mailboxRelays = mailboxRelays.values
	if (c.apiTLSCert == "") != (c.apiTLSKey == "") {
		return c, fmt.Errorf("parley run: --api-tls-cert and --api-tls-key go together: %w", errUsage)
	}
	if len(c.apiHosts) > 0 && c.apiTLSCert == "" {
		return c, fmt.Errorf("parley run: --api-host needs --api-tls-cert and --api-tls-key: %w", errUsage)
	}

	lvl, err := parseLogLevel(*level)
	if err != nil {
		return c, fmt.Errorf("parley run: %v: %w", err, errUsage)
	}
	c.logLevel = lvl

	if c.dataDir == "" {
		if c.dataDir, err = defaultDataDir(); err != nil {
			return c, fmt.Errorf("parley run: %w", err)
		}
	}
	if c.test, err = readTestSettings(getenv); err != nil {
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

// runRun is `parley run`.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	getenv, _, err := withConfig("run", args, os.Getenv)
	if err != nil {
		return err
	}
	c, err := parseRunConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	return serveNode(ctx, c, log, stdout)
}

// serveNode runs a node and its API until ctx ends: the API listener
// first, so that a bad or busy --api fails before the node touches its
// data directory; then node.New, the unlock from the passphrase file if
// any, the URL on stdout, and Serve. On the way out the API closes first,
// then the node (which syncs its store). A shutdown (ctx ending) before
// or during the unlock is a clean exit, not an error.
func serveNode(ctx context.Context, c runConfig, log *slog.Logger, stdout io.Writer) (err error) {
	var tlsConf *tls.Config
	scheme := "http"
	if c.apiTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.apiTLSCert, c.apiTLSKey)
		if err != nil {
			return fmt.Errorf("parley run: --api-tls-cert, --api-tls-key: %w", err)
		}
		tlsConf, scheme = &tls.Config{Certificates: []tls.Certificate{cert}}, "https"
	}
	ln, err := api.Listen(c.apiAddr, tlsConf)
	if errors.Is(err, api.ErrNotLoopback) {
		return fmt.Errorf("parley run: --api %s: without --api-tls-cert and --api-tls-key the API serves plain HTTP, "+
			"so only on a loopback address (127.0.0.1, [::1] or localhost): %w", c.apiAddr, err)
	}
	if err != nil {
		return fmt.Errorf("parley run: %w", err)
	}
	served := false // once Serve has ln, it closes it
	defer func() {
		if !served {
			ln.Close()
		}
	}()

	c.test.warn(log)
	cfg := node.Config{
		BackupWorkFactor:    c.test.backupWork,
		DataDir:             c.dataDir,
		Listen:              c.listen,
		Bootstrap:           c.bootstrap,
		MailboxRelays:       c.mailboxRelays,
		Logger:              log,
		KDF:                 c.test.kdf,
		KeyBits:             c.test.keyBits,
		LoginBackoff:        c.test.loginBackoff,
		StrictRSASignatures: c.strictRSA,
		GroupLimits:         c.groupLimits,
	}
	if c.metrics != "" {
		reg := prometheus.NewRegistry()
		addr, stopMetrics, err := serveMetrics(ctx, c.metrics, reg, log)
		if err != nil {
			return fmt.Errorf("parley run: --metrics: %w", err)
		}
		defer stopMetrics()
		fmt.Fprintf(stdout, "Metrics: http://%s/metrics\n", addr)
		registerDiskMetrics(reg, c.dataDir)
		cfg.Metrics = reg
	}
	n, err := node.New(cfg)
	if err != nil {
		return fmt.Errorf("parley run: %w", err)
	}
	defer newIdleTrim().start(ctx)()
	defer func() {
		if cerr := n.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("parley run: closing the node: %w", cerr))
		}
	}()
	auditLog, stopAudit, err := startAudit(ctx, n, log)
	if err != nil {
		return fmt.Errorf("parley run: %w", err)
	}
	defer stopAudit()
	napi := newNodeAPI(n)
	napi.audit = auditLog
	srv, err := api.New(napi, api.Options{Logger: log, TLS: tlsConf, AllowedHosts: c.apiHosts, UI: web.UI(),
		Auditor: apiAuditor{auditLog}})
	if err != nil {
		return fmt.Errorf("parley run: %w", err)
	}

	if c.passphraseFile != "" {
		if ctx.Err() != nil {
			log.Info("shutting down before the unlock")
			return nil
		}
		if err := unlockFromFile(ctx, n, c.passphraseFile, log); err != nil {
			if ctx.Err() != nil {
				// A signal came during the unlock: the user asked to stop.
				log.Warn("shutting down during the unlock", "err", err)
				return nil
			}
			return fmt.Errorf("parley run: %w", err)
		}
	}

	fmt.Fprintf(stdout, "Parley is running: open %s://%s/\n", scheme, hostPort(ln.Addr()))
	fmt.Fprintln(stdout, stateLine(n))

	served = true
	// The API serves until ctx ends, or until the node closes itself
	// because one of its parts failed: then parley run exits with why.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-n.Done():
			stop()
		case <-sctx.Done():
		}
	}()
	serveErr := srv.Serve(sctx, ln) // returns once sctx ends and the API has shut down
	log.Info("shutting down")
	if serveErr != nil {
		return fmt.Errorf("parley run: %w", serveErr)
	}
	if err := n.Err(); err != nil {
		return fmt.Errorf("parley run: the node stopped: %w", err)
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
	var ne *node.Error
	switch {
	case err == nil:
		log.Info("unlocked with the passphrase file", "file", file)
		return nil
	case errors.Is(err, node.ErrBadPassphrase):
		return fmt.Errorf("the passphrase in %s is wrong", file)
	case errors.Is(err, node.ErrThrottled) && errors.As(err, &ne):
		return fmt.Errorf("unlocking: %s", ne.Message)
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
