package api

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Cache policies of the web UI's files.
const (
	// cacheImmutable is for assets/, whose names carry a content hash.
	cacheImmutable = "public, max-age=31536000, immutable"
	// cacheRevalidate is for index.html and other unhashed files.
	cacheRevalidate = "no-cache"
)

// serveUI serves the web UI for paths outside /api: the file at the path,
// or index.html for a path without a file (a client-side route of the
// single-page app). A missing file under assets/ is 404, not index.html.
// Without a UI every path answers 404.
func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.writeError(w, r, apiError(CodeMethodNotAllowed, "method %s not allowed here", r.Method))
		return
	}
	if s.ui == nil {
		s.writeError(w, r, apiError(CodeNotFound, "web UI not built"))
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	if s.serveFile(w, r, name) {
		return
	}
	if name == "assets" || strings.HasPrefix(name, "assets/") || !s.serveFile(w, r, "index.html") {
		s.writeError(w, r, apiError(CodeNotFound, "no such file"))
	}
}

// serveFile serves the regular file name of the UI and reports whether
// there was one.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, name string) bool {
	if !fs.ValidPath(name) {
		return false
	}
	f, err := s.ui.Open(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("api: opening a UI file", "name", name, "err", err)
		}
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	content, ok := f.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(f)
		if err != nil {
			s.log.Warn("api: reading a UI file", "name", name, "err", err)
			return false
		}
		content = bytes.NewReader(b)
	}
	if strings.HasPrefix(name, "assets/") {
		w.Header().Set("Cache-Control", cacheImmutable)
	} else {
		w.Header().Set("Cache-Control", cacheRevalidate)
	}
	// Embedded files have no modification time; ServeContent then sends
	// no Last-Modified.
	modTime := fi.ModTime()
	if modTime.Equal(time.Unix(0, 0)) {
		modTime = time.Time{}
	}
	http.ServeContent(w, r, path.Base(name), modTime, content)
	return true
}
