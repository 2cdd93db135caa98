package main

// Tests of how `parley run` sets up its API: bound before the node opens,
// over TLS when given a certificate, and a shutdown around the unlock.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/api/apitest"

	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/store"
)

// assertUntouched checks that a run that failed left no trace in the data
// directory dir: no store (parley.json), not even the directory.
func assertUntouched(t *testing.T, dir string) {
	t.Helper()
	if store.Exists(dir) {
		t.Errorf("a store was created in %s", dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory %s was created (stat: %v)", dir, err)
	}
}

// TestRunBindsAPIFirst checks that a busy --api fails before the node
// opens its data directory, and before the passphrase file is tried.
func TestRunBindsAPIFirst(t *testing.T) {
	clearParleyEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()

	dir := filepath.Join(t.TempDir(), "data")
	err = run(context.Background(), []string{"run", "--data-dir", dir, "--api", addr,
		"--listen", "/ip4/127.0.0.1/tcp/0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), addr) || exitCode(err) != 1 {
		t.Fatalf("--api %s in use: err = %v (exit %d), want an error naming it, exit 1", addr, err, exitCode(err))
	}
	assertUntouched(t, dir)

	// With an identity and a wrong passphrase file: the port fails first,
	// so the passphrase is never tried (nor counted as a wrong one).
	regDir, _ := registeredDir(t, "alice-2048")
	err = run(context.Background(), []string{"run", "--data-dir", regDir, "--api", addr,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--passphrase-file", writePassFile(t, "not the passphrase at all")},
		io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "is wrong") {
		t.Fatalf("--api %s in use with a passphrase file: err = %v, want the listen error", addr, err)
	}
}

// writeTLSFiles writes a fresh self-signed certificate for 127.0.0.1 and
// its key as PEM files, and returns their paths and a pool trusting it.
func writeTLSFiles(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c := apitest.SelfSignedCert(t)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c.Pool
}

var httpsURLLine = regexp.MustCompile(`(?m)^Parley is running: open (https://127\.0\.0\.1:[0-9]+/)$`)

// TestRunAPITLS runs `parley run` with --api-tls-cert, --api-tls-key and
// --api-host (on 127.0.0.1 only): the API speaks HTTPS and accepts the
// extra Host.
func TestRunAPITLS(t *testing.T) {
	clearParleyEnv(t)
	certFile, keyFile, pool := writeTLSFiles(t)
	t.Setenv(envAPIHost, "chat.example.org") // the variable works as well as the flag
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, _, _, errc := runInBackground(t, ctx, []string{"run", "--data-dir", t.TempDir(), "--api", "127.0.0.1:0",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--api-tls-cert", certFile, "--api-tls-key", keyFile}, httpsURLLine)

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, tc := range []struct {
		host, origin string
		status       int
	}{
		{"", "", http.StatusOK}, // 127.0.0.1:PORT
		{"chat.example.org", "", http.StatusOK},
		{"chat.example.org", "https://chat.example.org", http.StatusOK},
		{"chat.example.org:443", "", http.StatusForbidden},
		{"evil.example", "", http.StatusForbidden},
	} {
		req, err := http.NewRequest("GET", url+"api/v1/health", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("Host %q: %v", tc.host, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET /api/v1/health, Host %q, Origin %q: %s, want %d", tc.host, tc.origin, resp.Status, tc.status)
		}
	}
	// Plain HTTP is not served on that port.
	plain := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	if resp, err := plain.Get("http" + strings.TrimPrefix(url, "https") + "api/v1/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
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
}

// TestRunAPITLSErrors checks that an unreadable certificate or key fails
// before anything else, and that a bad --api-host is refused.
func TestRunAPITLSErrors(t *testing.T) {
	clearParleyEnv(t)
	certFile, keyFile, _ := writeTLSFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing certificate", []string{"--api-tls-cert", missing, "--api-tls-key", keyFile}, "--api-tls-cert"},
		{"key for the certificate swapped", []string{"--api-tls-cert", keyFile, "--api-tls-key", certFile}, "--api-tls-cert"},
		{"host with a scheme", []string{"--api-tls-cert", certFile, "--api-tls-key", keyFile, "--api-host", "https://chat.example.org"}, "allowed host"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"run", "--data-dir", dir, "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"}, tc.args...)
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one about %s", tc.name, err, tc.want)
		}
		if strings.HasPrefix(tc.want, "--api-tls") {
			assertUntouched(t, dir)
		}
	}
}

// cancelOnLog is a log writer that cancels a context once a line holding
// substr is written.
type cancelOnLog struct {
	syncBuffer
	substr string
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelOnLog) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.substr) {
		c.once.Do(c.cancel)
	}
	return c.syncBuffer.Write(p)
}

// TestRunShutdownAroundUnlock checks that a shutdown (the context ending,
// as on SIGTERM) before or during the unlock from the passphrase file is
// a clean exit: run returns nil, and the node is closed.
func TestRunShutdownAroundUnlock(t *testing.T) {
	clearParleyEnv(t)
	// looseFile is a passphrase file that others may read: unlockFromFile
	// warns about it just before it unlocks, which is when the test's
	// "signal" comes.
	looseFile := func(pass string) string {
		f := writePassFile(t, pass)
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		name, pass string
		before     bool   // cancelled before run starts
		log        string // what the log says
	}{
		{"before the unlock", testPass, true, "shutting down before the unlock"},
		{"during the unlock", testPass, false, "unlocked with the passphrase file"},
		{"during an unlock that fails", "not the passphrase at all", false, "shutting down during the unlock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := registeredDir(t, "alice-2048")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.before {
				cancel()
			}
			stderr := &cancelOnLog{substr: "chmod 600", cancel: cancel}
			err := run(ctx, []string{"run", "--data-dir", dir, "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0",
				"--passphrase-file", looseFile(tc.pass)}, io.Discard, stderr)
			if err != nil || exitCode(err) != 0 {
				t.Fatalf("run = %v (exit %d), want nil: a shutdown\n%s", err, exitCode(err), stderr.String())
			}
			if ctx.Err() == nil {
				t.Fatal("the test's cancel never came")
			}
			if !strings.Contains(stderr.String(), tc.log) {
				t.Errorf("the log does not say %q:\n%s", tc.log, stderr.String())
			}
			// The node was closed: its store opens again.
			n, err := node.New(testNodeConfig(t, dir, "alice-2048"))
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if err := n.Unlock(context.Background(), []byte(testPass)); err != nil {
				t.Fatalf("reopening the store: %v", err)
			}
		})
	}
}
