package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/node/grouprelay"
)

// groupRelayDir is the group relay database's directory under the
// relay's data directory.
const groupRelayDir = "grouprelay"

// groupRelayOptions are the group relay flags of `parley relay`.
type groupRelayOptions struct {
	enabled bool
	limits  grouprelay.Limits
}

// The environment variables of the group relay flags (and so their keys
// in a configuration file).
const (
	envGroupRelay                 = "PARLEY_GROUP_RELAY"
	envGroupRelayRetention        = "PARLEY_GROUP_RELAY_RETENTION"
	envGroupRelayMaxTopicMessages = "PARLEY_GROUP_RELAY_MAX_TOPIC_MESSAGES"
	envGroupRelayMaxTopicBytes    = "PARLEY_GROUP_RELAY_MAX_TOPIC_BYTES"
	envGroupRelayMaxBytes         = "PARLEY_GROUP_RELAY_MAX_BYTES"
	envGroupRelayMaxTopics        = "PARLEY_GROUP_RELAY_MAX_TOPICS"
	envGroupRelayMaxTopicsPerPeer = "PARLEY_GROUP_RELAY_MAX_TOPICS_PER_PEER"
)

// groupRelayFlags defines the group relay flags on fs, their defaults
// from the environment (or package grouprelay's). A variable that does
// not parse is an error.
func groupRelayFlags(fs *flag.FlagSet, o *groupRelayOptions, getenv func(string) string) error {
	d := grouprelay.DefaultLimits()
	o.limits.Grace = d.Grace // no flag
	env := envDefaults{getenv: getenv}
	enabled := true
	env.read(envGroupRelay, func(v string) (err error) { enabled, err = strconv.ParseBool(v); return })
	env.read(envGroupRelayRetention, func(v string) (err error) { d.Retention, err = time.ParseDuration(v); return })
	env.read(envGroupRelayMaxTopicMessages, func(v string) (err error) { d.MaxTopicMessages, err = strconv.Atoi(v); return })
	env.read(envGroupRelayMaxTopicBytes, func(v string) (err error) { d.MaxTopicBytes, err = strconv.ParseInt(v, 10, 64); return })
	env.read(envGroupRelayMaxBytes, func(v string) (err error) { d.MaxBytes, err = strconv.ParseInt(v, 10, 64); return })
	env.read(envGroupRelayMaxTopics, func(v string) (err error) { d.MaxTopics, err = strconv.Atoi(v); return })
	env.read(envGroupRelayMaxTopicsPerPeer, func(v string) (err error) { d.MaxTopicsPerPeer, err = strconv.Atoi(v); return })
	fs.BoolVar(&o.enabled, "group-relay", enabled,
		"carry the topics of groups that hand this relay a ticket ("+grouprelay.ID+"), admitting only their members' keys, and keep their "+
			"traffic (ciphertext) for members who were offline, in <data-dir>/"+groupRelayDir+"; --group-relay=false turns it off ["+envGroupRelay+"]")
	fs.DurationVar(&o.limits.Retention, "group-relay-retention", d.Retention, "how long a group message is kept ["+envGroupRelayRetention+"]")
	fs.IntVar(&o.limits.MaxTopicMessages, "group-relay-max-topic-messages", d.MaxTopicMessages,
		"group messages kept per topic; over it the oldest go ["+envGroupRelayMaxTopicMessages+"]")
	fs.Int64Var(&o.limits.MaxTopicBytes, "group-relay-max-topic-bytes", d.MaxTopicBytes,
		"bytes of group messages kept per topic; over it the oldest go ["+envGroupRelayMaxTopicBytes+"]")
	fs.Int64Var(&o.limits.MaxBytes, "group-relay-max-bytes", d.MaxBytes,
		"bytes of group messages kept in all; over it the oldest go ["+envGroupRelayMaxBytes+"]")
	fs.IntVar(&o.limits.MaxTopics, "group-relay-max-topics", d.MaxTopics,
		"group topics carried; a ticket for one more is refused ["+envGroupRelayMaxTopics+"]")
	fs.IntVar(&o.limits.MaxTopicsPerPeer, "group-relay-max-topics-per-peer", d.MaxTopicsPerPeer,
		"group topics one peer may bring (hand the first ticket of) ["+envGroupRelayMaxTopicsPerPeer+"]")
	return env.err()
}

// check refuses limits that are not positive.
func (o groupRelayOptions) check() error {
	l := o.limits
	if l.Retention <= 0 || l.MaxTopicMessages <= 0 || l.MaxTopicBytes <= 0 || l.MaxBytes <= 0 || l.MaxTopics <= 0 || l.MaxTopicsPerPeer <= 0 {
		return errors.New("--group-relay-* limits must be positive")
	}
	return nil
}

// startGroupRelay serves the group relay on r until ctx ends; stop,
// called after that, waits for the server and closes its database.
func startGroupRelay(ctx context.Context, r *node.Relay, dataDir string, o groupRelayOptions, reg *prometheus.Registry, log *slog.Logger) (stop func() error, err error) {
	cfg := grouprelay.Config{
		Dir: filepath.Join(dataDir, groupRelayDir), PubSub: r.PubSub(), Limits: o.limits, Logger: log,
		Admit: r.GroupGuard(), TopicScore: groupguard.TopicScoreParams(),
	}
	if reg != nil {
		cfg.Metrics = reg
	}
	srv, err := grouprelay.NewServer(r.Host(), cfg)
	if err != nil {
		return nil, fmt.Errorf("group relay: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	return func() error { return errors.Join(<-done, srv.Close()) }, nil
}
