//go:build !noassets

package web

import (
	"embed"
	"io/fs"
)

// dist is the Vite build output (npm run build). A fresh clone holds only
// dist/.keep, so that this compiles before the first UI build.
//
//go:embed all:dist
var dist embed.FS

// UI returns the built web UI (index.html and assets/) for api.Options.UI,
// or nil when web/dist holds no build (then the API answers 404 "web UI
// not built" outside /api).
func UI() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil
	}
	if _, err := fs.Stat(sub, "index.html"); err != nil {
		return nil
	}
	return sub
}
