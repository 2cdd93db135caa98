// Package api will serve Parley's local HTTP API on 127.0.0.1 (port 7733
// by default): JSON endpoints under /api/v1 (register, login, friends,
// send_message, get_messages and the rest in their style), a WebSocket of
// live events, bearer-token auth, Host and Origin checks against DNS
// rebinding and CSRF, JSON errors of the form {"error": {"code",
// "message"}}, and serving the embedded web UI.
//
// It will declare the node methods it needs as its own interface and never
// import node, store, directory, libp2p or badger; it is tested with
// httptest and a small fake of that interface.
//
// Not built yet: this package is an empty placeholder.
package api
