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
	"github.com/parley-chat/parley/node/mailbox"
)

// mailboxDir is the mailbox database's directory under the relay's data
// directory.
const mailboxDir = "mailbox"

// mailboxOptions are the mailbox flags of `parley relay`.
type mailboxOptions struct {
	enabled bool
	limits  mailbox.Limits
}

// The environment variables of the mailbox flags (and so their keys in a
// configuration file).
const (
	envMailbox             = "PARLEY_MAILBOX"
	envMailboxMaxEnvelopes = "PARLEY_MAILBOX_MAX_ENVELOPES"
	envMailboxMaxBytes     = "PARLEY_MAILBOX_MAX_BYTES"
	envMailboxMaxPerSender = "PARLEY_MAILBOX_MAX_PER_SENDER"
	envMailboxTTL          = "PARLEY_MAILBOX_TTL"
	envMailboxRate         = "PARLEY_MAILBOX_RATE"
	envMailboxBurst        = "PARLEY_MAILBOX_BURST"
)

// envDefaults reads flag defaults from the environment, gathering the
// variables that do not parse.
type envDefaults struct {
	getenv func(string) string
	errs   []error
}

// read passes name's value, when set, to parse.
func (e *envDefaults) read(name string, parse func(string) error) {
	if v := e.getenv(name); v != "" {
		if err := parse(v); err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: %w", name, v, err))
		}
	}
}

// err is every variable that did not parse, nil if none.
func (e *envDefaults) err() error { return errors.Join(e.errs...) }

// mailboxFlags defines the mailbox flags on fs, their defaults from the
// environment (or package mailbox's). A variable that does not parse is
// an error.
func mailboxFlags(fs *flag.FlagSet, o *mailboxOptions, getenv func(string) string) error {
	d := mailbox.DefaultLimits()
	o.limits.Registration = d.Registration // no flag
	env := envDefaults{getenv: getenv}
	enabled := true
	env.read(envMailbox, func(v string) (err error) { enabled, err = strconv.ParseBool(v); return })
	env.read(envMailboxMaxEnvelopes, func(v string) (err error) { d.MaxEnvelopes, err = strconv.Atoi(v); return })
	env.read(envMailboxMaxBytes, func(v string) (err error) { d.MaxBytes, err = strconv.ParseInt(v, 10, 64); return })
	env.read(envMailboxMaxPerSender, func(v string) (err error) { d.MaxPerDepositor, err = strconv.Atoi(v); return })
	env.read(envMailboxTTL, func(v string) (err error) { d.TTL, err = time.ParseDuration(v); return })
	env.read(envMailboxRate, func(v string) (err error) { d.DepositRate, err = strconv.ParseFloat(v, 64); return })
	env.read(envMailboxBurst, func(v string) (err error) { d.DepositBurst, err = strconv.Atoi(v); return })
	fs.BoolVar(&o.enabled, "mailbox", enabled,
		"hold envelopes for offline users ("+mailbox.ID+") in <data-dir>/"+mailboxDir+"; --mailbox=false turns it off ["+envMailbox+"]")
	fs.IntVar(&o.limits.MaxEnvelopes, "mailbox-max-envelopes", d.MaxEnvelopes, "envelopes held per recipient ["+envMailboxMaxEnvelopes+"]")
	fs.Int64Var(&o.limits.MaxBytes, "mailbox-max-bytes", d.MaxBytes, "bytes held per recipient ["+envMailboxMaxBytes+"]")
	fs.IntVar(&o.limits.MaxPerDepositor, "mailbox-max-per-sender", d.MaxPerDepositor,
		"envelopes held for one recipient from one depositing peer ["+envMailboxMaxPerSender+"]")
	fs.DurationVar(&o.limits.TTL, "mailbox-ttl", d.TTL, "how long an unfetched envelope is held ["+envMailboxTTL+"]")
	fs.Float64Var(&o.limits.DepositRate, "mailbox-rate", d.DepositRate,
		"deposits (and registers, fetches) per second allowed per peer ["+envMailboxRate+"]")
	fs.IntVar(&o.limits.DepositBurst, "mailbox-burst", d.DepositBurst,
		"requests a peer may make at once before the rate applies ["+envMailboxBurst+"]")
	return env.err()
}

// check refuses limits that are not positive.
func (o mailboxOptions) check() error {
	l := o.limits
	if l.MaxEnvelopes <= 0 || l.MaxBytes <= 0 || l.MaxPerDepositor <= 0 || l.TTL <= 0 || l.DepositRate <= 0 || l.DepositBurst <= 0 {
		return errors.New("--mailbox-* limits must be positive")
	}
	return nil
}

// startMailbox serves the mailbox on r until ctx ends; stop, called after
// that, waits for the server and closes its database.
func startMailbox(ctx context.Context, r *node.Relay, dataDir string, o mailboxOptions, reg *prometheus.Registry, log *slog.Logger) (stop func() error, err error) {
	cfg := mailbox.Config{Dir: filepath.Join(dataDir, mailboxDir), Directory: r.Directory(), Limits: o.limits, Logger: log}
	if reg != nil {
		cfg.Metrics = reg
	}
	srv, err := mailbox.NewServer(r.Host(), cfg)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	return func() error { return errors.Join(<-done, srv.Close()) }, nil
}
