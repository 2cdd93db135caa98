package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/protocol"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "parley.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence: a flag wins over its variable, the variable over
// the file, the file over the default; the command's table over the top.
func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, `
log-level = "error"
metrics = "127.0.0.1:9100"

[run]
data-dir = "/file/data"
api = "127.0.0.1:1111"
listen = ["/ip4/127.0.0.1/tcp/1111"]
bootstrap = "/ip4/127.0.0.1/tcp/1/p2p/A, /ip4/127.0.0.1/tcp/2/p2p/B"
strict-rsa-signatures = true
log-level = "warn"

[relay]
data-dir = "/file/relay"
`)
	env := map[string]string{envAPI: "127.0.0.1:2222", envListen: "/ip4/127.0.0.1/tcp/2222"}
	args := []string{"--config", file, "--listen", "/ip4/127.0.0.1/tcp/3333"}
	getenv, path, err := withConfig("run", args, envMap(env))
	if err != nil || path != file {
		t.Fatalf("withConfig: %q, %v", path, err)
	}
	c, err := parseRunConfig(args, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"data-dir (file)", c.dataDir, "/file/data"},
		{"api (env over file)", c.apiAddr, "127.0.0.1:2222"},
		{"listen (flag over env and file)", c.listen, []string{"/ip4/127.0.0.1/tcp/3333"}},
		{"bootstrap (file, a list as a string)", c.bootstrap, []string{"/ip4/127.0.0.1/tcp/1/p2p/A", "/ip4/127.0.0.1/tcp/2/p2p/B"}},
		{"strict-rsa-signatures (file)", c.strictRSA, true},
		{"log-level ([run] over the top)", c.logLevel, slog.LevelWarn},
		{"metrics (the top)", c.metrics, "127.0.0.1:9100"},
		{"api-tls-cert (default)", c.apiTLSCert, ""},
	}
	for _, ch := range checks {
		if !equal(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
		}
	}

	// The relay reads its own table and the top, not [run].
	getenv, _, err = withConfig("relay", []string{"--config=" + file}, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := parseRelayConfig([]string{"--config=" + file}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rc.dataDir != "/file/relay" || rc.logLevel != slog.LevelError || rc.metrics != "127.0.0.1:9100" || rc.listen != nil {
		t.Errorf("relay config %+v", rc)
	}

	// PARLEY_CONFIG names the file when --config does not.
	getenv, path, err = withConfig("run", nil, envMap(map[string]string{envConfig: file}))
	if err != nil || path != file || getenv(envDataDir) != "/file/data" {
		t.Errorf("PARLEY_CONFIG: %q %v %q", path, err, getenv(envDataDir))
	}
	// Without a file, nothing changes.
	getenv, path, err = withConfig("run", nil, envMap(env))
	if err != nil || path != "" || getenv(envAPI) != "127.0.0.1:2222" || getenv(envDataDir) != "" {
		t.Errorf("no file: %q %v", path, err)
	}
}

func equal(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", "datadir = \"/x\"\n", `unknown key "datadir"`},
		{"unknown key in a table", "[run]\nlisten-addr = \"x\"\n", `unknown key "listen-addr" in [run]`},
		{"a relay key that run lacks", "[relay]\napi = \"x\"\n", `unknown key "api" in [relay]`},
		{"not TOML", "data-dir = \n", "toml"},
		{"a number list", "[run]\nlisten = [1, 2]\n", "list of strings"},
		{"a table that is not", "run = \"x\"\n", "must be a table"},
	} {
		file := writeConfig(t, tc.text)
		_, _, err := withConfig("run", []string{"--config", file}, envMap(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := withConfig("run", []string{"--config", "/no/such/file.toml"}, envMap(nil)); err == nil {
		t.Error("a missing file is not an error")
	}
}

// flagNames lists the flags a command's -h shows.
func flagNames(t *testing.T, help string) []string {
	t.Helper()
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(help, -1) {
		names = append(names, m[1])
	}
	return names
}

// TestConfigKeysCoverFlags holds the file's keys to the flags: every flag
// of run and relay (but --config) is a key, standing for the variable
// its help names, and every key is a flag.
func TestConfigKeysCoverFlags(t *testing.T) {
	for command, parse := range map[string]func([]string, func(string) string, io.Writer) error{
		"run": func(a []string, g func(string) string, w io.Writer) error {
			_, err := parseRunConfig(a, g, w)
			return err
		},
		"relay": func(a []string, g func(string) string, w io.Writer) error {
			_, err := parseRelayConfig(a, g, w)
			return err
		},
	} {
		var help bytes.Buffer
		parse([]string{"-h"}, envMap(nil), &help)
		names := flagNames(t, help.String())
		if len(names) < 4 {
			t.Fatalf("%s: flags %v from help:\n%s", command, names, help.String())
		}
		for _, n := range names {
			if n == "config" {
				continue
			}
			env, ok := keyEnv(command, n)
			if !ok {
				t.Errorf("%s: flag --%s has no key in the config file", command, n)
				continue
			}
			// The flag's help names its variable; the key stands for it.
			block := regexp.MustCompile(`(?ms)^  -` + regexp.QuoteMeta(n) + `[ \n].*?(^  -|\z)`).FindString(help.String())
			if !strings.Contains(block, "["+env) {
				t.Errorf("%s: key %s stands for %s, which the help of --%s does not name:\n%s", command, n, env, n, block)
			}
		}
		for _, k := range configKeys[command] {
			if !slices.Contains(names, k.name) {
				t.Errorf("%s: key %s is no flag", command, k.name)
			}
		}
	}
}

// TestConfigPrint: config print shows the effective settings as a file it
// reads back to the same settings, and the passphrase file's path, never
// its content.
func TestConfigPrint(t *testing.T) {
	clearParleyEnv(t)
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("a very secret passphrase\n"), 0o600)
	file := writeConfig(t, "[run]\ndata-dir = \"/srv/parley\"\npassphrase-file = \""+pass+"\"\napi-host = []\n")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config", "print", "run", "--config", file, "--log-level", "debug"}, &out, &errOut); err != nil {
		t.Fatalf("config print: %v\n%s", err, errOut.String())
	}
	text := out.String()
	for _, want := range []string{`data-dir = "/srv/parley"`, `passphrase-file = "` + pass + `"`, `log-level = "debug"`, `api = "127.0.0.1:7733"`, "listen = ["} {
		if !strings.Contains(text, want) {
			t.Errorf("print lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "secret") {
		t.Fatalf("print shows the passphrase:\n%s", text)
	}
	again := writeConfig(t, text)
	var out2 bytes.Buffer
	if err := run(context.Background(), []string{"config", "print", "run", "--config", again}, &out2, &errOut); err != nil {
		t.Fatalf("printing the printed file: %v", err)
	}
	strip := func(s string) string { _, rest, _ := strings.Cut(s, "\n"); return rest }
	if strip(out2.String()) != strip(text) {
		t.Errorf("the printed file reads back differently:\n%s\nvs\n%s", out2.String(), text)
	}
	if err := run(context.Background(), []string{"config", "show"}, &out, &errOut); err == nil {
		t.Error("config show: no usage error")
	}
}

// TestInit creates an identity headlessly, which parley run then unlocks
// with the same passphrase file; a second init refuses.
func TestInit(t *testing.T) {
	clearParleyEnv(t)
	dir := filepath.Join(t.TempDir(), "node")
	c := initConfig{dataDir: dir, name: "Server", test: testSettings{kdf: cheapKDF}}
	key := fixtureKey(t, "alice-2048")
	newKey := func(int) (*protocol.PrivateKey, error) { return key, nil }
	var out bytes.Buffer
	if err := initNode(context.Background(), c, []byte(testPass), newKey, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "user ID:     "+key.ID().String()) || !strings.Contains(out.String(), "invite:      parley:") {
		t.Fatalf("init printed:\n%s", out.String())
	}
	err := initNode(context.Background(), c, []byte(testPass), newKey, &out)
	if !errors.Is(err, node.ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	n := unlockedFromDir(t, dir)
	if me, err := n.Me(context.Background()); err != nil || me.Name != "Server" {
		t.Fatalf("the node init made: %+v, %v", me, err)
	}
	// A weak passphrase is refused and leaves no identity.
	weak := filepath.Join(t.TempDir(), "weak")
	if err := initNode(context.Background(), initConfig{dataDir: weak, name: "x", test: c.test}, []byte("short"), newKey, &out); !errors.Is(err, node.ErrWeakPassphrase) {
		t.Fatalf("weak passphrase: %v", err)
	}
}

// unlockedFromDir opens the node in dir with testPass.
func unlockedFromDir(t *testing.T, dir string) *node.Node {
	t.Helper()
	n, err := node.New(testNodeConfig(t, dir, "alice-2048"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Unlock(context.Background(), []byte(testPass)); err != nil {
		t.Fatal(err)
	}
	return n
}
