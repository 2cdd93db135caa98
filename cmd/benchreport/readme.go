package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine is where and when the benchmarks ran.
type machine struct {
	NProc              int
	CPU                string
	LoadStart, LoadEnd string // load averages (1, 5, 15 min) as given
	Date               time.Time
	Rev                string
}

// fmtNum prints v with as many digits as a benchmark figure deserves.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case a >= 100 || v == math.Trunc(v):
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// group puts thousands separators into an integer's digits.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "unknown"
	}
	return strings.TrimSpace(s)
}

// cell escapes what would end a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// writeReadme writes the report's README.md text to w; figs are the
// plots that were made.
func writeReadme(w io.Writer, m machine, d *data, figs map[string]bool) error {
	var b strings.Builder
	b.WriteString("# Benchmark report\n\n")
	b.WriteString("Made by `make bench-report` (cmd/benchreport) from one run of the benchmarks of `make bench`: ")
	b.WriteString("the tables are their `go test -bench` lines, the figures are drawn from the samples they recorded. ")
	b.WriteString("Do not edit by hand; run `make bench-report` again.\n\n")
	b.WriteString("| Machine | |\n|---|---|\n")
	fmt.Fprintf(&b, "| Date | %s |\n", m.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "| Git revision | `%s` |\n", cell(orUnknown(m.Rev)))
	cpu := orUnknown(m.CPU)
	if d.bench != nil && d.bench.CPU != "" && d.bench.CPU != m.CPU {
		cpu += " (go test: " + d.bench.CPU + ")"
	}
	fmt.Fprintf(&b, "| CPU | %s |\n", cell(cpu))
	fmt.Fprintf(&b, "| nproc | %d |\n", m.NProc)
	if d.bench != nil && d.bench.GOOS != "" {
		fmt.Fprintf(&b, "| OS/arch | %s/%s |\n", d.bench.GOOS, d.bench.GOARCH)
	}
	fmt.Fprintf(&b, "| Load average (1, 5, 15 min) at the start | %s |\n", cell(orUnknown(m.LoadStart)))
	fmt.Fprintf(&b, "| Load average (1, 5, 15 min) at the end | %s |\n\n", cell(orUnknown(m.LoadEnd)))
	if d.bench != nil && len(d.bench.Failures) > 0 {
		b.WriteString("**Warning: the run reported failures**, so some results below may be missing:\n\n")
		for _, f := range d.bench.Failures {
			fmt.Fprintf(&b, "    %s\n", f)
		}
		b.WriteString("\n")
	}

	ts := targets()
	b.WriteString("## Targets\n\n")
	b.WriteString("The issue's targets; a target with no record or benchmark line in this run is *not measured*. " +
		"The floor is what the work the path cannot skip cost in the same run, from the run's own samples " +
		"(how, below); a limit below it cannot be met by a change to the code, only on a faster machine. " +
		"The group fan-out's floor is measured by a network that does only that work (verify, store durably) on the " +
		"same topology; a p99 is a tail, so it moves from run to run more than a median (see Groups).\n\n")
	b.WriteString("| Target | Limit | Measured | Floor in this run | Status |\n|---|---|---|---|---|\n")
	for _, t := range ts {
		status, results := t.evaluate(d)
		fl := ""
		if f, ok := t.floorOf(d); ok {
			fl = fmtNum(f.value)
			if t.unit != "" {
				fl += " " + t.unit
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(t.what), limitText(t), cell(measuredText(t, results)), fl, status)
	}
	b.WriteString("\nWhere each value comes from:\n\n")
	for _, t := range ts {
		_, results := t.evaluate(d)
		var from []string
		for _, r := range results {
			if r.measured {
				from = append(from, prefix(r.label)+r.from.String())
			}
		}
		if len(from) == 0 {
			from = append(from, "not measured: none of "+sourceList(t))
		}
		fmt.Fprintf(&b, "- %s: %s", t.what, strings.Join(from, "; "))
		if t.note != nil {
			fmt.Fprintf(&b, " (%s)", t.note(d))
		}
		if f, ok := t.floorOf(d); ok {
			fmt.Fprintf(&b, "; floor: %s", f.how)
		}
		b.WriteString(".\n")
	}

	b.WriteString("\n## Figures\n")
	for _, f := range figureTexts() {
		fmt.Fprintf(&b, "\n### %s\n\n", f.title)
		if figs[f.file] {
			fmt.Fprintf(&b, "![%s](%s)\n\n", f.title, f.file)
		} else {
			fmt.Fprintf(&b, "Not measured: %s.\n\n", f.missing)
		}
		b.WriteString(f.text + "\n\n")
		for _, t := range ts {
			if t.figure != f.file {
				continue
			}
			status, results := t.evaluate(d)
			fmt.Fprintf(&b, "- %s %s: %s — **%s**\n", t.what, limitText(t), measuredText(t, results), status)
		}
	}

	writeGroups(&b, d)
	writeBenchTables(&b, d.bench)
	writeRecords(&b, d)
	_, err := io.WriteString(w, b.String())
	return err
}

func prefix(label string) string {
	if label == "" {
		return ""
	}
	return label + ": "
}

func limitText(t target) string {
	s := t.op + " " + fmtNum(t.limit)
	if t.unit != "" {
		s += " " + t.unit
	}
	return s
}

func measuredText(t target, results []result) string {
	var parts []string
	for _, r := range results {
		v := "not measured"
		if r.measured {
			v = fmtNum(r.value)
			if t.unit != "" {
				v += " " + t.unit
			}
		}
		parts = append(parts, prefix(r.label)+v)
	}
	return strings.Join(parts, ", ")
}

func sourceList(t target) string {
	var s []string
	for _, c := range t.checks {
		for _, src := range c.sources {
			s = append(s, src.String())
		}
	}
	return strings.Join(s, "; ")
}

// figureTexts say what each figure shows and how it was measured.
func figureTexts() []struct{ file, title, missing, text string } {
	return []struct{ file, title, missing, text string }{
		{figLatency, "Latency: sessions vs a raw stream",
			"no record node-latency-sessions, node-latency-rsa or api-latency",
			"BenchmarkLatency (node) sends messages A→B at 100 msg/s through Node.Send and times each until B's message event; " +
				"each mode runs on its own pair of nodes (RSA-3072 keys, loopback TCP): *sessions* are session messages " +
				"(Ed25519, AES-GCM), *RSA envelopes* are single RSA envelopes, as first contact is. The raw stream curve is " +
				"round trips of the same size (1,500 bytes) over a bare libp2p stream between two other hosts, measured in " +
				"the same run just before the messages: the transport's floor. The HTTP API curve (record api-latency) is " +
				"send_message on A's API to the event on B's WebSocket. The red crosses are the targets: a curve meets one " +
				"when it passes left of (or through) it. Each message waits for two synced writes in sequence (A's before it " +
				"leaves, B's before its event); half a pace after each message the benchmark times one synced write of the " +
				"same kind (fdatasync-paced-ms in its line): at this pace, after an idle gap, a sync costs about twice a " +
				"back-to-back one (fdatasync-ms), and p50/io-floor is the median over the raw round trip, the crypto and " +
				"two such syncs."},
		{figThroughput, "Throughput vs the crypto and fsync bounds",
			"no record node-throughput-sessions or node-throughput-rsa",
			"BenchmarkThroughput (node) sends b.N messages A→B through Node.Send from concurrent senders and waits " +
				"until B has stored each. *crypto bound* is 1 / the receiver's open time: for rsa, Opener.Open of an " +
				"envelope timed alone in the run (as the benchmark reports it); for sessions, the receiver's mean open " +
				"time of the session messages during the run. *fsync bound, 1 sync a message* is 1 / one bare fdatasync " +
				"of a 256-byte append on the same disk in the same run (fdatasync-ms): the rate if each message waited " +
				"for a sync of its own, one after another, without group commit. *fsync bound as grouped* is that times " +
				"the messages per commit of the busier of the two stores in the run (msgs/commit-a, msgs/commit-b in " +
				"the record: messages over commits, set-up included), as if each group commit cost one bare fdatasync. " +
				"Each message waits for two synced writes, the sender's outbox and the receiver's store; the bounds " +
				"assume the two overlap. The dashed line is the target: 5,000 msgs/s for sessions, 0.9 × the crypto " +
				"bound for RSA envelopes. The targets table checks RSA envelopes against the parallel crypto bound instead " +
				"(par-ratio in the benchmark lines): the rate at which GOMAXPROCS goroutines seal and open as many " +
				"envelopes with nothing else running, just before and just after the run, since both nodes share the " +
				"processors and a wall-clock 1/open misstates that when the machine is busy or seal and open differ."},
		{figRSS, "RSS over a burst",
			"no record api-burst with points rss-mib-a, rss-mib-b",
			"The resident set size of each node, sampled while a burst of messages goes through the HTTP API " +
				"(record api-burst, points rss-mib-*); the dashed line is the 80 MiB target for the peak."},
		groupFigureText(),
	}
}

// writeBenchTables writes the go test lines, a section per package and a
// table per benchmark function with a column per unit it reported.
func writeBenchTables(b *strings.Builder, out *BenchOutput) {
	b.WriteString("\n## Benchmarks\n\n")
	if out == nil || len(out.Lines) == 0 {
		b.WriteString("No benchmark lines in the go test output.\n")
		return
	}
	b.WriteString("The `go test -bench` lines of the run (custom metrics as the benchmarks report them; " +
		"names without the -GOMAXPROCS suffix).\n")
	for _, pkg := range out.Packages() {
		fmt.Fprintf(b, "\n### %s\n", orUnknown(pkg))
		var funcs []string
		for _, l := range out.Lines {
			if l.Pkg == pkg && !slices.Contains(funcs, l.Func()) {
				funcs = append(funcs, l.Func())
			}
		}
		for _, fn := range funcs {
			var lines []BenchLine
			units := []string{"ns/op"}
			for _, l := range out.Lines {
				if l.Pkg != pkg || l.Func() != fn {
					continue
				}
				lines = append(lines, l)
				for _, m := range l.Metrics {
					if !slices.Contains(units, m.Unit) && m.Unit != "B/op" && m.Unit != "allocs/op" {
						units = append(units, m.Unit)
					}
				}
			}
			for _, u := range []string{"B/op", "allocs/op"} {
				for _, l := range lines {
					if _, ok := l.Metric(u); ok {
						units = append(units, u)
						break
					}
				}
			}
			b.WriteString("\n| Benchmark | N |")
			for _, u := range units {
				fmt.Fprintf(b, " %s |", cell(u))
			}
			b.WriteString("\n|---|---:|" + strings.Repeat("---:|", len(units)) + "\n")
			for _, l := range lines {
				fmt.Fprintf(b, "| %s | %d |", cell(l.Name), l.N)
				for _, u := range units {
					v, ok := l.Metric(u)
					if ok {
						fmt.Fprintf(b, " %s |", fmtNum(v))
					} else {
						b.WriteString(" |")
					}
				}
				b.WriteString("\n")
			}
		}
	}
}

// writeRecords lists the records the benchmarks left, with their figures.
func writeRecords(b *strings.Builder, d *data) {
	b.WriteString("\n## Records\n\n")
	if len(d.records) == 0 {
		b.WriteString("The benchmarks left no records (PARLEY_BENCH_DIR).\n")
		return
	}
	b.WriteString("What the benchmarks recorded beside their go test lines (series: samples; points: (x, y) over time).\n\n")
	b.WriteString("| Record | Figures | Series and points |\n|---|---|---|\n")
	names := make([]string, 0, len(d.records))
	for n := range d.records {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := d.records[n]
		var figs, samples []string
		for _, k := range sortedKeys(r.Figures) {
			figs = append(figs, fmt.Sprintf("%s = %s", k, fmtNum(r.Figures[k])))
		}
		for _, k := range sortedKeys(r.Series) {
			samples = append(samples, fmt.Sprintf("%s: %d samples", k, len(r.Series[k])))
		}
		for _, k := range sortedKeys(r.Points) {
			samples = append(samples, fmt.Sprintf("%s: %d points", k, len(r.Points[k])))
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", cell(n), cell(strings.Join(figs, ", ")), cell(strings.Join(samples, ", ")))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
