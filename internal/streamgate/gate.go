// Package streamgate owns the stream handlers of a relay service's Serve
// (the mailbox, the group relay): each stream is served under Serve's
// context (reset when it ends), and on the way out the service refuses
// new streams and waits for those it is serving.
package streamgate

import (
	"context"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
)

// Gate counts the streams being served; the zero Gate is open.
type Gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Handler serves each stream with f while the gate is open, resetting
// it when ctx ends; a stream that comes once the gate is closed is
// reset.
func (g *Gate) Handler(ctx context.Context, f func(network.Stream)) network.StreamHandler {
	return func(st network.Stream) {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			st.Reset()
			return
		}
		g.wg.Add(1)
		g.mu.Unlock()
		defer g.wg.Done()
		stop := context.AfterFunc(ctx, func() { st.Reset() })
		defer stop()
		f(st)
	}
}

// Close refuses new streams and waits for those being served to end.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
