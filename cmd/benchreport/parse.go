package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Metric is one value of a benchmark line with its unit, e.g. 1234 ns/op
// or 0.41 p50-ms.
type Metric struct {
	Value float64
	Unit  string
}

// BenchLine is one result line of go test -bench.
type BenchLine struct {
	Pkg string // the import path from the "pkg:" line before it
	// Name is the benchmark's name without the -GOMAXPROCS suffix, e.g.
	// "BenchmarkLatency/sessions"; Procs is that suffix (0 when absent).
	Name    string
	Procs   int
	N       int64
	Metrics []Metric // in the order go test printed them
}

// Func is the top-level benchmark function, e.g. "BenchmarkLatency".
func (l BenchLine) Func() string {
	name, _, _ := strings.Cut(l.Name, "/")
	return name
}

// Metric returns the value of the metric with unit, if the line has it.
func (l BenchLine) Metric(unit string) (float64, bool) {
	for _, m := range l.Metrics {
		if m.Unit == unit {
			return m.Value, true
		}
	}
	return 0, false
}

// BenchOutput is what the report takes from go test -bench output.
type BenchOutput struct {
	GOOS, GOARCH string
	CPU          string // the first "cpu:" line
	Lines        []BenchLine
	// Failures are the lines that tell of a failed test or benchmark
	// ("--- FAIL", "FAIL ...").
	Failures []string
}

// Packages lists the packages of the benchmark lines in order of first
// appearance.
func (o *BenchOutput) Packages() []string {
	var pkgs []string
	seen := map[string]bool{}
	for _, l := range o.Lines {
		if !seen[l.Pkg] {
			seen[l.Pkg] = true
			pkgs = append(pkgs, l.Pkg)
		}
	}
	return pkgs
}

// Find returns the lines named name (without the -GOMAXPROCS suffix), in
// order; with -count there is one a run.
func (o *BenchOutput) Find(name string) []BenchLine {
	var out []BenchLine
	for _, l := range o.Lines {
		if l.Name == name {
			out = append(out, l)
		}
	}
	return out
}

var procsSuffix = regexp.MustCompile(`-(\d+)$`)

// splitProcs splits the -GOMAXPROCS suffix go test adds to a name when
// GOMAXPROCS is not 1. (A name that itself ends in -digits, run with
// GOMAXPROCS=1, loses those digits: go test's output cannot tell them apart.)
func splitProcs(full string) (name string, procs int) {
	m := procsSuffix.FindStringSubmatchIndex(full)
	if m == nil {
		return full, 0
	}
	n, err := strconv.Atoi(full[m[2]:m[3]])
	if err != nil {
		return full, 0
	}
	return full[:m[0]], n
}

// parseResult parses the fields of a result after the name: the
// iteration count, then value-unit pairs.
func parseResult(fields []string) (n int64, metrics []Metric, ok bool) {
	if len(fields) < 3 || len(fields)%2 != 1 {
		return 0, nil, false
	}
	n, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || n <= 0 {
		return 0, nil, false
	}
	for i := 1; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return 0, nil, false
		}
		metrics = append(metrics, Metric{Value: v, Unit: fields[i+1]})
	}
	return n, metrics, true
}

// ParseBench reads the text output of go test -bench (several packages,
// as make bench prints it, with whatever else the run wrote to the same
// stream). A benchmark that printed something while it ran has its name
// and its result on separate lines; the result goes with the name before it.
func ParseBench(r io.Reader) (*BenchOutput, error) {
	out := &BenchOutput{}
	var pkg, pending string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg, pending = strings.TrimSpace(line[len("pkg: "):]), ""
			continue
		case strings.HasPrefix(line, "goos: "):
			out.GOOS = strings.TrimSpace(line[len("goos: "):])
			continue
		case strings.HasPrefix(line, "goarch: "):
			out.GOARCH = strings.TrimSpace(line[len("goarch: "):])
			continue
		case strings.HasPrefix(line, "cpu: "):
			if out.CPU == "" {
				out.CPU = strings.TrimSpace(line[len("cpu: "):])
			}
			continue
		case strings.HasPrefix(trimmed, "--- FAIL"), strings.HasPrefix(line, "FAIL"), strings.HasPrefix(line, "panic: "):
			out.Failures = append(out.Failures, trimmed)
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		full := ""
		if strings.HasPrefix(line, "Benchmark") {
			full, fields = fields[0], fields[1:]
		} else if pending != "" {
			full = pending
		} else {
			continue
		}
		n, metrics, ok := parseResult(fields)
		if !ok {
			if strings.HasPrefix(line, "Benchmark") {
				pending = full // its result comes on a later line
			}
			continue
		}
		pending = ""
		name, procs := splitProcs(full)
		out.Lines = append(out.Lines, BenchLine{Pkg: pkg, Name: name, Procs: procs, N: n, Metrics: metrics})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading go test output: %w", err)
	}
	return out, nil
}
