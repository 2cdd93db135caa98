package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes holds the generated OpenAPI document and the
// route table together: the same (path, method) pairs, the same public
// routes, and every $ref resolving.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI  string                                `json:"openapi"`
		Security []map[string][]string                 `json:"security"`
		Paths    map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearerAuth"] == nil {
		t.Errorf("document security %v, want bearerAuth", doc.Security)
	}
	s, err := New(newFakeNode(StateNew), Options{})
	if err != nil {
		t.Fatal(err)
	}

	var documented, served []string
	opSecurity := map[string]*[]map[string][]string{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			key := strings.ToUpper(method) + " " + path
			documented = append(documented, key)
			var op struct {
				Security    *[]map[string][]string `json:"security"`
				OperationID string                 `json:"operationId"`
				Responses   map[string]any         `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if op.OperationID == "" || len(op.Responses) == 0 {
				t.Errorf("%s: no operationId or responses", key)
			}
			opSecurity[key] = op.Security
		}
	}
	for _, rt := range s.routes {
		key := rt.method + " " + rt.pattern
		served = append(served, key)
		sec, ok := opSecurity[key]
		if !ok {
			continue
		}
		switch rt.auth {
		case authBearer:
			if sec != nil {
				t.Errorf("%s needs a token but the document overrides its security with %v", key, *sec)
			}
		case authNone:
			if sec == nil || len(*sec) != 0 {
				t.Errorf("%s is public but the document does not say security: []", key)
			}
		case authSocket:
			if sec == nil || len(*sec) != 2 {
				t.Errorf("%s: the document should list bearer and no-header auth", key)
			}
		}
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("OpenAPI operations and routes differ:\ndocumented: %v\nserved:     %v", documented, served)
	}

	// Every $ref points at a component that exists.
	var whole map[string]any
	if err := json.Unmarshal(openAPIDocument, &whole); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if ref, ok := x.(string); ok && k == "$ref" {
					if !resolves(whole, ref) {
						t.Errorf("$ref %q does not resolve", ref)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(whole)
}

// resolves reports whether a local JSON pointer ref names a value in doc.
func resolves(doc map[string]any, ref string) bool {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = doc
	for part := range strings.SplitSeq(p, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

func TestOpenAPIServed(t *testing.T) {
	ts := startServer(t, newFakeNode(StateLocked), Options{})
	a := ts.do(call{method: "GET", path: "/api/v1/openapi.json"})
	a.expect(t, http.StatusOK, "")
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if !bytes.Equal(a.body, openAPIDocument) {
		t.Error("served document differs from the embedded one")
	}
	checkSecurityHeaders(t, a)
}
