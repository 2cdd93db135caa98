package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/parley-chat/parley/internal/benchdata"
)

// data is everything a report is made from.
type data struct {
	records map[string]benchdata.Record
	bench   *BenchOutput
}

func newData(records []benchdata.Record, bench *BenchOutput) *data {
	d := &data{records: make(map[string]benchdata.Record, len(records)), bench: bench}
	for _, r := range records {
		d.records[r.Name] = r
	}
	return d
}

// figure returns a figure of a record, if both are there.
func (d *data) figure(record, name string) (float64, bool) {
	v, ok := d.records[record].Figures[name]
	return v, ok
}

// source is where one measured value can come from: a record's figure,
// or a metric of a go test line (the median over -count runs).
type source struct {
	record, figure string // a record's figure, or
	bench, unit    string // a benchmark line's metric
}

func rec(record, figure string) source { return source{record: record, figure: figure} }
func line(bench, unit string) source   { return source{bench: bench, unit: unit} }

func (s source) String() string {
	if s.record != "" {
		return fmt.Sprintf("record %s, %s", s.record, s.figure)
	}
	return fmt.Sprintf("go test %s, %s", s.bench, s.unit)
}

func (s source) lookup(d *data) (float64, bool) {
	if s.record != "" {
		return d.figure(s.record, s.figure)
	}
	if d.bench == nil {
		return 0, false
	}
	var vs []float64
	for _, l := range d.bench.Find(s.bench) {
		if v, ok := l.Metric(s.unit); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	return vs[len(vs)/2], true
}

// check is one value a target is judged on; the first of its sources
// that has a value is the one used.
type check struct {
	label   string // e.g. "p50", or "" when the target has one value
	sources []source
}

// target is one of the performance targets.
type target struct {
	what   string  // e.g. "Sessions latency p50"
	op     string  // "≤", "≥" or "<"
	limit  float64 // in unit
	unit   string
	checks []check
	figure string // the figure it belongs with ("" for none)
	// note says how it was measured, when that needs saying ("" if not).
	note func(d *data) string
	// floor, for a target with an upper limit, is what the work its path
	// cannot skip cost in the same run (see floor).
	floor func(d *data) (floor, bool)
}

// floor is what the work a path cannot skip cost in the same run, from
// the run's own samples: for a latency, the synced writes it waits for
// one after the other (their median each). A limit below it cannot be
// met by any change to the code, only on a faster machine.
type floor struct {
	value float64 // in the target's unit
	how   string  // what it is made of, with the run's values
}

// status words of a target.
const (
	statusMet         = "met"
	statusNotMet      = "not met"
	statusNotMeasured = "not measured"
	// statusBelowFloor: not met, and the limit is below the floor.
	statusBelowFloor = "not met: the limit is below this run's floor"
)

// result is a check's outcome.
type result struct {
	check
	value    float64
	from     source
	measured bool
	met      bool
}

func (t target) meets(v float64) bool {
	switch t.op {
	case "≤":
		return v <= t.limit
	case "≥":
		return v >= t.limit
	case "<":
		return v < t.limit
	default:
		return v > t.limit
	}
}

// evaluate judges t on d: met when every measured check meets the limit
// and at least one was measured.
func (t target) evaluate(d *data) (status string, results []result) {
	measured, met := 0, 0
	for _, c := range t.checks {
		r := result{check: c}
		for _, s := range c.sources {
			if v, ok := s.lookup(d); ok {
				r.value, r.from, r.measured, r.met = v, s, true, t.meets(v)
				break
			}
		}
		if r.measured {
			measured++
			if r.met {
				met++
			}
		}
		results = append(results, r)
	}
	switch {
	case measured == 0:
		return statusNotMeasured, results
	case met == measured:
		return statusMet, results
	}
	if f, ok := t.floorOf(d); ok && !t.meets(f.value) {
		return statusBelowFloor, results
	}
	return statusNotMet, results
}

// floorOf is t's floor in d, if t has one and d has what it is made of.
func (t target) floorOf(d *data) (floor, bool) {
	if t.floor == nil {
		return floor{}, false
	}
	return t.floor(d)
}

// firstOf is the value of the first of sources that d has.
func firstOf(d *data, sources ...source) (float64, bool) {
	for _, s := range sources {
		if v, ok := s.lookup(d); ok {
			return v, true
		}
	}
	return 0, false
}

// sessionsFloor: a session message waits for the sender's synced write
// and then the receiver's, each at least a synced write at this pace
// (fdatasync-paced-ms), and for its seal and open (crypto-ms).
func sessionsFloor(d *data) (floor, bool) {
	sync, ok1 := firstOf(d, rec("node-latency-sessions", "fdatasync-paced-ms"), line("BenchmarkLatency/sessions", "fdatasync-paced-ms"))
	crypto, ok2 := firstOf(d, rec("node-latency-sessions", "crypto-ms"), line("BenchmarkLatency/sessions", "crypto-ms"))
	if !ok1 || !ok2 {
		return floor{}, false
	}
	return floor{value: 2*sync + crypto, how: fmt.Sprintf(
		"two synced writes in sequence, the sender's before the message leaves and the receiver's before its event, "+
			"2 × %s ms (fdatasync-paced-ms), and the seal and open, %s ms (crypto-ms)", fmtNum(sync), fmtNum(crypto))}, true
}

// apiFloor: a message sent through the API waits for the same two synced
// writes (fsync-p50-ms, the paced sample of the run), and, when the run
// timed them, for its request's way to A and its event's way from B, each
// half a round trip of its kind (http-rtt-p50-ms, ws-ping-p50-ms).
func apiFloor(d *data) (floor, bool) {
	sync, ok := d.figure("api-latency", "fsync-p50-ms")
	if !ok {
		return floor{}, false
	}
	f := floor{value: 2 * sync, how: fmt.Sprintf(
		"two synced writes in sequence, A's before the message leaves and B's before its event, 2 × %s ms (fsync-p50-ms)",
		fmtNum(sync))}
	httpRTT, ok1 := d.figure("api-latency", "http-rtt-p50-ms")
	wsPing, ok2 := d.figure("api-latency", "ws-ping-p50-ms")
	if ok1 && ok2 {
		f.value += (httpRTT + wsPing) / 2
		f.how += fmt.Sprintf(", and the request's way in and the event's way out, half an HTTP round trip, %s ms "+
			"(http-rtt-p50-ms), and half a WebSocket ping, %s ms (ws-ping-p50-ms)", fmtNum(httpRTT), fmtNum(wsPing))
	}
	return f, true
}

// The plots' file names.
const (
	figLatency    = "latency-cdf.png"
	figThroughput = "throughput.png"
	figRSS        = "rss-burst.png"
)

// targets are the targets, in the order the README lists them.
func targets() []target {
	one := func(sources ...source) []check { return []check{{sources: sources}} }
	return append([]target{
		{what: "Sessions latency p50", op: "≤", limit: 0.5, unit: "ms", figure: figLatency, floor: sessionsFloor,
			checks: one(rec("node-latency-sessions", "p50-ms"), line("BenchmarkLatency/sessions", "p50-ms"))},
		{what: "Sessions latency p99", op: "≤", limit: 2, unit: "ms", figure: figLatency,
			checks: one(rec("node-latency-sessions", "p99-ms"), line("BenchmarkLatency/sessions", "p99-ms"))},
		{what: "Sessions throughput", op: "≥", limit: 5000, unit: "msgs/s", figure: figThroughput,
			note: func(d *data) string {
				if n, ok := d.figure("node-throughput-sessions", "senders"); ok {
					return fmt.Sprintf("measured with %d concurrent senders; the target is for 8", int(n))
				}
				return "the target is for 8 concurrent senders"
			},
			checks: one(rec("node-throughput-sessions", "msgs/s"), line("BenchmarkThroughput/sessions", "msgs/s"))},
		{what: "RSA envelopes, ratio to the parallel crypto bound", op: "≥", limit: 0.9, figure: figThroughput,
			note: rsaBoundNote,
			checks: []check{
				{label: "throughput", sources: []source{line("BenchmarkThroughput/rsa", "par-ratio")}},
				{label: "receive", sources: []source{line("BenchmarkReceive", "par-ratio")}},
				{label: "strict", sources: []source{line("BenchmarkStrictThroughput", "par-ratio")}},
			}},
		{what: "API latency p50", op: "≤", limit: 1, unit: "ms", figure: figLatency, floor: apiFloor,
			checks: one(rec("api-latency", "p50-ms"), line("BenchmarkHTTPEndToEnd", "p50-ms"))},
		{what: "API burst", op: "≥", limit: 3000, unit: "msgs/s", figure: figRSS,
			checks: one(rec("api-burst", "msgs/s"))},
		{what: "Burst peak RSS", op: "≤", limit: 80, unit: "MiB", figure: figRSS,
			checks: []check{
				{label: "node A", sources: []source{rec("api-burst", "peak-rss-mib-a"), rec("api-burst", "peak-rss-a-mib")}},
				{label: "node B", sources: []source{rec("api-burst", "peak-rss-mib-b"), rec("api-burst", "peak-rss-b-mib")}},
			}},
		{what: "Idle RSS", op: "≤", limit: 40, unit: "MiB",
			checks: one(rec("idle-rss", "idle-rss-mib"))},
		{what: "History page (50 of 100,000)", op: "≤", limit: 2, unit: "ms",
			checks: []check{
				{label: "newest", sources: []source{line("BenchmarkMessagesPage/newest", "ms/page"), rec("store-page", "newest-ms/page")}},
				{label: "middle", sources: []source{line("BenchmarkMessagesPage/middle", "ms/page"), rec("store-page", "middle-ms/page")}},
			}},
		{what: "Start to ready", op: "<", limit: 1000, unit: "ms",
			checks: one(rec("start-to-ready", "ms"))},
	}, groupTargets()...)
}

// rsaBoundNote says what the RSA target's bound is, and gives the ratios
// to the bound the processors' CPU time sets, which assumes they add up.
func rsaBoundNote(d *data) string {
	note := "the bound is the rate at which GOMAXPROCS goroutines do the RSA work of the run's messages with " +
		"nothing else running (seal and open with both nodes in one process, open for B's parallel receive, " +
		"sign and verify for --strict-rsa-signatures), timed just before and just after the run, so that it sees " +
		"the machine the run saw: these processors change speed by a third from one minute to the next, and two " +
		"RSA operations at once run about 1.4-1.5 times as fast as one, not twice"
	for _, alt := range []struct{ metric, says string }{
		{"par-best-ratio", "against the best of five short rounds of the same work (par-best-ratio), the ratios are "},
		{"cpu-ratio", "against P/(the CPU time of that work), which assumes the processors add up (cpu-ratio), they are "},
	} {
		var vs []string
		for _, c := range []struct{ label, bench string }{
			{"throughput", "BenchmarkThroughput/rsa"}, {"receive", "BenchmarkReceive"}, {"strict", "BenchmarkStrictThroughput"},
		} {
			if v, ok := line(c.bench, alt.metric).lookup(d); ok {
				vs = append(vs, fmt.Sprintf("%s %.2f", c.label, v))
			}
		}
		if len(vs) > 0 {
			note += "; " + alt.says + strings.Join(vs, ", ")
		}
	}
	return note
}
