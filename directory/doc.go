// Package directory will implement Parley's DHT directory: signed user
// records under /parley-user/<user-id> (RSA public key, display name, device
// peer IDs, relay addresses, signed X25519 prekey, sequence number,
// issued-at and expiry), the record validator (the key must hash to the
// user ID, the signature must verify, Select keeps the highest sequence),
// publishing and republishing, lookup, the name index built from provider
// records on a hash of the normalised name, key pinning (trust on first
// use) and key rotation signed by the old key.
//
// It will take libp2p's routing interfaces rather than a concrete DHT, and
// imports no project package other than protocol.
//
// Not built yet: this package is an empty placeholder.
package directory
