package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/parley-chat/parley/node"
)

// The configuration file (--config FILE or PARLEY_CONFIG) is TOML. Its
// keys are the long flag names of `parley run` and `parley relay`: keys
// at the top apply to both, keys in a [run] or [relay] table to that
// command only (and win over the top). Lists are TOML arrays (or a
// comma-separated string), switches booleans. Precedence: a flag on the
// command line, then the PARLEY_* variable, then the file, then the
// default. An unknown key is an error, so a typo does not pass unseen.
//
//	log-level = "info"
//
//	[run]
//	data-dir = "/var/lib/parley"
//	api = "127.0.0.1:7733"
//	listen = ["/ip4/0.0.0.0/tcp/7734", "/ip4/0.0.0.0/udp/7734/quic-v1"]
//	passphrase-file = "/etc/parley/passphrase"
//
//	[relay]
//	data-dir = "/var/lib/parley-relay"
//	metrics = "127.0.0.1:9734"
const envConfig = "PARLEY_CONFIG"

// maxConfigFile bounds the configuration file.
const maxConfigFile = 1 << 20

// configKey is one key of the file: the flag it stands for and the
// environment variable whose place it takes.
type configKey struct {
	name string // the long flag name
	env  string
}

// configKeys are the keys of each command, in the order `parley config
// print` shows them. TestConfigKeysCoverFlags holds them to the flags.
var configKeys = map[string][]configKey{
	"run": append([]configKey{
		{"data-dir", envDataDir}, {"api", envAPI}, {"api-tls-cert", envAPITLSCert}, {"api-tls-key", envAPITLSKey},
		{"api-host", envAPIHost}, {"listen", envListen}, {"bootstrap", envBootstrap}, {"mailbox-relay", envMailboxRelay},
		{"passphrase-file", envPassphraseFile}, {"strict-rsa-signatures", envStrictRSA},
		{"metrics", envMetrics}, {"log-level", envLogLevel},
	}, groupLimitKeys...),
	"relay": append([]configKey{
		{"data-dir", envRelayDataDir}, {"listen", envListen}, {"bootstrap", envBootstrap},
		{"metrics", envMetrics}, {"log-level", envLogLevel},
		{"mailbox", envMailbox}, {"mailbox-max-envelopes", envMailboxMaxEnvelopes}, {"mailbox-max-bytes", envMailboxMaxBytes},
		{"mailbox-max-per-sender", envMailboxMaxPerSender}, {"mailbox-ttl", envMailboxTTL},
		{"mailbox-rate", envMailboxRate}, {"mailbox-burst", envMailboxBurst},
		{"group-relay", envGroupRelay}, {"group-relay-retention", envGroupRelayRetention},
		{"group-relay-max-topic-messages", envGroupRelayMaxTopicMessages},
		{"group-relay-max-topic-bytes", envGroupRelayMaxTopicBytes}, {"group-relay-max-bytes", envGroupRelayMaxBytes},
		{"group-relay-max-topics", envGroupRelayMaxTopics}, {"group-relay-max-topics-per-peer", envGroupRelayMaxTopicsPerPeer},
	}, groupLimitKeys...),
}

// configFlag adds --config to a command's flags, for its help: the file
// is read before the flags are parsed (withConfig).
func configFlag(fs *flag.FlagSet, getenv func(string) string) {
	fs.String("config", getenv(envConfig), "read settings from this TOML `file`; flags and PARLEY_* variables win ["+envConfig+"]")
}

// withConfig finds the configuration file of command in args (--config)
// or the environment, and returns getenv layered over it: a variable that
// is set wins, else the file's value for the key standing for it.
// Without a file getenv is returned as is.
func withConfig(command string, args []string, getenv func(string) string) (func(string) string, string, error) {
	path := configPath(args, getenv)
	if path == "" {
		return getenv, "", nil
	}
	vals, err := readConfigFile(path, command)
	if err != nil {
		return nil, "", fmt.Errorf("parley %s: --config %s: %w", command, path, err)
	}
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vals[k]
	}, path, nil
}

// configPath is the value of the last --config (or -config) in args,
// else PARLEY_CONFIG.
func configPath(args []string, getenv func(string) string) string {
	path := getenv(envConfig)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			path = val
		} else if i+1 < len(args) {
			path = args[i+1]
			i++
		}
	}
	return path
}

// readConfigFile reads the keys of command from the file at path and
// returns their values by the environment variable they stand for.
func readConfigFile(path, command string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigFile)
	}
	var doc map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		return nil, err
	}
	out := make(map[string]string)
	set := func(table, name string, v any) error {
		env, ok := keyEnv(table, name)
		if !ok {
			return fmt.Errorf("unknown key %q in [%s]", name, table)
		}
		if table != command {
			return nil
		}
		s, err := configValue(v)
		if err != nil {
			return fmt.Errorf("key %q: %w", name, err)
		}
		out[env] = s
		return nil
	}
	// The top first, then the command's table over it.
	for name, v := range doc {
		if _, ok := configKeys[name]; ok {
			continue
		}
		_, forRun := keyEnv("run", name)
		_, forRelay := keyEnv("relay", name)
		if !forRun && !forRelay {
			return nil, fmt.Errorf("unknown key %q", name)
		}
		if _, ok := keyEnv(command, name); ok {
			if err := set(command, name, v); err != nil {
				return nil, err
			}
		}
	}
	for table := range configKeys {
		v, ok := doc[table]
		if !ok {
			continue
		}
		t, isTable := v.(map[string]any)
		if !isTable {
			return nil, fmt.Errorf("%q must be a table ([%s])", table, table)
		}
		for name, v := range t {
			if err := set(table, name, v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// keyEnv is the environment variable a key of command stands for.
func keyEnv(command, name string) (string, bool) {
	for _, k := range configKeys[command] {
		if k.name == name {
			return k.env, true
		}
	}
	return "", false
}

// configValue renders a TOML value as its environment variable would hold
// it.
func configValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		items := make([]string, len(x))
		for i, it := range x {
			s, ok := it.(string)
			if !ok || strings.Contains(s, ",") {
				return "", errors.New("want a list of strings without commas")
			}
			items[i] = s
		}
		return strings.Join(items, ","), nil
	}
	return "", fmt.Errorf("unsupported value %v (%T)", v, v)
}

// runConfigCmd is `parley config print [run|relay] [flags]`.
func runConfigCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "print" {
		// Only -h/--help before "print": any other flag or word is a usage error.
		fs := newFlagSet("parley config", "parley config print [run|relay] [the command's flags]",
			"Prints the settings the command would run with, from its flags, PARLEY_*\n"+
				"variables, --config file and defaults, as a TOML file it can read back.")
		if err := parseFlags(fs, args, stdout); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		return fmt.Errorf("parley config: want \"print\" (see 'parley config --help'): %w", errUsage)
	}
	args = args[1:]
	command := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
	}
	getenv, path, err := withConfig(command, args, os.Getenv)
	if err != nil {
		return err
	}
	var vals []configValuePrint
	switch command {
	case "run":
		c, err := parseRunConfig(args, getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		if err != nil {
			return err
		}
		vals = runConfigValues(c)
	case "relay":
		c, err := parseRelayConfig(args, getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		if err != nil {
			return err
		}
		vals = relayConfigValues(c)
	default:
		return fmt.Errorf("parley config print: unknown command %q (run or relay): %w", command, errUsage)
	}
	return printConfig(stdout, command, path, vals)
}

// configValuePrint is one effective setting.
type configValuePrint struct {
	name string
	v    any // string, bool, int, int64, float64, time.Duration or []string
}

func runConfigValues(c runConfig) []configValuePrint {
	if len(c.listen) == 0 {
		c.listen = node.DefaultListen
	}
	return append([]configValuePrint{
		{"data-dir", c.dataDir}, {"api", c.apiAddr}, {"api-tls-cert", c.apiTLSCert}, {"api-tls-key", c.apiTLSKey},
		{"api-host", c.apiHosts}, {"listen", c.listen}, {"bootstrap", c.bootstrap}, {"mailbox-relay", c.mailboxRelays},
		{"passphrase-file", c.passphraseFile}, {"strict-rsa-signatures", c.strictRSA},
		{"metrics", c.metrics}, {"log-level", levelName(c.logLevel)},
	}, groupLimitValues(c.groupLimits)...)
}

func relayConfigValues(c relayConfig) []configValuePrint {
	if len(c.listen) == 0 {
		c.listen = node.DefaultRelayListen
	}
	return append([]configValuePrint{
		{"data-dir", c.dataDir}, {"listen", c.listen}, {"bootstrap", c.bootstrap},
		{"metrics", c.metrics}, {"log-level", levelName(c.logLevel)},
		{"mailbox", c.mailbox.enabled}, {"mailbox-max-envelopes", c.mailbox.limits.MaxEnvelopes},
		{"mailbox-max-bytes", c.mailbox.limits.MaxBytes}, {"mailbox-max-per-sender", c.mailbox.limits.MaxPerDepositor},
		{"mailbox-ttl", c.mailbox.limits.TTL}, {"mailbox-rate", c.mailbox.limits.DepositRate},
		{"mailbox-burst", c.mailbox.limits.DepositBurst},
		{"group-relay", c.groups.enabled}, {"group-relay-retention", c.groups.limits.Retention},
		{"group-relay-max-topic-messages", c.groups.limits.MaxTopicMessages},
		{"group-relay-max-topic-bytes", c.groups.limits.MaxTopicBytes}, {"group-relay-max-bytes", c.groups.limits.MaxBytes},
		{"group-relay-max-topics", c.groups.limits.MaxTopics}, {"group-relay-max-topics-per-peer", c.groups.limits.MaxTopicsPerPeer},
	}, groupLimitValues(c.groupLimits)...)
}

// printConfig writes the settings as TOML: the passphrase file's path
// only, never a passphrase (no setting holds one).
func printConfig(w io.Writer, command, path string, vals []configValuePrint) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# parley %s: the effective settings (flags > PARLEY_* > ", command)
	if path != "" {
		fmt.Fprintf(&b, "%s", path)
	} else {
		b.WriteString("no config file")
	}
	fmt.Fprintf(&b, " > defaults)\n[%s]\n", command)
	for _, v := range vals {
		switch x := v.v.(type) {
		case string:
			if x == "" {
				fmt.Fprintf(&b, "# %s = \"\"\n", v.name)
				continue
			}
			fmt.Fprintf(&b, "%s = %s\n", v.name, strconv.Quote(x))
		case bool:
			fmt.Fprintf(&b, "%s = %t\n", v.name, x)
		case int:
			fmt.Fprintf(&b, "%s = %d\n", v.name, x)
		case int64:
			fmt.Fprintf(&b, "%s = %d\n", v.name, x)
		case float64:
			fmt.Fprintf(&b, "%s = %s\n", v.name, strconv.FormatFloat(x, 'f', -1, 64))
		case time.Duration:
			fmt.Fprintf(&b, "%s = %s\n", v.name, strconv.Quote(x.String()))
		case []string:
			if len(x) == 0 {
				fmt.Fprintf(&b, "# %s = []\n", v.name)
				continue
			}
			q := make([]string, len(x))
			for i, s := range x {
				q[i] = strconv.Quote(s)
			}
			fmt.Fprintf(&b, "%s = [%s]\n", v.name, strings.Join(q, ", "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// levelName is the --log-level value of l.
func levelName(l slog.Level) string {
	switch l {
	case slog.LevelDebug:
		return "debug"
	case slog.LevelWarn:
		return "warn"
	case slog.LevelError:
		return "error"
	}
	return "info"
}
