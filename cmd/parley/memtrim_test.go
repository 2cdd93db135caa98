package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// The watcher trims once when a tick finds the process quiet, not again
// while it stays quiet, and again after a busy stretch; ticks are driven
// by the test.
func TestIdleTrimOncePerQuietStretch(t *testing.T) {
	var alloc atomic.Uint64
	trims := make(chan struct{}, 10)
	tr := &idleTrim{quiet: 1000, allocs: alloc.Load, trim: func() { trims <- struct{}{} }}
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); tr.run(ctx, tick) }()
	step := func(allocated uint64) {
		alloc.Add(allocated)
		tick <- time.Time{}
		tick <- time.Time{} // the second send returns once the first tick is handled
	}
	step(5000) // busy, then quiet: trims at the quiet tick
	step(0)    // still quiet: no second trim
	step(5000) // busy again, then quiet: trims again
	cancel()
	<-done
	if n := len(trims); n != 2 {
		t.Fatalf("%d trims, want 2 (one per quiet stretch)", n)
	}
}
