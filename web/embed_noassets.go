//go:build noassets

package web

import "io/fs"

// UI returns nil in a noassets build: no web UI is embedded, and the API
// answers 404 "web UI not built" outside /api.
func UI() fs.FS { return nil }
