package main

import (
	"fmt"
	"strings"

	"github.com/parley-chat/parley/internal/benchdata"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

// The groups' part of the report (issues 15 and 16): the records
// group-fanout-50 (BenchmarkGroupFanout50: Parley's path vs raw
// gossipsub, 50 members on real hosts), group-fanout-50-floor and
// group-fanout-50-floor-unsynced (BenchmarkGroupFanout50Floor: the least
// work of a member vs raw gossipsub on the same topology) and
// group-sim-500 (BenchmarkGroupSim500: 500 members on a mock network).

const (
	recGroupFanout   = "group-fanout-50"
	recGroupFloor    = "group-fanout-50-floor"
	recGroupUnsynced = "group-fanout-50-floor-unsynced"
	recGroupSim      = "group-sim-500"
	benchGroupFloor  = "BenchmarkGroupFanout50Floor/synced"
	figGroupFanout   = "group-fanout-cdf.png"
	// groupRatioLimit is the target for Parley's fan-out p99 over raw
	// gossipsub's.
	groupRatioLimit = 1.5
)

// groupTargets are the groups' targets.
func groupTargets() []target {
	return []target{
		{what: "Group fan-out, 50 members: p99 over raw gossipsub's", op: "≤", limit: groupRatioLimit, figure: figGroupFanout,
			floor:  fanoutFloor,
			checks: []check{{sources: []source{rec(recGroupFanout, "ratio-p99"), line("BenchmarkGroupFanout50", "ratio-p99")}}}},
		{what: "Group of 500 (simulated): delivery", op: "≥", limit: 100, unit: "%",
			checks: []check{{sources: []source{rec(recGroupSim, "delivery-%"), line("BenchmarkGroupSim500", "delivery-%")}}}},
	}
}

// fanoutFloor is the floor network's ratio (floor-ratio-p99 of
// BenchmarkGroupFanout50Floor/synced): the p99 of a network doing only
// what a member cannot skip, over raw gossipsub's in the same benchmark.
func fanoutFloor(d *data) (floor, bool) {
	ratio, ok := firstOf(d, rec(recGroupFloor, "floor-ratio-p99"), line(benchGroupFloor, "floor-ratio-p99"))
	if !ok {
		return floor{}, false
	}
	fl, _ := firstOf(d, rec(recGroupFloor, "floor-p99-ms"), line(benchGroupFloor, "floor-p99-ms"))
	raw, _ := firstOf(d, rec(recGroupFloor, "raw-p99-ms"), line(benchGroupFloor, "raw-p99-ms"))
	return floor{value: ratio, how: fmt.Sprintf(
		"the p99 of the floor network, %s ms (BenchmarkGroupFanout50Floor/synced: the same topology and message size, "+
			"each member verifies the message's Ed25519 signature before forwarding it and durably stores it, "+
			"the sender durably stores it before publishing; nothing else), over raw gossipsub's p99 in the same benchmark, %s ms",
		fmtNum(fl), fmtNum(raw))}, true
}

// groupFanoutPlot draws the CDFs of the fan-out latency of Parley's path
// and of raw gossipsub, with the target for Parley's p99 (1.5 × raw's)
// as a mark; nil without the record's series.
func groupFanoutPlot(d *data) (func(draw.Canvas), error) {
	r, ok := d.records[recGroupFanout]
	if !ok {
		return nil, nil
	}
	c := newCDFPlot("Group fan-out, 50 members: time until every member has a message, CDF")
	for i, cs := range []struct {
		label  string
		series []float64
	}{
		{"Parley: sendGroup → stored by every member", r.Series["parley-ms"]},
		{"raw gossipsub, same topology and size → every subscription", r.Series["raw-ms"]},
		{"floor: verify and durably store only (another benchmark)", d.records[recGroupFloor].Series["floor-ms"]},
	} {
		if err := c.curve(i, cs.label, cs.series); err != nil {
			return nil, err
		}
	}
	if c.curves == 0 {
		return nil, nil
	}
	if raw99, ok := r.Figures["raw-p99-ms"]; ok && raw99 > 0 {
		marks := plotter.XYLabels{XYs: plotter.XYs{{X: groupRatioLimit * raw99, Y: 0.99}}, Labels: []string{"Parley p99 target"}}
		if err := c.targets(marks, fmt.Sprintf("target: Parley p99 ≤ %s × raw p99", fmtNum(groupRatioLimit))); err != nil {
			return nil, err
		}
	}
	return c.draw(), nil
}

// groupFigureText says what the fan-out figure shows.
func groupFigureText() struct{ file, title, missing, text string } {
	return struct{ file, title, missing, text string }{figGroupFanout, "Group fan-out: Parley vs raw gossipsub",
		"no record " + recGroupFanout,
		"BenchmarkGroupFanout50 (node): 50 group members, each the groups part on its own libp2p host (127.0.0.1, TCP) " +
			"and badger store, and one relay; each member dials the relay and 3 other members (fixed seed). The members " +
			"post 256-byte texts in turn, one at a time: *Parley* is the time from sendGroup (seal, durable store, " +
			"publish) until every other member has validated, opened and durably stored the message; *raw gossipsub* " +
			"is the time from Publish until every other host's subscription has random bytes of the same size on the " +
			"wire, on 50 other hosts and a relay with the same links and router options and no validator or store, " +
			"interleaved with the Parley messages. *floor* (BenchmarkGroupFanout50Floor/synced, its own run beside its own " +
			"raw gossipsub) is the same topology doing only what a member cannot skip: verify the message's Ed25519 " +
			"signature before forwarding it and store it durably (a write and an fdatasync). All run in one process " +
			"on this machine, so the 50 members share its cores and its disk: see the CPU per message in the Groups table."}
}

// writeGroups writes the Groups section: a table of each group record.
func writeGroups(b *strings.Builder, d *data) {
	b.WriteString("\n## Groups\n\n")
	fan, okFan := d.records[recGroupFanout]
	sim, okSim := d.records[recGroupSim]
	if !okFan && !okSim {
		fmt.Fprintf(b, "Not measured: no record %s or %s.\n", recGroupFanout, recGroupSim)
		return
	}
	val := func(f map[string]float64, k, unit string) string {
		v, ok := f[k]
		if !ok {
			return "not measured"
		}
		if unit != "" {
			return fmtNum(v) + " " + unit
		}
		return fmtNum(v)
	}
	if okFan {
		fmt.Fprintf(b, "**%s members on real hosts, one relay** (BenchmarkGroupFanout50, %s messages; figure above):\n\n",
			val(fan.Figures, "members", ""), val(fan.Figures, "messages", ""))
		b.WriteString("| | p50 | p99 | CPU per message (all members) | CPU over the processors |\n" +
			"|---|---:|---:|---:|---:|\n")
		fmt.Fprintf(b, "| Parley: sendGroup → stored by every member | %s | %s | %s | %s |\n",
			val(fan.Figures, "parley-p50-ms", "ms"), val(fan.Figures, "parley-p99-ms", "ms"),
			val(fan.Figures, "parley-cpu-ms/msg", "ms"), val(fan.Figures, "parley-floor-ms", "ms"))
		fmt.Fprintf(b, "| raw gossipsub, same topology → every subscription | %s | %s | %s | %s |\n",
			val(fan.Figures, "raw-p50-ms", "ms"), val(fan.Figures, "raw-p99-ms", "ms"),
			val(fan.Figures, "raw-cpu-ms/msg", "ms"), val(fan.Figures, "raw-floor-ms", "ms"))
		fmt.Fprintf(b, "| ratio Parley / raw (target p99 ≤ %s) | %s | %s | | |\n\n",
			fmtNum(groupRatioLimit), val(fan.Figures, "ratio-p50", ""), val(fan.Figures, "ratio-p99", ""))
		writeFanoutFloor(b, d, val)
		fmt.Fprintf(b, "A group message is %s on the wire. All members run in one process on this machine (%s processors "+
			"for the benchmark), so a message cannot be stored by all of them sooner than their CPU time for it spread over "+
			"the processors, a bound that 50 members on 50 machines do not have; and they share its disk, "+
			"where %d concurrent synced 256-byte appends (one per receiving member) took %s at the median in the same run.\n\n",
			val(fan.Figures, "wire-bytes", "bytes"), val(fan.Figures, "procs", ""), max(0, int(fan.Figures["members"])-1),
			val(fan.Figures, "sync-all-ms", "ms"))
	}
	if okSim {
		fmt.Fprintf(b, "**%s members simulated** (BenchmarkGroupSim500: libp2p's mock network, Parley's gossipsub options and "+
			"topic validator, nothing stored; %s messages from %s senders):\n\n",
			val(sim.Figures, "members", ""), val(sim.Figures, "messages", ""), val(sim.Figures, "senders", ""))
		b.WriteString("| Delivery | p50 | p99 | CPU over the processors | Bytes sent per member per message | " +
			"Relay bytes per message | Message on the wire |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n\n",
			val(sim.Figures, "delivery-%", "%"), val(sim.Figures, "p50-ms", "ms"), val(sim.Figures, "p99-ms", "ms"),
			val(sim.Figures, "floor-ms", "ms"),
			val(sim.Figures, "B/member/msg", "bytes"), val(sim.Figures, "relay-B/msg", "bytes"), val(sim.Figures, "wire-B/msg", "bytes"))
		b.WriteString("Delivery is the share of (message, member) pairs that arrived within 10 s; p50 and p99 are the time from " +
			"Publish until the last member had a message; bytes are the pubsub RPCs each router sent (the messages, " +
			"IHAVE/IWANT gossip, grafts and prunes) over the run, per member and message.\n")
	}
}

// writeFanoutFloor writes the table of the floor benchmark's two runs,
// if the records are there.
func writeFanoutFloor(b *strings.Builder, d *data, val func(f map[string]float64, k, unit string) string) {
	fl, ok := d.records[recGroupFloor]
	if !ok {
		return
	}
	fmt.Fprintf(b, "**The floor on the same topology** (BenchmarkGroupFanout50Floor, %s messages): each member only verifies "+
		"the message's Ed25519 signature before forwarding it and stores it (a write into a file zeroed beforehand, and "+
		"an fdatasync); the sender stores it before publishing. Each run has its own raw gossipsub, interleaved:\n\n",
		val(fl.Figures, "messages", ""))
	b.WriteString("| | p50 | p99 | CPU per message (all members) | raw gossipsub p50 | p99 | CPU | ratio p50 | ratio p99 |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	labels := []string{"synced (the floor)"}
	recs := []benchdata.Record{fl}
	if un, ok := d.records[recGroupUnsynced]; ok {
		labels, recs = append(labels, "unsynced (no fdatasync: not durable)"), append(recs, un)
	}
	for i, r := range recs {
		f := r.Figures
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", labels[i],
			val(f, "floor-p50-ms", "ms"), val(f, "floor-p99-ms", "ms"), val(f, "floor-cpu-ms/msg", "ms"),
			val(f, "raw-p50-ms", "ms"), val(f, "raw-p99-ms", "ms"), val(f, "raw-cpu-ms/msg", "ms"),
			val(f, "floor-ratio-p50", ""), val(f, "floor-ratio-p99", ""))
	}
	b.WriteString("\nWhat Parley spends beyond the floor is its code's; what the floor spends beyond raw gossipsub is this " +
		"machine's price for verifying and storing, with 50 members on its processors and its one disk.")
	fan := d.records[recGroupFanout].Figures
	if p50, p99 := fan["parley-p50-ms"], fan["parley-p99-ms"]; p50 > 0 && fl.Figures["floor-p50-ms"] > 0 && fl.Figures["floor-p99-ms"] > 0 {
		fmt.Fprintf(b, " Parley over the floor (synced): p50 %s, p99 %s.", fmtNum(p50/fl.Figures["floor-p50-ms"]), fmtNum(p99/fl.Figures["floor-p99-ms"]))
	}
	b.WriteString("\n\n")
}
