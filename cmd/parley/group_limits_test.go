package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/parley-chat/parley/node/groupguard"
)

// TestGroupLimitFlags: the group rates of parley run and parley relay
// come from groupguard's defaults, then the environment, then the flags;
// a rate that is not positive or does not parse is an error; the config
// file sets them too.
func TestGroupLimitFlags(t *testing.T) {
	clearParleyEnv(t)
	t.Setenv("HOME", t.TempDir())
	c, err := parseRunConfig(nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d := groupguard.DefaultConfig()
	if c.groupLimits.Chain.Msgs != d.Chain.Msgs || c.groupLimits.Chain.Bytes != d.Chain.Bytes ||
		c.groupLimits.Peer.Msgs != d.Peer.Msgs || c.groupLimits.Peer.Bytes != d.Peer.Bytes {
		t.Fatalf("defaults = %+v, want groupguard's", c.groupLimits)
	}
	c, err = parseRunConfig([]string{"--group-rate-msgs=5", "--group-peer-rate-bytes=1000000"},
		envMap(map[string]string{envGroupRateMsgs: "3", envGroupPeerRateMsgs: "80", envGroupRateBytes: "65536"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.groupLimits; l.Chain.Msgs != 5 || l.Chain.Bytes != 65536 || l.Peer.Msgs != 80 || l.Peer.Bytes != 1_000_000 {
		t.Fatalf("flags over the environment = %+v", l)
	}
	for _, args := range [][]string{{"--group-rate-msgs=0"}, {"--group-peer-rate-msgs=-1"}, {"--group-rate-bytes=x"}} {
		if _, err := parseRunConfig(args, envMap(nil), io.Discard); err == nil {
			t.Errorf("parseRunConfig(%q) = %v, want an error", args, err)
		}
	}
	if _, err := parseRunConfig(nil, envMap(map[string]string{envGroupRateMsgs: "lots"}), io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("a bad %s = %v, want a usage error", envGroupRateMsgs, err)
	}
	// parley relay takes the same flags, for the group traffic it carries.
	rc, err := parseRelayConfig([]string{"--group-rate-msgs=7"}, envMap(map[string]string{envGroupPeerRateMsgs: "90"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rc.groupLimits.Chain.Msgs != 7 || rc.groupLimits.Peer.Msgs != 90 || rc.groupLimits.Peer.Bytes != d.Peer.Bytes {
		t.Fatalf("relay's group limits = %+v", rc.groupLimits)
	}
	if _, err := parseRelayConfig([]string{"--group-peer-rate-bytes=0"}, envMap(nil), io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("a relay's zero peer rate = %v, want a usage error", err)
	}
	file := writeConfig(t, "[run]\ngroup-rate-msgs = 4\ngroup-peer-rate-bytes = 2000000\n")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "print", "run", "--config", file}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"group-rate-msgs = 4\n", "group-peer-rate-bytes = 2000000\n", "group-peer-rate-msgs = 50\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config print lacks %q:\n%s", want, out.String())
		}
	}
}
