package web

import (
	"io/fs"
	"testing"
)

// TestUI checks what UI returns: nil in a noassets build or before the
// first npm build, else a tree with index.html at its root and the hashed
// assets beside it.
func TestUI(t *testing.T) {
	ui := UI()
	if ui == nil {
		t.Skip("no web UI embedded (noassets build, or web/dist not built)")
	}
	index, err := fs.ReadFile(ui, "index.html")
	if err != nil {
		t.Fatalf("index.html: %v", err)
	}
	if len(index) == 0 {
		t.Fatal("index.html is empty")
	}
	assets, err := fs.ReadDir(ui, "assets")
	if err != nil || len(assets) == 0 {
		t.Fatalf("assets/: %v entries, err %v", len(assets), err)
	}
}
