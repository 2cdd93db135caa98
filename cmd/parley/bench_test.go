package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
)

// benchNode is a node in this process with its API served on loopback.
type benchNode struct {
	n     *node.Node
	url   string
	token string
}

func startBenchNode(b *testing.B, keyName, name string) *benchNode {
	b.Helper()
	n, err := node.New(testNodeConfig(b, b.TempDir(), keyName))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := api.New(newNodeAPI(n), api.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := api.Listen("127.0.0.1:0", nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		<-done
		n.Close()
	})
	bn := &benchNode{n: n, url: "http://" + ln.Addr().(*net.TCPAddr).String()}
	var reg struct{ Token string }
	bn.call(b, "POST", "/api/v1/register", map[string]string{"name": name, "passphrase": "benchmark passphrase"}, &reg)
	bn.token = reg.Token
	return bn
}

// call makes one API request and decodes the answer into out.
func (bn *benchNode) call(b *testing.B, method, path string, body, out any) {
	b.Helper()
	var rd *bytes.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, bn.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bn.token != "" {
		req.Header.Set("Authorization", "Bearer "+bn.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTPEndToEnd measures, at low load, the time from POST
// /api/v1/send_message on A to the "message" event on B's WebSocket,
// through both nodes, libp2p on loopback TCP and both HTTP servers.
func BenchmarkHTTPEndToEnd(b *testing.B) {
	a, bb := startBenchNode(b, "alice-3072", "Alice"), startBenchNode(b, "bob-3072", "Bob")
	var ma, mb api.Me
	a.call(b, "GET", "/api/v1/me", nil, &ma)
	bb.call(b, "GET", "/api/v1/me", nil, &mb)
	a.call(b, "POST", "/api/v1/friends", map[string]string{"invite": mb.Invite}, nil)
	// friendIs reports whether bn has exactly one friend, with status.
	friendIs := func(bn *benchNode, status string) func() bool {
		return func() bool {
			var fl struct{ Friends []api.Friend }
			bn.call(b, "GET", "/api/v1/friends", nil, &fl)
			return len(fl.Friends) == 1 && fl.Friends[0].Status == status
		}
	}
	waitFor(b, 20*time.Second, "the friend request arrives", friendIs(bb, "pending_in"))
	bb.call(b, "POST", "/api/v1/friends", map[string]string{"user_id": ma.UserID}, nil)
	waitFor(b, 20*time.Second, "the friend accept arrives", friendIs(a, "accepted"))

	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, "ws"+bb.url[len("http"):]+"/api/v1/events",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {bb.url}}})
	if err != nil {
		b.Fatal(err)
	}
	defer ws.CloseNow()
	auth, _ := json.Marshal(map[string]string{"type": "auth", "token": bb.token})
	if err := ws.Write(ctx, websocket.MessageText, auth); err != nil {
		b.Fatal(err)
	}
	next := func() (string, error) {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, data, err := ws.Read(rctx)
		if err != nil {
			return "", err
		}
		var ev struct{ Type string }
		err = json.Unmarshal(data, &ev)
		return ev.Type, err
	}
	if typ, err := next(); err != nil || typ != "ready" {
		b.Fatalf("events socket: %q, %v", typ, err)
	}

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		a.call(b, "POST", "/api/v1/send_message", map[string]string{"to": mb.UserID, "text": fmt.Sprintf("e2e %d", i)}, nil)
		for {
			typ, err := next()
			if err != nil {
				b.Fatal(err)
			}
			if typ == "message" {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	p := func(q int) float64 { return float64(lat[(len(lat)-1)*q/100].Microseconds()) / 1000 }
	b.ReportMetric(p(50), "p50-ms")
	b.ReportMetric(p(99), "p99-ms")
}
