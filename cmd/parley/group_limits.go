package main

import (
	"errors"
	"flag"
	"strconv"

	"github.com/parley-chat/parley/node/groupguard"
)

// Environment variables of the group rate limits (flags of the same
// names; config file keys too). Bursts follow the rates
// (groupguard.Config).
const (
	envGroupRateMsgs      = "PARLEY_GROUP_RATE_MSGS"
	envGroupRateBytes     = "PARLEY_GROUP_RATE_BYTES"
	envGroupPeerRateMsgs  = "PARLEY_GROUP_PEER_RATE_MSGS"
	envGroupPeerRateBytes = "PARLEY_GROUP_PEER_RATE_BYTES"
)

// groupLimitFlags defines the group rate flags on fs, their defaults
// from the environment (or groupguard's). A variable that does not parse
// is an error.
func groupLimitFlags(fs *flag.FlagSet, c *groupguard.Config, getenv func(string) string) error {
	d := groupguard.DefaultConfig()
	env := envDefaults{getenv: getenv}
	env.read(envGroupRateMsgs, func(v string) (err error) { d.Chain.Msgs, err = strconv.ParseFloat(v, 64); return })
	env.read(envGroupRateBytes, func(v string) (err error) { d.Chain.Bytes, err = strconv.ParseFloat(v, 64); return })
	env.read(envGroupPeerRateMsgs, func(v string) (err error) { d.Peer.Msgs, err = strconv.ParseFloat(v, 64); return })
	env.read(envGroupPeerRateBytes, func(v string) (err error) { d.Peer.Bytes, err = strconv.ParseFloat(v, 64); return })
	fs.Float64Var(&c.Chain.Msgs, "group-rate-msgs", d.Chain.Msgs,
		"group messages per second one member's sender key may post; more are dropped at every node ["+envGroupRateMsgs+"]")
	fs.Float64Var(&c.Chain.Bytes, "group-rate-bytes", d.Chain.Bytes,
		"group message bytes per second one member's sender key may post ["+envGroupRateBytes+"]")
	fs.Float64Var(&c.Peer.Msgs, "group-peer-rate-msgs", d.Peer.Msgs,
		"group messages per second one peer may forward to this node; more are dropped and lower its score ["+envGroupPeerRateMsgs+"]")
	fs.Float64Var(&c.Peer.Bytes, "group-peer-rate-bytes", d.Peer.Bytes,
		"group message bytes per second one peer may forward to this node ["+envGroupPeerRateBytes+"]")
	return env.err()
}

// checkGroupLimits refuses rates that are not positive, and what
// groupguard refuses.
func checkGroupLimits(c groupguard.Config) error {
	if c.Chain.Msgs <= 0 || c.Chain.Bytes <= 0 || c.Peer.Msgs <= 0 || c.Peer.Bytes <= 0 {
		return errors.New("--group-*rate-* limits must be positive")
	}
	_, err := groupguard.New(c)
	return err
}

// groupLimitKeys are the config file keys of the flags.
var groupLimitKeys = []configKey{
	{"group-rate-msgs", envGroupRateMsgs}, {"group-rate-bytes", envGroupRateBytes},
	{"group-peer-rate-msgs", envGroupPeerRateMsgs}, {"group-peer-rate-bytes", envGroupPeerRateBytes},
}

// groupLimitValues are the effective settings, for config print.
func groupLimitValues(c groupguard.Config) []configValuePrint {
	return []configValuePrint{
		{"group-rate-msgs", c.Chain.Msgs}, {"group-rate-bytes", c.Chain.Bytes},
		{"group-peer-rate-msgs", c.Peer.Msgs}, {"group-peer-rate-bytes", c.Peer.Bytes},
	}
}
