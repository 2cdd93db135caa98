// Package api serves Parley's local HTTP API: JSON endpoints under
// /api/v1 (register, login, friends, send_message, get_messages and the
// rest in their style), a WebSocket of live events, and the embedded web
// UI. It listens on 127.0.0.1 (DefaultAddr, port 7733) unless given TLS.
//
// The package owns the HTTP side of a node and nothing else:
//
//   - routing, on http.ServeMux patterns ("POST /api/v1/send_message"),
//     with JSON errors {"error": {"code", "message"}} for every failure,
//     404 and 405 included (see Code and Error);
//   - bearer tokens: 256 random bits issued by register and login, kept
//     only as SHA-256 hashes, ended by logout or 12 hours without use;
//   - the defences of a local web server: an exact Host check against DNS
//     rebinding, before anything else; http.CrossOriginProtection
//     (Sec-Fetch-Site) and an exact Origin check against CSRF; no CORS;
//     security headers; strict JSON bodies (application/json, at most
//     1 MiB, no unknown fields, valid UTF-8), and no other
//     Content-Type on the mutating routes without a body; refusing a
//     non-loopback listener without TLS (ErrNotLoopback);
//   - the events WebSocket at /api/v1/events (below);
//   - the contract, defined once in Go: the request and answer types
//     (types.go, node.go) and the route table (routes.go); make api
//     generates from them the OpenAPI 3.1 document (api/openapi.json,
//     served at /api/v1/openapi.json; api/internal/openapigen) and the web
//     UI's TypeScript types, and a test fails when either is stale;
//   - api/client, the same capabilities over HTTP, and api/conformance,
//     the suite both implementations pass.
//
// The events WebSocket never takes the token in its URL. The upgrade must
// carry the API's own Origin. A client authenticates either with an
// "Authorization: Bearer <token>" header on the upgrade (a wrong token is
// answered 401 before upgrading), or, as browsers must, with a first text
// message {"type":"auth","token":"<token>"} within 10 seconds. The server
// then sends {"type":"ready"} and each event as {"type","data"} (Event).
// It closes the socket with 4401 (CloseUnauthorized) for missing, bad or
// late auth and when the token is logged out or expires, with 1001 on
// shutdown, and with 1008 when the client sends anything after auth.
//
// It declares what it needs from a node as small interfaces by capability
// (Lifecycle, Auth, Account, Peers, Friends, Messages, Directory, Events;
// Node is their union), and never imports node, store, directory, libp2p
// or badger; cmd/parley adapts the real node to Node, and api/client
// implements the same capabilities over HTTP. Tests use httptest-style real listeners
// on 127.0.0.1 and a small fake of the interface.
package api
