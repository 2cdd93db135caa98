//go:build noassets

package web

import "testing"

func TestUINoAssets(t *testing.T) {
	if UI() != nil {
		t.Fatal("a noassets build embeds a UI")
	}
}
