package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics serves reg (plus the Go runtime and process collectors) at
// http://addr/metrics until ctx ends or stop is called. It returns the
// address it listens on (addr may have port 0).
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) (bound string, stop func(), err error) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	stopped := context.AfterFunc(ctx, func() { srv.Close() })
	return ln.Addr().String(), func() {
		stopped()
		srv.Close()
	}, nil
}

// metricsAndLogFlags adds the --metrics, --log-level and --config flags
// that run and relay share; it returns the log level's flag value.
func metricsAndLogFlags(fs *flag.FlagSet, getenv func(string) string, metrics *string) *string {
	configFlag(fs, getenv)
	fs.StringVar(metrics, "metrics", getenv(envMetrics),
		"serve Prometheus metrics at http://`ADDR`/metrics (host:port) ["+envMetrics+"]")
	return fs.String("log-level", orDefault(getenv(envLogLevel), "info"),
		"log `level`: debug, info, warn or error; logs go to stderr ["+envLogLevel+"]")
}
