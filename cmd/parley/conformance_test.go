package main

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/api/client"
	"github.com/parley-chat/parley/api/conformance"
)

// TestConformanceInProcess runs the API's shared suite against the node
// through the adapter, in this process: two nodes befriended, messages,
// conversations and events, and each conversion of the adapter.
func TestConformanceInProcess(t *testing.T) {
	conformance.Run(t, func(t *testing.T) (conformance.Impl, conformance.Impl) {
		return newNodeAPI(newTestNode(t, "alice-2048")), newNodeAPI(newTestNode(t, "bob-2048"))
	})
}

// TestConformanceHTTP runs the same suite against api/client talking to
// real nodes through their API servers on 127.0.0.1.
func TestConformanceHTTP(t *testing.T) {
	conformance.Run(t, func(t *testing.T) (conformance.Impl, conformance.Impl) {
		return servedClient(t, "alice-2048"), servedClient(t, "bob-2048")
	})
}

// servedClient starts a node (state new) and its API server on a loopback
// port, and returns a client of it; both stop when the test ends.
func servedClient(t *testing.T, keyName string) *client.Client {
	t.Helper()
	s, err := api.New(newNodeAPI(newTestNode(t, keyName)), api.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c, err := client.New("http://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
