package store

import (
	"os"
	"testing"

	"github.com/parley-chat/parley/internal/benchdata"
)

// The records the store's benchmarks leave for the benchmark report
// (make bench-report, cmd/benchreport) when PARLEY_BENCH_DIR is set:
// "store-sync" (fdatasync-ms, badger-commit-ms, badger-nosync-ms) and
// "store-page" (newest-ms/page, middle-ms/page). Several benchmarks add
// figures to one record, so each adds its own to what is there.

// recordPerOp adds figure, the milliseconds per op of b's run, to the
// record named record.
func recordPerOp(b *testing.B, record, figure string) {
	b.Helper()
	if !benchdata.Enabled() || b.N == 0 {
		return
	}
	ms := float64(b.Elapsed().Nanoseconds()) / 1e6 / float64(b.N)
	records, err := benchdata.Read(os.Getenv(benchdata.EnvDir))
	if err != nil {
		b.Fatal(err)
	}
	r := benchdata.Record{Name: record}
	for _, old := range records {
		if old.Name == record {
			r = old
		}
	}
	if r.Figures == nil {
		r.Figures = map[string]float64{}
	}
	r.Figures[figure] = ms
	if err := benchdata.Write(r); err != nil {
		b.Fatal(err)
	}
}

// recordBadgerCommit adds benchBadgerCommit's time per commit to store-sync.
func recordBadgerCommit(b *testing.B, syncWrites bool) {
	b.Helper()
	if syncWrites {
		recordPerOp(b, "store-sync", "badger-commit-ms")
	} else {
		recordPerOp(b, "store-sync", "badger-nosync-ms")
	}
}
