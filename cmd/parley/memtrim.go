package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// A node that goes quiet gives the memory its last burst of work freed
// back to the system: the collector frees it, but the runtime returns
// free pages to the system only gradually (and a chat node is a desktop
// program, measured by its resident size). idleTrim watches how much the
// process allocates; once an interval passes with less than quietAlloc,
// it runs debug.FreeOSMemory, once, and again only after the next busy
// interval. Measured (BenchmarkAPIProcesses/idle-rss, two runs each in
// the same minutes): an idle node with two friends held 40.2–40.5 MiB
// (anonymous 15.8–15.9) without it, 38.5–38.7 MiB (13.8–13.9) with it;
// its friend's node 35.0–40.7 and 32.8–33.1 MiB.
const (
	trimEvery  = 2 * time.Second
	quietAlloc = 256 << 10
)

// idleTrim is the watcher; allocs and trim are the runtime's (tests
// replace them).
type idleTrim struct {
	every  time.Duration
	quiet  uint64
	allocs func() uint64 // bytes allocated since the process started
	trim   func()
}

func newIdleTrim() *idleTrim {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	return &idleTrim{
		every: trimEvery, quiet: quietAlloc, trim: debug.FreeOSMemory,
		allocs: func() uint64 {
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return 0
			}
			return sample[0].Value.Uint64()
		},
	}
}

// start runs the watcher until ctx ends or the returned stop is called,
// which waits for it.
func (t *idleTrim) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.run(ctx, time.NewTicker(t.every).C)
	}()
	return func() { cancel(); wg.Wait() }
}

// run trims once per quiet stretch: at the first tick after which less
// than quiet was allocated since the last.
func (t *idleTrim) run(ctx context.Context, tick <-chan time.Time) {
	last, trimmed := t.allocs(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		now := t.allocs()
		busy := now-last >= t.quiet
		last = now
		switch {
		case busy:
			trimmed = false
		case !trimmed:
			t.trim()
			trimmed = true
			last = t.allocs() // what the trim allocated is not activity
		}
	}
}
