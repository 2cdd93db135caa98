package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/store"
)

// TestWebTransports: two nodes that listen only on a transport that looks
// like web traffic (WebSocket over TCP, WebTransport over QUIC) become
// friends and chat over it, and the connection between them is on that
// transport.
func TestWebTransports(t *testing.T) {
	for _, tc := range []struct{ name, listen, proto string }{
		{"websocket", "/ip4/127.0.0.1/tcp/0/ws", "/ws"},
		{"webtransport", "/ip4/127.0.0.1/udp/0/quic-v1/webtransport", "/webtransport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := testConfig(t, "alice-2048"), testConfig(t, "bob-2048")
			ca.Listen, cb.Listen = []string{tc.listen}, []string{tc.listen}
			a, b := startNode(t, ca, "Alice"), startNode(t, cb, "Bob")
			befriend(t, a, b)
			ctx := context.Background()
			mb, _ := b.Me(ctx)
			for _, addr := range mb.Addrs {
				if !strings.Contains(addr, tc.proto) {
					t.Fatalf("bob listens on %s, want only %s addresses", addr, tc.proto)
				}
			}
			sent, err := a.Send(ctx, mb.UserID, "over "+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the message delivered", func() bool {
				page, _, err := a.Messages(ctx, mb.UserID, "", 10)
				for _, m := range page {
					if err == nil && m.ID == sent.ID && m.Status == store.StatusDelivered {
						return true
					}
				}
				return false
			})
			ua, _ := a.running()
			ub, _ := b.running()
			conns := ua.host.Network().ConnsToPeer(ub.host.ID())
			if len(conns) == 0 {
				t.Fatal("no connection between them")
			}
			for _, c := range conns {
				if !strings.Contains(c.RemoteMultiaddr().String(), tc.proto) {
					t.Errorf("connection on %s, want %s", c.RemoteMultiaddr(), tc.proto)
				}
			}
		})
	}
}
