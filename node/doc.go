// Package node will assemble a running Parley node: the libp2p host (its
// Ed25519 key is the device identity), the private kad-DHT, gossipsub, the
// encrypted store, the message, mailbox and group services, configuration
// and lifecycle. It will hold the use cases the local API calls (send,
// history, friends, groups, lookup, events); it will not hold HTTP
// handlers, badger keys or wire encoding, which belong to api, store and
// protocol. Multi-node integration tests will live beside it.
//
// It imports directory, store and protocol, never api or web; only
// cmd/parley wires a node to the API.
//
// Not built yet: this package is an empty placeholder.
package node
