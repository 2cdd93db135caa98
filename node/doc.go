// Package node assembles and runs a Parley node: the encrypted store, the
// libp2p host (its Ed25519 key, kept in the store, is the device identity),
// the messaging service on /parley/msg/1.0.0, the outbox delivery worker,
// friends, receipts, prekey rotation and the in-process event stream. It
// holds the use cases the local API calls (register, unlock, send, history,
// friends, read receipts, connect); it holds no HTTP handlers, badger keys
// or wire encoding, which belong to api, store and protocol.
//
// A node moves through three states: new (no identity in its data
// directory), locked (an identity on disk, the passphrase not given: the
// host is not running) and unlocked. Register and Unlock start a session:
// the open store, the host and the background workers; Close ends it.
//
// It imports store and protocol (and directory later), never api or web;
// only cmd/parley wires a node to the API. Multi-node tests live here.
package node
