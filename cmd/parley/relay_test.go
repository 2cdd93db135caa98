package main

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseRelayConfig(t *testing.T) {
	clearParleyEnv(t)
	t.Setenv("HOME", "/home/op")
	c, err := parseRelayConfig(nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.dataDir != filepath.Join("/home/op", ".parley-relay") || c.listen != nil || c.bootstrap != nil ||
		c.metrics != "" || c.logLevel != slog.LevelInfo {
		t.Errorf("defaults = %+v", c)
	}

	env := map[string]string{
		envRelayDataDir: "/srv/relay",
		envListen:       "/ip4/127.0.0.1/tcp/4001",
		envBootstrap:    "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWB",
		envMetrics:      "127.0.0.1:9100",
		envLogLevel:     "warn",
	}
	c, err = parseRelayConfig([]string{"--listen", "/ip4/127.0.0.1/tcp/4002", "--metrics=127.0.0.1:9200"}, envMap(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.dataDir != "/srv/relay" || !slices.Equal(c.listen, []string{"/ip4/127.0.0.1/tcp/4002"}) ||
		!slices.Equal(c.bootstrap, []string{"/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWB"}) ||
		c.metrics != "127.0.0.1:9200" || c.logLevel != slog.LevelWarn {
		t.Errorf("env and flags = %+v", c)
	}

	for _, args := range [][]string{{"extra"}, {"--nope"}, {"--log-level", "loud"}} {
		if _, err := parseRelayConfig(args, envMap(nil), io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("parseRelayConfig(%q) = %v, want a usage error", args, err)
		}
	}
}
