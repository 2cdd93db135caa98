package main

import (
	"strings"
	"testing"
)

// benchText is go test -bench output as make bench prints it: two
// packages, sub-benchmarks with the -2 GOMAXPROCS suffix, custom
// metrics, -benchmem columns, a benchmark whose own output split its
// name from its result, a sub-benchmark whose name ends in digits, and
// a failure.
const benchText = `go test -tags noassets -run '^$' -bench . -benchmem ./store/
goos: linux
goarch: amd64
pkg: github.com/parley-chat/parley/store
cpu: AMD EPYC 7B13
BenchmarkStoreReceived/one-2         	     428	   2797396 ns/op	   2797396 ns/msg	   12345 B/op	     123 allocs/op
BenchmarkStoreReceived/batch64-2     	     100	  11532245 ns/op	    180191 ns/msg	  654321 B/op	    5678 allocs/op
populated 100000 messages in 3.215s
BenchmarkMessagesPage/newest-2       	    2916	    410526 ns/op	         0.4100 ms/page	  201234 B/op	    2345 allocs/op
BenchmarkMessagesPage/middle-2       	    2517	    475521 ns/op	         0.4750 ms/page	  201999 B/op	    2350 allocs/op
BenchmarkSyncFloorFdatasync-2        	     885	   1353110 ns/op	       0 B/op	       0 allocs/op
BenchmarkPad/size-64-2               	 1000000	        12.50 ns/op
PASS
ok  	github.com/parley-chat/parley/store	35.402s
goos: linux
goarch: amd64
pkg: github.com/parley-chat/parley/node
cpu: AMD EPYC 7B13
BenchmarkThroughput/sessions-2         	     400	    532345 ns/op	         1.350 fdatasync-ms	      1878 msgs/s	         0.08210 open-in-run-ms	     41520 raw-msgs/s	         0.1542 ratio-in-run	  987654 B/op	    9876 allocs/op
BenchmarkThroughput/rsa-2              	     400	   3021245 ns/op	         1.410 fdatasync-ms	       566.0 crypto-bound-msgs/s	       331.0 msgs/s	         0.5848 ratio	         0.5848 cpu-ratio	       0.6012 par-ratio	       0.7012 par-best-ratio	 1987654 B/op	   19876 allocs/op
BenchmarkReceive-2   	2025/01/02 10:11:12 some log line
     400	   1234567 ns/op	       810.0 crypto-bound-msgs/s	       764.3 msgs/s	         0.9436 ratio	         0.9436 cpu-ratio	         1.012 par-ratio
--- FAIL: BenchmarkBroken-2
    bench_test.go:12: it broke
FAIL
exit status 1
FAIL	github.com/parley-chat/parley/node	61.210s
`

func TestParseBench(t *testing.T) {
	out, err := ParseBench(strings.NewReader(benchText))
	if err != nil {
		t.Fatal(err)
	}
	if out.GOOS != "linux" || out.GOARCH != "amd64" || out.CPU != "AMD EPYC 7B13" {
		t.Errorf("machine: %q %q %q", out.GOOS, out.GOARCH, out.CPU)
	}
	wantNames := []string{
		"BenchmarkStoreReceived/one", "BenchmarkStoreReceived/batch64", "BenchmarkMessagesPage/newest",
		"BenchmarkMessagesPage/middle", "BenchmarkSyncFloorFdatasync", "BenchmarkPad/size-64",
		"BenchmarkThroughput/sessions", "BenchmarkThroughput/rsa", "BenchmarkReceive",
	}
	if len(out.Lines) != len(wantNames) {
		t.Fatalf("%d lines, want %d: %+v", len(out.Lines), len(wantNames), out.Lines)
	}
	for i, l := range out.Lines {
		if l.Name != wantNames[i] || l.Procs != 2 {
			t.Errorf("line %d: %q procs %d, want %q procs 2", i, l.Name, l.Procs, wantNames[i])
		}
	}
	if got := out.Packages(); len(got) != 2 || got[0] != "github.com/parley-chat/parley/store" || got[1] != "github.com/parley-chat/parley/node" {
		t.Errorf("packages %q", got)
	}

	page := out.Find("BenchmarkMessagesPage/middle")
	if len(page) != 1 || page[0].N != 2517 || page[0].Pkg != "github.com/parley-chat/parley/store" {
		t.Fatalf("page: %+v", page)
	}
	for unit, want := range map[string]float64{"ns/op": 475521, "ms/page": 0.475, "B/op": 201999, "allocs/op": 2350} {
		if v, ok := page[0].Metric(unit); !ok || v != want {
			t.Errorf("page %s = %v, %v; want %v", unit, v, ok, want)
		}
	}
	if page[0].Func() != "BenchmarkMessagesPage" {
		t.Errorf("func %q", page[0].Func())
	}

	rsa := out.Find("BenchmarkThroughput/rsa")[0]
	wantUnits := []string{"ns/op", "fdatasync-ms", "crypto-bound-msgs/s", "msgs/s", "ratio", "cpu-ratio", "par-ratio", "par-best-ratio", "B/op", "allocs/op"}
	if len(rsa.Metrics) != len(wantUnits) {
		t.Fatalf("rsa metrics %+v", rsa.Metrics)
	}
	for i, m := range rsa.Metrics {
		if m.Unit != wantUnits[i] {
			t.Errorf("rsa metric %d unit %q, want %q", i, m.Unit, wantUnits[i])
		}
	}
	if v, _ := rsa.Metric("ratio"); v != 0.5848 {
		t.Errorf("rsa ratio %v", v)
	}

	// The result on the line after the name (the benchmark logged).
	recv := out.Find("BenchmarkReceive")
	if len(recv) != 1 || recv[0].N != 400 || recv[0].Pkg != "github.com/parley-chat/parley/node" {
		t.Fatalf("receive: %+v", recv)
	}
	if v, _ := recv[0].Metric("msgs/s"); v != 764.3 {
		t.Errorf("receive msgs/s %v", v)
	}
	if v, _ := out.Find("BenchmarkPad/size-64")[0].Metric("ns/op"); v != 12.5 {
		t.Errorf("pad ns/op %v", v)
	}

	if len(out.Failures) != 3 || out.Failures[0] != "--- FAIL: BenchmarkBroken-2" {
		t.Errorf("failures %q", out.Failures)
	}
}

func TestSplitProcs(t *testing.T) {
	for _, c := range []struct {
		in    string
		name  string
		procs int
	}{
		{"BenchmarkLatency/sessions-2", "BenchmarkLatency/sessions", 2},
		{"BenchmarkReceive-16", "BenchmarkReceive", 16},
		{"BenchmarkReceive", "BenchmarkReceive", 0},
		{"BenchmarkX/a#01-4", "BenchmarkX/a#01", 4},
		{"BenchmarkX/size-64-8", "BenchmarkX/size-64", 8},
	} {
		name, procs := splitProcs(c.in)
		if name != c.name || procs != c.procs {
			t.Errorf("splitProcs(%q) = %q, %d; want %q, %d", c.in, name, procs, c.name, c.procs)
		}
	}
}

func TestParseBenchIgnoresNoise(t *testing.T) {
	text := "Benchmark results follow\nsome 12 words 3 here\nBenchmarkOdd-2 \t 10 \t 5 ns/op extra\n" +
		"ok  \tgithub.com/x\t1.0s\n"
	out, err := ParseBench(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Lines) != 0 || len(out.Failures) != 0 {
		t.Errorf("lines %+v, failures %q", out.Lines, out.Failures)
	}
}

func TestFmtNum(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 1878: "1,878", 2797396: "2,797,396", 566.04: "566", 1.3456: "1.35", 0.08213: "0.0821", -1234: "-1,234",
	} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nprocessor\t: 1\n"
	if got := cpuModel([]byte(info)); got != "AMD EPYC 7B13 64-Core Processor" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel([]byte("processor\t: 0\nHardware\t: BCM2835\n")); got != "" {
		t.Errorf("cpuModel without model name = %q", got)
	}
}
