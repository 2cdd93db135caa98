package api

import (
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
)

func TestNoUI(t *testing.T) {
	ts := startServer(t, newFakeNode(StateNew), Options{})
	for _, path := range []string{"/", "/index.html", "/chat/bob"} {
		a := ts.do(call{method: "GET", path: path})
		a.expect(t, http.StatusNotFound, CodeNotFound)
		if !strings.Contains(string(a.body), "web UI not built") {
			t.Errorf("%s: %s", path, a.body)
		}
	}
}

func TestStaticUI(t *testing.T) {
	ui := fstest.MapFS{
		"index.html":          {Data: []byte("<!doctype html><title>Parley</title>")},
		"favicon.svg":         {Data: []byte("<svg/>")},
		"assets/app-1a2b.js":  {Data: []byte("console.log(1)")},
		"assets/app-1a2b.css": {Data: []byte("body{}")},
		"assets/sub/x.txt":    {Data: []byte("x")},
	}
	ts := startServer(t, newFakeNode(StateNew), Options{UI: ui})
	for _, tc := range []struct {
		path, body, ctype, cache string
	}{
		{"/", "<!doctype html><title>Parley</title>", "text/html; charset=utf-8", "no-cache"},
		{"/index.html", "<!doctype html><title>Parley</title>", "text/html; charset=utf-8", "no-cache"},
		{"/chat/bob", "<!doctype html><title>Parley</title>", "text/html; charset=utf-8", "no-cache"},
		{"/settings", "<!doctype html><title>Parley</title>", "text/html; charset=utf-8", "no-cache"},
		{"/favicon.svg", "<svg/>", "image/svg+xml", "no-cache"},
		{"/assets/app-1a2b.js", "console.log(1)", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"},
		{"/assets/app-1a2b.css", "body{}", "text/css; charset=utf-8", "public, max-age=31536000, immutable"},
		{"/assets/sub/x.txt", "x", "text/plain; charset=utf-8", "public, max-age=31536000, immutable"},
		{"/x/../assets/app-1a2b.js", "console.log(1)", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"},
	} {
		a := ts.do(call{method: "GET", path: tc.path})
		a.expect(t, http.StatusOK, "")
		if string(a.body) != tc.body {
			t.Errorf("%s: body %q", tc.path, a.body)
		}
		if got := a.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := a.Header.Get("Cache-Control"); got != tc.cache {
			t.Errorf("%s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
		checkSecurityHeaders(t, a)
	}
	// A missing hashed asset is 404, not the app.
	for _, path := range []string{"/assets/gone.js", "/assets/", "/assets", "/assets/sub"} {
		a := ts.do(call{method: "GET", path: path})
		a.expect(t, http.StatusNotFound, CodeNotFound)
		if a.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", path, a.Header.Get("Cache-Control"))
		}
	}
	// The API is never the SPA fallback.
	ts.do(call{method: "GET", path: "/api/v1/whatever"}).expect(t, http.StatusNotFound, CodeNotFound)
	// HEAD works; other methods do not.
	a := ts.do(call{method: "HEAD", path: "/"})
	if a.StatusCode != http.StatusOK || len(a.body) != 0 {
		t.Errorf("HEAD /: %d %q", a.StatusCode, a.body)
	}
	ts.do(call{method: "POST", path: "/chat/bob", body: "{}"}).expect(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed)

	// Without index.html, an unknown path is 404.
	bare := startServer(t, newFakeNode(StateNew), Options{UI: fstest.MapFS{"assets/a.js": {Data: []byte("1")}}})
	bare.do(call{method: "GET", path: "/"}).expect(t, http.StatusNotFound, CodeNotFound)
	bare.do(call{method: "GET", path: "/assets/a.js"}).expect(t, http.StatusOK, "")
}
