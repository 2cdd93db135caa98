package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestForeignHostForbidden(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{UI: fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}}})
	token := ts.login()
	port := strconv.Itoa(ts.port)
	other := strconv.Itoa(ts.port + 1)
	for _, host := range []string{
		"evil.example:" + port, "evil.example", "127.0.0.1:" + other, "127.0.0.1", "localhost",
		"127.0.0.2:" + port, "0.0.0.0:" + port, "[::ffff:127.0.0.1]:" + port, "localhost.:" + port,
		"127.0.0.1:" + port + ".evil.example", "user@127.0.0.1:" + port,
	} {
		for _, c := range []call{
			{method: "GET", path: "/api/v1/health"},
			{method: "GET", path: "/api/v1/openapi.json"},
			{method: "GET", path: "/"},
			{method: "GET", path: "/api/v1/me", token: token},
			{method: "POST", path: "/api/v1/login", body: `{"passphrase":"` + testPassphrase + `"}`},
			{method: "GET", path: "/api/v1/nope"},
		} {
			c.host = host
			a := ts.do(c)
			a.expect(t, http.StatusForbidden, CodeForbidden)
			checkSecurityHeaders(t, a)
		}
	}
	// A login from a foreign Host must not have issued a token.
	if n := ts.s.tokens.count(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port, "LOCALHOST:" + port} {
		ts.do(call{method: "GET", path: "/api/v1/health", host: host}).expect(t, http.StatusOK, "")
	}
}

func TestForeignOriginForbidden(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{})
	token := ts.login()
	port := strconv.Itoa(ts.port)
	for _, origin := range []string{
		"http://evil.example", "null", "https://127.0.0.1:" + port, "http://127.0.0.1:" + strconv.Itoa(ts.port+1),
		"http://localhost:" + port, // not the origin the request's Host names
		"http://127.0.0.1:" + port + "/", "127.0.0.1:" + port,
	} {
		for _, c := range []call{
			{method: "GET", path: "/api/v1/health"},
			{method: "GET", path: "/api/v1/me", token: token},
			{method: "POST", path: "/api/v1/logout", token: token},
			{method: "POST", path: "/api/v1/send_message", token: token, body: `{"to":"bob","text":"hi"}`},
		} {
			c.header = map[string]string{"Origin": origin}
			ts.do(c).expect(t, http.StatusForbidden, CodeForbidden)
		}
	}
	// The own origin, and none at all, pass.
	ts.do(call{method: "GET", path: "/api/v1/me", token: token, header: map[string]string{"Origin": ts.base}}).expect(t, http.StatusOK, "")
	ts.do(call{method: "GET", path: "/api/v1/me", token: token, host: "localhost:" + port, header: map[string]string{"Origin": "http://localhost:" + port}}).expect(t, http.StatusOK, "")
	ts.do(call{method: "GET", path: "/api/v1/me", token: token}).expect(t, http.StatusOK, "")
	// A browser's Sec-Fetch-Site says cross-site or same-site even when
	// it sends no Origin (http.CrossOriginProtection); same-origin and
	// none (typed in the address bar) pass.
	for _, site := range []string{"cross-site", "same-site"} {
		ts.do(call{method: "POST", path: "/api/v1/logout", token: token, header: map[string]string{"Sec-Fetch-Site": site}}).expect(t, http.StatusForbidden, CodeForbidden)
	}
	ts.do(call{method: "GET", path: "/api/v1/me", token: token, header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": ts.base}}).expect(t, http.StatusOK, "")
	// The token survived all of the above.
	ts.do(call{method: "POST", path: "/api/v1/logout", token: token, header: map[string]string{"Origin": ts.base, "Sec-Fetch-Site": "same-origin"}}).expect(t, http.StatusNoContent, "")
}

func TestMethodNotAllowed(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{})
	token := ts.login()
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"GET", "/api/v1/send_message", "POST"},
		{"GET", "/api/v1/register", "POST"},
		{"GET", "/api/v1/login", "POST"},
		{"GET", "/api/v1/logout", "POST"},
		{"PUT", "/api/v1/read", "POST"},
		{"POST", "/api/v1/health", "GET"},
		{"POST", "/api/v1/get_messages", "GET"},
		{"DELETE", "/api/v1/me", "GET"},
		{"HEAD", "/api/v1/me", "GET"},
		{"OPTIONS", "/api/v1/friends", "GET, POST"},
		{"DELETE", "/api/v1/friends", "GET, POST"},
		{"PUT", "/api/v1/friends/bob", "DELETE"},
		{"GET", "/api/v1/friends/bob/verify", "POST"},
		{"POST", "/api/v1/events", "GET"},
		{"PATCH", "/", "GET, HEAD"},
		{"POST", "/index.html", "GET, HEAD"},
	} {
		a := ts.do(call{method: tc.method, path: tc.path, token: token})
		if tc.method == "HEAD" {
			if a.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("HEAD %s: %d", tc.path, a.StatusCode)
			}
		} else {
			a.expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
		}
		if got := a.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestUnknownAPIPath(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{})
	token := ts.login()
	for _, path := range []string{"/api", "/api/", "/api/v1", "/api/v1/", "/api/v1/nope", "/api/v2/health", "/api/v1/health/", "/api/v1//health", "/api/v1/../v1/health", "/api/v1/friends/bob/unknown", "/API/v1/health"} {
		a := ts.do(call{method: "GET", path: path, token: token})
		if path == "/API/v1/health" { // not under /api: the (absent) UI
			a.expect(t, http.StatusNotFound, CodeNotFound)
			continue
		}
		a.expect(t, http.StatusNotFound, CodeNotFound)
		if a.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", path, a.Header.Get("Cache-Control"))
		}
	}
}

func TestContentType(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Status: "accepted"}, {UserID: "carol", Status: "accepted"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	body := `{"to":"bob","text":"hi"}`
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1", "application/json; foo=bar", "application/jsonx", "text/json", "application/json, text/plain"} {
		ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: body, header: map[string]string{"Content-Type": ct}}).expect(t, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	}
	ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: body, noCT: true}).expect(t, http.StatusUnsupportedMediaType, CodeUnsupportedMedia)
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8"} {
		ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: body, header: map[string]string{"Content-Type": ct}}).expect(t, http.StatusAccepted, "")
	}

	// Mutating routes without a body take an empty one, with no
	// Content-Type or application/json; any other type is a 415, checked
	// before the body.
	for _, rt := range []struct{ method, path string }{
		{"POST", "/api/v1/friends/bob/verify"},
		{"POST", "/api/v1/friends/bob/block"},
		{"DELETE", "/api/v1/friends/bob"},
		{"POST", "/api/v1/logout"},
	} {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1", "text/json"} {
			a := ts.do(call{method: rt.method, path: rt.path, token: token, header: map[string]string{"Content-Type": ct}})
			if a.StatusCode != http.StatusUnsupportedMediaType || a.errCode() != CodeUnsupportedMedia {
				t.Errorf("%s %s with Content-Type %q: %d %s, want 415", rt.method, rt.path, ct, a.StatusCode, a.body)
			}
		}
		a := ts.do(call{method: rt.method, path: rt.path, token: token, body: "junk", header: map[string]string{"Content-Type": "text/plain"}})
		if a.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("%s %s with a text/plain body: %d %s, want 415", rt.method, rt.path, a.StatusCode, a.body)
		}
	}
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token, header: map[string]string{"Content-Type": "application/json"}}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/friends/bob/verify", token: token, body: `{"x":1}`}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "POST", path: "/api/v1/friends/carol/block", token: token, header: map[string]string{"Content-Type": "application/json"}}).expect(t, http.StatusOK, "")
	ts.do(call{method: "DELETE", path: "/api/v1/friends/bob", token: token}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "DELETE", path: "/api/v1/friends/carol", token: token, body: "junk", noCT: true}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "POST", path: "/api/v1/logout", token: token}).expect(t, http.StatusNoContent, "")
}

func TestStrictJSONBodies(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Status: "accepted"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	for _, body := range []string{
		`{"to":"bob","text":"hi","extra":true}`, // unknown field
		`{"to":"bob","text":"hi"} {}`,           // trailing data
		`{"to":"bob","text":"hi"}x`,
		`{"to":"bob","text":"hi"`, // truncated
		`[{"to":"bob","text":"hi"}]`,
		`null`,
		`"text"`,
		`{"to":"bob","text":5}`,
		`{"to":"bob","text":"hi",}`,
		` `, // no object at all
	} {
		a := ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: body})
		a.expect(t, http.StatusBadRequest, CodeBadRequest)
	}
	// Trailing whitespace is fine.
	ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: "{\"to\":\"bob\",\"text\":\"hi\"}\n\t "}).expect(t, http.StatusAccepted, "")
}

func TestBodyTooLarge(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Status: "accepted"}}
	ts := startServer(t, node, Options{})
	token := ts.login()
	// Just over 1 MiB with a Content-Length, and chunked with none.
	big := `{"to":"bob","text":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: big}).expect(t, http.StatusRequestEntityTooLarge, CodeTooLarge)

	// MultiReader hides the length, so the client sends chunks.
	req, err := http.NewRequest("POST", ts.base+"/api/v1/send_message", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversized body: %d", resp.StatusCode)
	}
	// Whitespace padding to exactly 1 MiB is still read.
	exact := `{"to":"bob","text":"hi"}`
	exact += strings.Repeat(" ", maxBodyBytes-len(exact))
	ts.do(call{method: "POST", path: "/api/v1/send_message", token: token, body: exact}).expect(t, http.StatusAccepted, "")
	// Other JSON routes have the same limit.
	ts.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":"` + strings.Repeat("x", maxBodyBytes) + `"}`}).expect(t, http.StatusRequestEntityTooLarge, CodeTooLarge)
}

// checkSecurityHeaders checks the headers every answer carries, and that
// no CORS header is among them.
func checkSecurityHeaders(t *testing.T, a answer) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	}
	for k, v := range want {
		if got := a.Header.Get(k); got != v {
			t.Errorf("%s %s: %s %q, want %q", a.Request.Method, a.Request.URL.Path, k, got, v)
		}
	}
	for k := range a.Header {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			t.Errorf("%s %s: CORS header %s", a.Request.Method, a.Request.URL.Path, k)
		}
	}
}

func TestSecurityHeadersAndNoCORS(t *testing.T) {
	node := newFakeNode(StateUnlocked)
	node.friends = []Friend{{UserID: "bob", Status: "accepted"}}
	ui := fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}, "assets/a.js": {Data: []byte("1")}}
	ts := startServer(t, node, Options{UI: ui})
	token := ts.login()
	preflight := map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
	ownPreflight := map[string]string{"Origin": ts.base, "Access-Control-Request-Method": "POST"}
	calls := []call{
		{method: "GET", path: "/api/v1/health"},
		{method: "GET", path: "/api/v1/openapi.json"},
		{method: "GET", path: "/api/v1/me", token: token},
		{method: "GET", path: "/api/v1/me"},
		{method: "POST", path: "/api/v1/send_message", token: token, body: `{"to":"bob","text":"hi"}`},
		{method: "POST", path: "/api/v1/send_message", token: token, body: `{}`, header: map[string]string{"Content-Type": "text/plain"}},
		{method: "GET", path: "/api/v1/nope"},
		{method: "GET", path: "/api/v1/send_message"},
		{method: "OPTIONS", path: "/api/v1/send_message", header: preflight},
		{method: "OPTIONS", path: "/api/v1/send_message", header: ownPreflight},
		{method: "OPTIONS", path: "/", header: ownPreflight},
		{method: "GET", path: "/api/v1/me", token: token, header: map[string]string{"Origin": "http://evil.example"}},
		{method: "GET", path: "/api/v1/health", host: "evil.example"},
		{method: "GET", path: "/"},
		{method: "GET", path: "/assets/a.js"},
		{method: "GET", path: "/assets/none.js"},
		{method: "GET", path: "/some/route"},
	}
	for _, c := range calls {
		a := ts.do(c)
		checkSecurityHeaders(t, a)
		if strings.HasPrefix(c.path, "/api/") && a.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", c.method, c.path, a.Header.Get("Cache-Control"))
		}
	}
	// A WebSocket answer carries none either.
	a := ts.do(call{method: "GET", path: "/api/v1/events", header: map[string]string{"Origin": "http://evil.example", "Connection": "Upgrade", "Upgrade": "websocket"}})
	a.expect(t, http.StatusForbidden, CodeForbidden)
	checkSecurityHeaders(t, a)
}

// TestRawRequests sends requests the Go client would not, over a plain
// TCP connection: no Host header, an absolute-form target naming another
// host, and an HTTP/1.0 request.
func TestRawRequests(t *testing.T) {
	ts := startServer(t, newFakeNode(StateUnlocked), Options{})
	port := strconv.Itoa(ts.port)
	for _, tc := range []struct {
		req    string
		status int
	}{
		{"GET /api/v1/health HTTP/1.0\r\n\r\n", 403},
		{"GET /api/v1/health HTTP/1.0\r\nHost: 127.0.0.1:" + port + "\r\n\r\n", 200},
		{"GET http://evil.example:" + port + "/api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\nConnection: close\r\n\r\n", 403},
		{"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 400},
	} {
		conn, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, tc.req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%q: status %d, want %d", tc.req, resp.StatusCode, tc.status)
		}
	}
}

func TestUnquoteBytes(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`"abc"`, "abc", true},
		{`""`, "", true},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t", true},
		{`"\u00e9\u20AC"`, "é€", true},
		{`"\ud83d\ude00"`, "😀", true},
		{`"é"`, "é", true},
		{`"\ud83d"`, "", false},
		{`"\ude00"`, "", false},
		{`"\ud83d\u0041"`, "", false},
		{`"\u12"`, "", false},
		{`"\x"`, "", false},
		{`"a\"`, "", false},
		{"\"\xff\"", "", false},
		{"\"a\nb\"", "", false},
		{`abc`, "", false},
		{`"`, "", false},
		{`5`, "", false},
		{`null`, "", false},
	} {
		got, err := unquoteBytes([]byte(tc.in))
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("unquoteBytes(%s) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, -time.Second: 1, time.Nanosecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Hour: 3600} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestOptionsStar(t *testing.T) {
	ts := startServer(t, newFakeNode(StateNew), Options{})
	for host, status := range map[string]int{"evil.example": 403, "127.0.0.1:" + strconv.Itoa(ts.port): 405} {
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ts.port))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "OPTIONS * HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != status {
			t.Errorf("OPTIONS * with Host %s: %d, want %d", host, resp.StatusCode, status)
		}
	}
}
