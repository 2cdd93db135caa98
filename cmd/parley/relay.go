package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/node"
	"github.com/parley-chat/parley/node/groupguard"
)

// Environment variables of `parley relay` (besides PARLEY_LISTEN,
// PARLEY_BOOTSTRAP and PARLEY_LOG_LEVEL, shared with run).
const (
	envRelayDataDir = "PARLEY_RELAY_DATA_DIR"
	envMetrics      = "PARLEY_METRICS"
)

// relayConfig is what `parley relay` was told.
type relayConfig struct {
	dataDir   string
	listen    []string
	bootstrap []string
	metrics   string
	logLevel  slog.Level
	mailbox   mailboxOptions
	// groupLimits are the rates of the group traffic it carries
	// (--group-rate-*, --group-peer-rate-*).
	groupLimits groupguard.Config
	groups      groupRelayOptions
}

func parseRelayConfig(args []string, getenv func(string) string, out io.Writer) (relayConfig, error) {
	var c relayConfig
	fs := newFlagSet("parley relay", "parley relay [flags]",
		"Runs a relay until SIGINT or SIGTERM: a DHT server that bootstraps the network, a\n"+
			"circuit relay for nodes behind NAT, the AutoNAT service, a gossipsub peer, a\n"+
			"mailbox that holds encrypted envelopes for offline users and a group relay that\n"+
			"carries and keeps the encrypted traffic of groups that choose it. It needs no identity\n"+
			"and no passphrase. It prints its addresses: give one of them to other nodes as\n"+
			"--bootstrap.")
	fs.StringVar(&c.dataDir, "data-dir", getenv(envRelayDataDir),
		"the relay's data `directory`, which keeps its host key (default ~/.parley-relay) ["+envRelayDataDir+"]")
	listen := &listFlag{values: splitList(getenv(envListen))}
	fs.Var(listen, "listen", "a libp2p listen `multiaddr` (default "+strings.Join(node.DefaultRelayListen, ", ")+
		"); repeatable ["+envListen+"]")
	bootstrap := &listFlag{values: splitList(getenv(envBootstrap))}
	fs.Var(bootstrap, "bootstrap", "another relay's `multiaddr` ending in /p2p/<peer ID>; repeatable ["+envBootstrap+"]")
	level := metricsAndLogFlags(fs, getenv, &c.metrics)
	if err := mailboxFlags(fs, &c.mailbox, getenv); err != nil {
		return c, fmt.Errorf("parley relay: %v: %w", err, errUsage)
	}
	if err := groupLimitFlags(fs, &c.groupLimits, getenv); err != nil {
		return c, fmt.Errorf("parley relay: %v: %w", err, errUsage)
	}
	if err := groupRelayFlags(fs, &c.groups, getenv); err != nil {
		return c, fmt.Errorf("parley relay: %v: %w", err, errUsage)
	}
	if err := parseFlags(fs, args, out); err != nil {
		return c, err
	}
	if err := errors.Join(c.mailbox.check(), c.groups.check()); err != nil {
		return c, fmt.Errorf("parley relay: %v: %w", err, errUsage)
	}
	if err := checkGroupLimits(c.groupLimits); err != nil {
		return c, fmt.Errorf("parley relay: %v: %w", err, errUsage)
	}
	c.listen, c.bootstrap = listen.values, bootstrap.values
	lvl, err := parseLogLevel(*level)
	if err != nil {
		return c, fmt.Errorf("parley relay: %v: %w", err, errUsage)
	}
	c.logLevel = lvl
	if c.dataDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("parley relay: no --data-dir and no home directory: %w", err)
		}
		c.dataDir = filepath.Join(home, ".parley-relay")
	}
	return c, nil
}

// runRelay is `parley relay`.
func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	getenv, _, err := withConfig("relay", args, os.Getenv)
	if err != nil {
		return err
	}
	c, err := parseRelayConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	var reg *prometheus.Registry
	if c.metrics != "" {
		reg = prometheus.NewRegistry()
		addr, stopMetrics, err := serveMetrics(ctx, c.metrics, reg, log)
		if err != nil {
			return fmt.Errorf("parley relay: --metrics: %w", err)
		}
		defer stopMetrics()
		fmt.Fprintf(stdout, "Metrics: http://%s/metrics\n", addr)
		registerDiskMetrics(reg, c.dataDir)
	}
	cfg := node.RelayConfig{DataDir: c.dataDir, Listen: c.listen, Bootstrap: c.bootstrap, Logger: log, GroupLimits: c.groupLimits}
	if reg != nil {
		cfg.Metrics = reg
	}
	r, err := node.StartRelay(ctx, cfg)
	if err != nil {
		return fmt.Errorf("parley relay: %w", err)
	}
	stopMailbox := func() error { return nil }
	if c.mailbox.enabled {
		if stopMailbox, err = startMailbox(ctx, r, c.dataDir, c.mailbox, reg, log); err != nil {
			r.Close()
			return fmt.Errorf("parley relay: %w", err)
		}
	}
	stopGroups := func() error { return nil }
	if c.groups.enabled {
		if stopGroups, err = startGroupRelay(ctx, r, c.dataDir, c.groups, reg, log); err != nil {
			_ = stopMailbox()
			r.Close()
			return fmt.Errorf("parley relay: %w", err)
		}
	}
	fmt.Fprintf(stdout, "Parley relay %s is running. Bootstrap addresses:\n", r.ID())
	for _, a := range r.Addrs() {
		fmt.Fprintln(stdout, "  "+a)
	}
	<-ctx.Done()
	log.Info("shutting down")
	if err := errors.Join(stopGroups(), stopMailbox(), r.Close()); err != nil {
		return fmt.Errorf("parley relay: %w", err)
	}
	return nil
}
