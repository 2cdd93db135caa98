package main

import (
	"bytes"
	"os"
	"testing"
)

// TestDocumentIsCurrent fails when api/openapi.json is not what the Go
// types and the route table generate: run make api.
func TestDocumentIsCurrent(t *testing.T) {
	t.Chdir("../../..")
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("api/openapi.json is stale: run make api")
	}
	again, err := Generate()
	if err != nil || !bytes.Equal(again, want) {
		t.Errorf("two runs differ (err %v)", err)
	}
}
