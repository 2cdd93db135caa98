// Command openapigen writes api/openapi.json, the OpenAPI 3.1 document of
// the local API, from the Go types and the route table of package api:
// paths, methods, parameters and auth from api.Routes, schemas reflected
// from the types with github.com/invopop/jsonschema. `make api` runs it
// (and then openapi-typescript on its output for the web UI); its test
// fails when the committed document is not what it generates.
//
//	go run ./api/internal/openapigen -o api/openapi.json
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/parley-chat/parley/api"
)

func main() {
	out := flag.String("o", "api/openapi.json", "file to write")
	flag.Parse()
	doc, err := Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}

// description is the document's info.description.
const description = "The local HTTP API of a Parley node, served on 127.0.0.1 (port 7733 by default) together with the web UI. " +
	"Generated from the Go types of package api by make api: do not edit.\n\n" +
	"Every request must carry the server's own Host (127.0.0.1:PORT, localhost:PORT or [::1]:PORT), else 403; " +
	"a request with an Origin header must carry the API's own origin, and a browser's cross-site request " +
	"(Sec-Fetch-Site) with an unsafe method is refused, else 403. Mutating routes take only their method " +
	"(405 with Allow otherwise) and only JSON: with a body, Content-Type application/json, at most 1 MiB, " +
	"no unknown fields; without one, no Content-Type or application/json. Any other Content-Type is 415. " +
	"Errors are {\"error\": {\"code\", \"message\"}} with the HTTP status of the code (Code). No CORS.\n\n" +
	"The events WebSocket (GET /api/v1/events) sends {\"type\":\"ready\"} after auth, then Event messages."

// enums are the named string types shown as their own schemas, with
// their values.
var enums = map[reflect.Type][]any{
	reflect.TypeFor[api.State]():     anys(api.States()),
	reflect.TypeFor[api.EventType](): anys(api.EventTypes()),
	reflect.TypeFor[api.Code]():      anys(api.Codes()),
}

func anys[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// generator collects the component schemas while it reflects types.
type generator struct {
	r       *jsonschema.Reflector
	schemas map[string]*jsonschema.Schema
}

// newGenerator returns a generator whose schemas carry the doc comments of
// package api's types and fields as descriptions; it reads them from
// ./api, so it runs at the module's root.
func newGenerator() (*generator, error) {
	g := &generator{schemas: map[string]*jsonschema.Schema{}}
	g.r = &jsonschema.Reflector{
		Anonymous: true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == reflect.TypeFor[api.Secret]() {
				return &jsonschema.Schema{Type: "string", WriteOnly: true}
			}
			if vals, ok := enums[t]; ok {
				g.schemas[t.Name()] = &jsonschema.Schema{Type: "string", Enum: vals}
				return &jsonschema.Schema{Ref: "#/$defs/" + t.Name()}
			}
			return nil
		},
	}
	if err := g.r.AddGoComments("github.com/parley-chat/parley", "./api"); err != nil {
		return nil, fmt.Errorf("reading the doc comments of ./api (run at the module root): %w", err)
	}
	return g, nil
}

// schema reflects v's type and returns its schema, a $ref for a named
// struct, adding the definitions it needs to the components.
func (g *generator) schema(v any) *jsonschema.Schema {
	if m := g.r.Mapper(reflect.TypeOf(v)); m != nil {
		return m
	}
	s := g.r.Reflect(v)
	for name, def := range s.Definitions {
		g.schemas[name] = def
	}
	s.Definitions = nil
	s.Version = ""
	return s
}

// Generate returns the document, indented, with a final newline. It runs
// at the module's root.
func Generate() ([]byte, error) {
	g, err := newGenerator()
	if err != nil {
		return nil, err
	}
	paths := map[string]map[string]any{}
	for _, rt := range api.Routes() {
		op, err := g.operation(rt)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", rt.Method, rt.Pattern, err)
		}
		if paths[rt.Pattern] == nil {
			paths[rt.Pattern] = map[string]any{}
		}
		paths[rt.Pattern][strings.ToLower(rt.Method)] = op
	}
	// The data of the events, which no route answers directly.
	for _, v := range []any{api.Message{}, api.StatusChange{}, api.MessageDeleted{}, api.Friend{}, api.Presence{}, api.ErrorResponse{}} {
		g.schema(v)
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Parley local API",
			"version":     "1.0.0",
			"description": description,
		},
		"servers":  []any{map[string]any{"url": "http://" + api.DefaultAddr}},
		"security": []any{map[string]any{"bearerAuth": []any{}}},
		"paths":    paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearerAuth": map[string]any{"type": "http", "scheme": "bearer", "description": "The token of register or login."},
			},
			"responses": map[string]any{
				"Error": map[string]any{
					"description": "An error: the code says which (Code), the status is the code's.",
					"content":     jsonContent(&jsonschema.Schema{Ref: "#/$defs/ErrorResponse"}),
				},
			},
			"schemas": g.schemas,
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	// invopop names definitions under $defs; OpenAPI keeps them in
	// components.
	b = bytes.ReplaceAll(b, []byte(`"#/$defs/`), []byte(`"#/components/schemas/`))
	return append(b, '\n'), nil
}

// operation is one route's operation object.
func (g *generator) operation(rt api.RouteDoc) (map[string]any, error) {
	op := map[string]any{"operationId": rt.OperationID, "summary": rt.Summary}
	switch rt.Auth {
	case "none":
		op["security"] = []any{}
	case "socket":
		op["security"] = []any{map[string]any{"bearerAuth": []any{}}, map[string]any{}}
	}
	var params []any
	for _, seg := range strings.Split(rt.Pattern, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			params = append(params, map[string]any{
				"name": strings.TrimSuffix(name, "}"), "in": "path", "required": true,
				"schema": map[string]any{"type": "string"},
			})
		}
	}
	if rt.Query != nil {
		t := reflect.TypeOf(rt.Query)
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("query")
			if name == "" {
				return nil, fmt.Errorf("query field %s has no query tag", f.Name)
			}
			typ := "string"
			if f.Type.Kind() == reflect.Int {
				typ = "integer"
			}
			p := map[string]any{
				"name": name, "in": "query", "required": f.Tag.Get("required") == "true",
				"schema": map[string]any{"type": typ},
			}
			if d := g.r.CommentMap[t.PkgPath()+"."+t.Name()+"."+f.Name]; d != "" {
				p["description"] = d
			}
			params = append(params, p)
		}
	}
	if params != nil {
		op["parameters"] = params
	}
	if rt.Body != nil {
		op["requestBody"] = map[string]any{"required": !rt.BodyOptional, "content": jsonContent(g.schema(rt.Body))}
	}
	resp := map[string]any{"description": http.StatusText(rt.Status)}
	if rt.Answer != nil {
		if _, ok := rt.Answer.(api.Binary); ok {
			resp["content"] = map[string]any{"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
		} else if reflect.TypeOf(rt.Answer).Kind() == reflect.Map {
			resp["content"] = jsonContent(&jsonschema.Schema{Type: "object"})
		} else {
			resp["content"] = jsonContent(g.schema(rt.Answer))
		}
	}
	if rt.Status == http.StatusSwitchingProtocols {
		resp["description"] = "The WebSocket: each message is an Event, or {\"type\":\"ready\"} after auth."
	}
	op["responses"] = map[string]any{
		strconv.Itoa(rt.Status): resp,
		"default":               map[string]any{"$ref": "#/components/responses/Error"},
	}
	return op, nil
}

func jsonContent(s *jsonschema.Schema) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": s}}
}
