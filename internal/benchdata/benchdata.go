// Package benchdata owns the files benchmarks leave for the benchmark
// report: when PARLEY_BENCH_DIR is set (make bench-report sets it), a
// benchmark records its samples and figures there as one JSON file per
// name, which the report (cmd/benchreport) turns into tables and plots.
// Without the variable, Record does nothing, so make bench is unchanged.
package benchdata

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// EnvDir names the directory benchmarks write their records to.
const EnvDir = "PARLEY_BENCH_DIR"

// Record is what one benchmark leaves for the report.
type Record struct {
	// Name identifies the record, e.g. "node-latency-sessions"; it is the
	// file's name without ".json".
	Name string `json:"name"`
	// Figures are single values with their units in the key, as
	// b.ReportMetric prints them, e.g. "p50-ms": 0.41.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Series are samples, e.g. "sessions-ms": one latency per message,
	// "raw-stream-ms": one round trip per sample.
	Series map[string][]float64 `json:"series,omitempty"`
	// Points are (x, y) samples over time, e.g. "rss-mib": [[0.1, 31.2], ...]
	// with x in seconds since the start of the burst.
	Points map[string][][2]float64 `json:"points,omitempty"`
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Enabled reports whether records are being kept (PARLEY_BENCH_DIR set).
func Enabled() bool { return os.Getenv(EnvDir) != "" }

// Write stores r as <PARLEY_BENCH_DIR>/<r.Name>.json, replacing an older
// record of that name. Without PARLEY_BENCH_DIR it does nothing.
func Write(r Record) error {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return nil
	}
	if !validName.MatchString(r.Name) {
		return fmt.Errorf("benchdata: bad record name %q", r.Name)
	}
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("benchdata: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("benchdata: %w", err)
	}
	tmp := filepath.Join(dir, "."+r.Name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("benchdata: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, r.Name+".json"))
}

// Read loads every record in dir, in name order.
func Read(dir string) ([]Record, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(names))
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("benchdata: %w", err)
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("benchdata: %s: %w", filepath.Base(name), err)
		}
		out = append(out, r)
	}
	return out, nil
}
