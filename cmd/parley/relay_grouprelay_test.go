package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/node/grouprelay"
	"github.com/parley-chat/parley/protocol"
)

func TestParseRelayGroupRelayFlags(t *testing.T) {
	clearParleyEnv(t)
	t.Setenv("HOME", "/home/op")
	c, err := parseRelayConfig(nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.groups.enabled || c.groups.limits != grouprelay.DefaultLimits() {
		t.Errorf("group relay defaults = %+v, want on with %+v", c.groups, grouprelay.DefaultLimits())
	}
	c, err = parseRelayConfig([]string{"--group-relay=false", "--group-relay-retention=48h", "--group-relay-max-topic-messages=5",
		"--group-relay-max-topic-bytes=1000", "--group-relay-max-bytes=5000", "--group-relay-max-topics=7",
		"--group-relay-max-topics-per-peer=3"},
		envMap(map[string]string{envGroupRelayMaxTopics: "9"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := grouprelay.Limits{Retention: 48 * time.Hour, MaxTopicMessages: 5, MaxTopicBytes: 1000, MaxBytes: 5000, MaxTopics: 7,
		MaxTopicsPerPeer: 3, Grace: grouprelay.DefaultLimits().Grace}
	if c.groups.enabled || c.groups.limits != want {
		t.Errorf("group relay flags = %+v, want off with %+v", c.groups, want)
	}
	c, err = parseRelayConfig(nil, envMap(map[string]string{envGroupRelay: "false", envGroupRelayRetention: "1h"}), io.Discard)
	if err != nil || c.groups.enabled || c.groups.limits.Retention != time.Hour {
		t.Errorf("group relay from the environment = %+v, %v", c.groups, err)
	}
	for _, args := range [][]string{{"--group-relay-retention=0"}, {"--group-relay-max-topics=-1"}, {"--group-relay=maybe"}} {
		if _, err := parseRelayConfig(args, envMap(nil), io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("parseRelayConfig(%q) = %v, want a usage error", args, err)
		}
	}
}

// `parley relay` serves the group relay by default, in <data-dir>/grouprelay,
// and not with --group-relay=false.
func TestRelayServesGroupRelay(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "default", false: "--group-relay=false"}[on], func(t *testing.T) {
			clearParleyEnv(t)
			dir := t.TempDir()
			args := []string{"--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn"}
			if !on {
				args = append(args, "--group-relay=false")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout syncBuffer
			done := make(chan error, 1)
			go func() { done <- runRelay(ctx, args, &stdout, io.Discard) }()
			var addr string
			deadline := time.Now().Add(20 * time.Second)
			for addr == "" {
				for _, l := range strings.Split(stdout.String(), "\n") {
					if a := strings.TrimSpace(l); strings.HasPrefix(a, "/ip4/127.0.0.1/") {
						addr = a
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no relay address printed: %q", stdout.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			ai, err := peer.AddrInfoFromString(addr)
			if err != nil {
				t.Fatal(err)
			}
			h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
			defer rcancel()
			if err := h.Connect(rctx, *ai); err != nil {
				t.Fatal(err)
			}
			// A ticket without keys or a topic proof: refused as malformed
			// by a relay that speaks the protocol.
			err = grouprelay.Offer(rctx, h, ai.ID, &protocol.RelayTicket{Version: protocol.GroupVersion, Epoch: 1})
			var re *grouprelay.RefusedError
			switch {
			case on && !(errors.As(err, &re) && errors.Is(err, protocol.ErrMalformed)):
				t.Errorf("offering a malformed ticket = %v, want a malformed refusal", err)
			case !on && (err == nil || errors.As(err, &re)):
				t.Errorf("offering a ticket with the group relay off = %v, want a failure to open the protocol", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("runRelay: %v", err)
			}
			_, err = os.Stat(filepath.Join(dir, groupRelayDir))
			if on != (err == nil) {
				t.Errorf("group relay directory: %v (group relay on: %v)", err, on)
			}
		})
	}
}
