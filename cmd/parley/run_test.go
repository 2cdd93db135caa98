package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
)

// envMap is a getenv over a map.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseRunConfigDefaults(t *testing.T) {
	clearParleyEnv(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	c, err := parseRunConfig(nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := runConfig{dataDir: filepath.Join(home, ".parley"), apiAddr: api.DefaultAddr, logLevel: slog.LevelInfo}
	if !equalConfig(c, want) {
		t.Errorf("config = %+v, want %+v", c, want)
	}
}

func TestParseRunConfigEnv(t *testing.T) {
	clearParleyEnv(t)
	env := map[string]string{
		envDataDir:        "/srv/parley",
		envAPI:            "127.0.0.1:0",
		envAPITLSCert:     "/etc/parley/cert.pem",
		envAPITLSKey:      "/etc/parley/key.pem",
		envAPIHost:        "chat.example.org, chat.example.org:8443",
		envListen:         "/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/udp/1/quic-v1,,",
		envBootstrap:      "/ip4/10.0.0.1/tcp/7734/p2p/12D3KooWA",
		envMailboxRelay:   "/ip4/10.0.0.3/tcp/4001/p2p/12D3KooWC",
		envPassphraseFile: "/run/secrets/parley",
		envLogLevel:       "DEBUG",
		envMetrics:        "127.0.0.1:9100",
		envStrictRSA:      "1",
	}
	c, err := parseRunConfig(nil, envMap(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := runConfig{
		dataDir:        "/srv/parley",
		apiAddr:        "127.0.0.1:0",
		listen:         []string{"/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1/quic-v1"},
		bootstrap:      []string{"/ip4/10.0.0.1/tcp/7734/p2p/12D3KooWA"},
		mailboxRelays:  []string{"/ip4/10.0.0.3/tcp/4001/p2p/12D3KooWC"},
		passphraseFile: "/run/secrets/parley",
		logLevel:       slog.LevelDebug,
		apiTLSCert:     "/etc/parley/cert.pem",
		apiTLSKey:      "/etc/parley/key.pem",
		apiHosts:       []string{"chat.example.org", "chat.example.org:8443"},
		metrics:        "127.0.0.1:9100",
		strictRSA:      true,
	}
	if !equalConfig(c, want) {
		t.Errorf("config = %+v, want %+v", c, want)
	}
}

func TestParseRunConfigFlagsOverrideEnv(t *testing.T) {
	clearParleyEnv(t)
	env := map[string]string{
		envDataDir:        "/env/dir",
		envAPI:            "127.0.0.1:1111",
		envListen:         "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2",
		envBootstrap:      "/ip4/10.0.0.1/tcp/1/p2p/env",
		envMailboxRelay:   "/ip4/10.0.0.1/tcp/1/p2p/envmb",
		envPassphraseFile: "/env/pass",
		envLogLevel:       "error",
		envAPITLSCert:     "/env/cert.pem",
		envAPITLSKey:      "/env/key.pem",
		envAPIHost:        "env.example.org",
		envStrictRSA:      "true",
		envMetrics:        "127.0.0.1:9100",
	}
	args := []string{
		"--data-dir", "/flag/dir",
		"--api=127.0.0.1:2222",
		"--listen", "/ip4/127.0.0.1/tcp/3",
		"-listen", "/ip4/127.0.0.1/tcp/4,/ip4/127.0.0.1/tcp/5",
		"--passphrase-file", "/flag/pass",
		"--log-level", "warn",
		"--api-tls-cert", "/flag/cert.pem",
		"--api-tls-key=/flag/key.pem",
		"--api-host", "flag.example.org",
		"--api-host", "flag.example.org:8443",
		"--strict-rsa-signatures=false",
		"--metrics", "127.0.0.1:9200",
		"--mailbox-relay", "/ip4/10.0.0.5/tcp/1/p2p/m1",
		"--mailbox-relay=/ip4/10.0.0.6/tcp/1/p2p/m2",
	}
	c, err := parseRunConfig(args, envMap(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := runConfig{
		dataDir: "/flag/dir",
		apiAddr: "127.0.0.1:2222",
		// The flags replace the environment's list, they do not add to it.
		listen:         []string{"/ip4/127.0.0.1/tcp/3", "/ip4/127.0.0.1/tcp/4", "/ip4/127.0.0.1/tcp/5"},
		bootstrap:      []string{"/ip4/10.0.0.1/tcp/1/p2p/env"}, // no flag: the environment's
		mailboxRelays:  []string{"/ip4/10.0.0.5/tcp/1/p2p/m1", "/ip4/10.0.0.6/tcp/1/p2p/m2"},
		passphraseFile: "/flag/pass",
		logLevel:       slog.LevelWarn,
		apiTLSCert:     "/flag/cert.pem",
		apiTLSKey:      "/flag/key.pem",
		apiHosts:       []string{"flag.example.org", "flag.example.org:8443"},
		metrics:        "127.0.0.1:9200",
		strictRSA:      false,
	}
	if !equalConfig(c, want) {
		t.Errorf("config = %+v, want %+v", c, want)
	}
}

func TestParseRunConfigErrors(t *testing.T) {
	clearParleyEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "unknown flag", args: []string{"--frob"}},
		{name: "extra argument", args: []string{"now"}},
		{name: "bad log level flag", args: []string{"--log-level", "loud"}},
		{name: "bad log level env", env: map[string]string{envLogLevel: "trace"}},
		{name: "empty listen", args: []string{"--listen", " , "}},
		{name: "missing value", args: []string{"--api"}},
		{name: "TLS cert without key", args: []string{"--api-tls-cert", "cert.pem"}},
		{name: "TLS key without cert", env: map[string]string{envAPITLSKey: "key.pem"}},
		{name: "API host without TLS", args: []string{"--api-host", "chat.example.org"}},
		{name: "API host from the environment without TLS", env: map[string]string{envAPIHost: "chat.example.org"}},
		{name: "empty API host", args: []string{"--api-tls-cert", "c", "--api-tls-key", "k", "--api-host", ","}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRunConfig(tc.args, envMap(tc.env), io.Discard)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
		})
	}
}

func TestParseRunConfigHelp(t *testing.T) {
	clearParleyEnv(t)
	var out strings.Builder
	_, err := parseRunConfig([]string{"-h"}, envMap(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"--data-dir", "-listen", envListen, envPassphraseFile, "comma-separated",
		"-api-tls-cert", "-api-tls-key", "-api-host", envAPITLSCert, envAPITLSKey, envAPIHost} {
		want = strings.TrimPrefix(want, "-")
		if !strings.Contains(out.String(), want) {
			t.Errorf("help does not mention %q:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"run", "--help"}, io.Discard, io.Discard); err != nil {
		t.Errorf("parley run --help = %v, want nil", err)
	}
}

func equalConfig(a, b runConfig) bool {
	return a.dataDir == b.dataDir && a.apiAddr == b.apiAddr && slices.Equal(a.listen, b.listen) &&
		slices.Equal(a.bootstrap, b.bootstrap) && slices.Equal(a.mailboxRelays, b.mailboxRelays) && a.passphraseFile == b.passphraseFile &&
		a.logLevel == b.logLevel && a.apiTLSCert == b.apiTLSCert && a.apiTLSKey == b.apiTLSKey &&
		slices.Equal(a.apiHosts, b.apiHosts) && a.test == b.test &&
		a.metrics == b.metrics && a.strictRSA == b.strictRSA
}

func TestReadPassphraseFile(t *testing.T) {
	for _, tc := range []struct {
		content string
		want    string // "" means an error
	}{
		{"correct horse battery\n", "correct horse battery"},
		{"correct horse battery\r\n", "correct horse battery"},
		{"correct horse battery", "correct horse battery"},
		{"correct horse battery\n\n", "correct horse battery\n"},
		{"correct horse battery\r", "correct horse battery\r"},
		{" spaces kept \n", " spaces kept "},
		{"\n", ""},
		{"\r\n", ""},
		{"", ""},
		{strings.Repeat("x", maxPassphraseFile+1), ""},
	} {
		file := filepath.Join(t.TempDir(), "pass")
		if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, loose, err := readPassphraseFile(file)
		if tc.want == "" {
			if err == nil {
				t.Errorf("readPassphraseFile(%q) = %q, want an error", tc.content, got)
			} else if strings.Contains(err.Error(), tc.content) && tc.content != "" && tc.content != "\n" {
				t.Errorf("error %q shows the file's content", err)
			}
			continue
		}
		if err != nil || string(got) != tc.want || loose {
			t.Errorf("readPassphraseFile(%q) = %q, loose %v, %v; want %q", tc.content, got, loose, err, tc.want)
		}
		wipe(got)
		if strings.Trim(string(got[:cap(got)]), "\x00") != "" {
			t.Errorf("wipe left %q", got[:cap(got)])
		}
	}
}

func TestReadPassphraseFileModes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pass")
	if err := os.WriteFile(file, []byte(testPass+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, loose, err := readPassphraseFile(file); err != nil || !loose {
		t.Errorf("mode 0644: loose %v, err %v; want loose", loose, err)
	}
	if _, _, err := readPassphraseFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
	if _, _, err := readPassphraseFile(dir); err == nil {
		t.Error("a directory: no error")
	}
}

// writePassFile writes a passphrase file (mode 0600, with a newline) and
// returns its path.
func writePassFile(t *testing.T, pass string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(file, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// registeredDir makes a data directory with a registered identity and no
// node running on it.
func registeredDir(t *testing.T, keyName string) (dir string, id node.Identity) {
	t.Helper()
	dir = t.TempDir()
	n, err := node.New(testNodeConfig(t, dir, keyName))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Register(context.Background(), "Alice", []byte(testPass)); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	id, err = node.ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, id
}

func TestRunID(t *testing.T) {
	clearParleyEnv(t)
	t.Run("no identity", func(t *testing.T) {
		dir := t.TempDir()
		var out strings.Builder
		err := run(context.Background(), []string{"id", "--data-dir", dir}, &out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "no identity in "+dir) || exitCode(err) != 1 {
			t.Fatalf("err = %v (exit %d), want 'no identity', exit 1", err, exitCode(err))
		}
		if out.Len() != 0 {
			t.Errorf("stdout = %q", out.String())
		}
	})
	t.Run("while running and from the environment", func(t *testing.T) {
		n := registeredNode(t, "alice-2048", "Alice") // the store stays open
		t.Setenv(envDataDir, n.DataDir())
		var out strings.Builder
		if err := run(context.Background(), []string{"id"}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		me, err := n.Me(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{me.UserID.String(), me.PeerID.String(), me.Fingerprint} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output does not show %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("arguments", func(t *testing.T) {
		err := run(context.Background(), []string{"id", "extra"}, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("err = %v, want a usage error", err)
		}
	})
}

func TestRunRefusesNonLoopbackAPI(t *testing.T) {
	clearParleyEnv(t)
	dir := filepath.Join(t.TempDir(), "data")
	err := run(context.Background(), []string{"run", "--data-dir", dir, "--api", "0.0.0.0:0",
		"--listen", "/ip4/127.0.0.1/tcp/0"}, io.Discard, io.Discard)
	if !errors.Is(err, api.ErrNotLoopback) || !strings.Contains(err.Error(), "--api 0.0.0.0:0") ||
		!strings.Contains(err.Error(), "--api-tls-cert") {
		t.Fatalf("err = %v, want api.ErrNotLoopback naming the address and the TLS flags", err)
	}
	assertUntouched(t, dir)
}

func TestRunPassphraseFileErrors(t *testing.T) {
	clearParleyEnv(t)
	dir, _ := registeredDir(t, "alice-2048")
	const wrong = "not the passphrase at all"
	var stderr syncBuffer
	err := run(context.Background(), []string{"run", "--data-dir", dir, "--api", "127.0.0.1:0",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--passphrase-file", writePassFile(t, wrong)}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "is wrong") {
		t.Fatalf("wrong passphrase: err = %v", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(stderr.String(), wrong) {
		t.Errorf("the passphrase shows in the error or the log")
	}

	err = run(context.Background(), []string{"run", "--data-dir", t.TempDir(), "--api", "127.0.0.1:0",
		"--passphrase-file", writePassFile(t, testPass)}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no identity") {
		t.Fatalf("new node with a passphrase file: err = %v", err)
	}
}

var urlLine = regexp.MustCompile(`(?m)^Parley is running: open (http://127\.0\.0\.1:[0-9]+/)$`)

// runInBackground starts run(ctx, args) in this process and waits until it
// prints the URL line that line matches; it returns the URL, the outputs
// and the channel that gets run's result.
func runInBackground(t *testing.T, ctx context.Context, args []string, line *regexp.Regexp) (url string, stdout, stderr *syncBuffer, errc <-chan error) {
	t.Helper()
	stdout, stderr = new(syncBuffer), new(syncBuffer)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, stdout, stderr) }()
	waitFor(t, 20*time.Second, "the URL line", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, stderr.String())
		default:
		}
		m := line.FindStringSubmatch(stdout.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return url, stdout, stderr, done
}

// TestRunInProcess runs `parley run` in this process: it unlocks with the
// passphrase file, prints the URL and the state, serves, and returns nil
// when its context ends.
func TestRunInProcess(t *testing.T) {
	clearParleyEnv(t)
	dir, id := registeredDir(t, "alice-2048")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, stdout, stderr, errc := runInBackground(t, ctx, []string{"run", "--data-dir", dir, "--api", "127.0.0.1:0",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--passphrase-file", writePassFile(t, testPass)}, urlLine)
	if !strings.Contains(stdout.String(), "State: unlocked") {
		t.Errorf("stdout does not give the state:\n%s", stdout.String())
	}
	resp, err := http.Get(url + "api/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("health: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run = %v, want nil after the context ended", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after the context ended")
	}
	if strings.Contains(stderr.String(), testPass) {
		t.Error("the passphrase shows in the log")
	}
	// The store was closed: it opens again.
	n, err := node.New(testNodeConfig(t, dir, "alice-2048"))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Unlock(context.Background(), []byte(testPass)); err != nil {
		t.Fatalf("reopening the store: %v", err)
	}
	me, _ := n.Me(context.Background())
	if me.UserID != id.UserID {
		t.Errorf("user %s, want %s", me.UserID, id.UserID)
	}
}
