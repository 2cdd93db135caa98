// Command benchreport owns the benchmark report, docs/bench: from the
// records the benchmarks leave in PARLEY_BENCH_DIR (internal/benchdata)
// and the text output of go test -bench, it writes README.md (the
// machine, the run's benchmark lines as tables, the targets and
// whether each is met) and the PNG figures it links: the latency CDF of
// sessions against a raw stream, throughput against the crypto and fsync
// bounds, RSS over an API burst, and the group fan-out of Parley against
// raw gossipsub (groups.go, with the Groups table). make bench-report runs the
// benchmarks and then this command:
//
//	go run ./cmd/benchreport -records DIR -bench-output FILE -out docs/bench \
//		-nproc N -load-start '0.10 0.20 0.30' -load-end '...' -rev REV
//
// A record or benchmark that is missing leaves its target "not measured"
// and its figure out; it is not an error.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/benchdata"
)

// options are the command line's.
type options struct {
	records, benchOutput, out string
	cpuinfo                   string
	dpi                       int
	m                         machine
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.records, "records", "", "directory of the benchmarks' JSON records (PARLEY_BENCH_DIR)")
	fs.StringVar(&o.benchOutput, "bench-output", "", "file with the text output of go test -bench")
	fs.StringVar(&o.out, "out", "docs/bench", "directory to write README.md and the figures to")
	fs.IntVar(&o.dpi, "dpi", 120, "resolution of the PNG figures (18 cm wide)")
	fs.StringVar(&o.cpuinfo, "cpuinfo", "/proc/cpuinfo", "file to read the CPU model from")
	fs.IntVar(&o.m.NProc, "nproc", runtime.NumCPU(), "processors the benchmarks had (nproc)")
	fs.StringVar(&o.m.LoadStart, "load-start", "", "load averages at the start of the run (the first three fields of /proc/loadavg)")
	fs.StringVar(&o.m.LoadEnd, "load-end", "", "load averages at the end of the run")
	fs.StringVar(&o.m.Rev, "rev", "", "git revision benchmarked")
	date := fs.String("date", "", "date of the run, RFC 3339 (default now)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.dpi <= 0 {
		return o, fmt.Errorf("-dpi must be positive")
	}
	if o.records == "" && o.benchOutput == "" {
		return o, fmt.Errorf("need -records, -bench-output or both")
	}
	o.m.Date = time.Now()
	if *date != "" {
		t, err := time.Parse(time.RFC3339, *date)
		if err != nil {
			return o, fmt.Errorf("-date: %w", err)
		}
		o.m.Date = t
	}
	return o, nil
}

// cpuModel returns the first "model name" of a /proc/cpuinfo text, or
// "" when it has none (as on some ARM machines).
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// report reads the inputs o names and writes the report into o.out.
func report(o options, log *slog.Logger) error {
	var records []benchdata.Record
	if o.records != "" {
		var err error
		if records, err = benchdata.Read(o.records); err != nil {
			return fmt.Errorf("records: %w", err)
		}
	}
	var bench *BenchOutput
	if o.benchOutput != "" {
		f, err := os.Open(o.benchOutput)
		if err != nil {
			return fmt.Errorf("bench output: %w", err)
		}
		bench, err = ParseBench(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("bench output %s: %w", o.benchOutput, err)
		}
	}
	if info, err := os.ReadFile(o.cpuinfo); err == nil {
		o.m.CPU = cpuModel(info)
	} else {
		log.Warn("no CPU model", "err", err)
	}
	if o.m.CPU == "" && bench != nil {
		o.m.CPU = bench.CPU
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	d := newData(records, bench)
	figs, err := writePlots(d, o.out, o.dpi)
	if err != nil {
		return err
	}
	var readme bytes.Buffer
	if err := writeReadme(&readme, o.m, d, figs); err != nil {
		return err
	}
	path := filepath.Join(o.out, "README.md")
	if err := os.WriteFile(path, readme.Bytes(), 0o644); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	lines := 0
	if bench != nil {
		lines = len(bench.Lines)
	}
	log.Info("wrote the benchmark report", "readme", path, "records", len(records), "benchmark_lines", lines, "figures", len(figs))
	return nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		log.Error("benchreport", "err", err)
		os.Exit(2)
	}
	if err := report(o, log); err != nil {
		log.Error("benchreport", "err", err)
		os.Exit(1)
	}
}
