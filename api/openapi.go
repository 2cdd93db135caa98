package api

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPIDocument is the OpenAPI 3.1 description of the API, generated
// from the Go types and the route table by make api
// (api/internal/openapigen, whose test fails when it is stale). A test
// here checks that its paths and methods are exactly the route table's.
//
//go:embed openapi.json
var openAPIDocument []byte

func (s *Server) openAPI(q *request) error {
	q.w.Header().Set("Content-Type", "application/json")
	q.w.Header().Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	q.w.WriteHeader(http.StatusOK)
	q.w.Write(openAPIDocument)
	return nil
}
