package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"

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

// mailboxFlags defines the mailbox flags on fs, with the defaults of
// package mailbox.
func mailboxFlags(fs *flag.FlagSet, o *mailboxOptions) {
	d := mailbox.DefaultLimits()
	o.limits.Registration = d.Registration // no flag
	fs.BoolVar(&o.enabled, "mailbox", true,
		"hold envelopes for offline users ("+mailbox.ID+") in <data-dir>/"+mailboxDir+"; --mailbox=false turns it off")
	fs.IntVar(&o.limits.MaxEnvelopes, "mailbox-max-envelopes", d.MaxEnvelopes, "envelopes held per recipient")
	fs.Int64Var(&o.limits.MaxBytes, "mailbox-max-bytes", d.MaxBytes, "bytes held per recipient")
	fs.IntVar(&o.limits.MaxPerDepositor, "mailbox-max-per-sender", d.MaxPerDepositor,
		"envelopes held for one recipient from one depositing peer")
	fs.DurationVar(&o.limits.TTL, "mailbox-ttl", d.TTL, "how long an unfetched envelope is held")
	fs.Float64Var(&o.limits.DepositRate, "mailbox-rate", d.DepositRate, "deposits (and registers, fetches) per second allowed per peer")
	fs.IntVar(&o.limits.DepositBurst, "mailbox-burst", d.DepositBurst, "requests a peer may make at once before the rate applies")
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
