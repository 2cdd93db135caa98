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

	"github.com/parley-chat/parley/node/mailbox"
	"github.com/parley-chat/parley/protocol"
)

func TestParseRelayMailboxFlags(t *testing.T) {
	clearParleyEnv(t)
	t.Setenv("HOME", "/home/op")
	c, err := parseRelayConfig(nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.mailbox.enabled || c.mailbox.limits != mailbox.DefaultLimits() {
		t.Errorf("mailbox defaults = %+v, want on with %+v", c.mailbox, mailbox.DefaultLimits())
	}
	c, err = parseRelayConfig([]string{"--mailbox=false", "--mailbox-max-envelopes=5", "--mailbox-max-bytes=1000",
		"--mailbox-max-per-sender=2", "--mailbox-ttl=1h", "--mailbox-rate=0.5", "--mailbox-burst=3"}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := mailbox.Limits{MaxEnvelopes: 5, MaxBytes: 1000, MaxPerDepositor: 2, TTL: time.Hour, DepositRate: 0.5, DepositBurst: 3,
		Registration: mailbox.DefaultRegistration}
	if c.mailbox.enabled || c.mailbox.limits != want {
		t.Errorf("mailbox flags = %+v, want off with %+v", c.mailbox, want)
	}
	for _, args := range [][]string{{"--mailbox-ttl=0"}, {"--mailbox-max-envelopes=-1"}, {"--mailbox-rate=0"}, {"--mailbox=maybe"}} {
		if _, err := parseRelayConfig(args, envMap(nil), io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("parseRelayConfig(%q) = %v, want a usage error", args, err)
		}
	}
}

// `parley relay` serves the mailbox by default, in <data-dir>/mailbox, and
// not with --mailbox=false.
func TestRelayServesMailbox(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "default", false: "--mailbox=false"}[on], func(t *testing.T) {
			clearParleyEnv(t)
			dir := t.TempDir()
			args := []string{"--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn"}
			if !on {
				args = append(args, "--mailbox=false")
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
			var nobody protocol.ID
			nobody[0] = 1
			err = mailbox.NewClient(h).Deposit(rctx, ai.ID, nobody, []byte("opaque"))
			switch {
			case on && !errors.Is(err, mailbox.ErrUnknown):
				t.Errorf("deposit for an unregistered user = %v, want ErrUnknown", err)
			case !on && (err == nil || errors.Is(err, mailbox.ErrUnknown)):
				t.Errorf("deposit with the mailbox off = %v, want a failure to open the protocol", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("runRelay: %v", err)
			}
			_, err = os.Stat(filepath.Join(dir, mailboxDir))
			if on != (err == nil) {
				t.Errorf("mailbox directory: %v (mailbox on: %v)", err, on)
			}
		})
	}
}
