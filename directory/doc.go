// Package directory implements the signed data of Parley's DHT directory:
// user records stored under /parley-user/<user-id>, their validator, and
// the name index's content IDs. Publishing, lookup and pinning are built on
// top of it by the node.
//
// # User records
//
// A Record is {version, user ID, display name, current RSA key, genesis key
// and rotation chain (after a rotation), devices, relay multiaddrs, current
// signed prekey, sequence number, issued-at, expires-at}, signed by the
// current key under the label "parley/v1/dir" over a canonical encoding
// (see Record). On the wire and in the DHT it is the protobuf message
// parley.v1.UserRecord (protocol/pb/record.proto); a parser accepts only
// the canonical encoding. Each device is a libp2p peer ID with an inlined
// Ed25519 key that signed "parley/v1/device" ‖ user ID (SignDevice).
//
// Validator (install it with dht.NamespacedValidator(Namespace, v))
// accepts a record only if: it is at most 16 KiB; it parses and re-encodes
// to the same bytes; the DHT key names its user ID; the user ID is the hash
// of the genesis key and every rotation link verifies (protocol.VerifyChain)
// up to the current key; RSA sizes are within 2048–8192; it is not expired,
// not issued more than 5 minutes in the future and lives at most 7 days;
// the record, prekey and device signatures verify. Select keeps the valid
// record with the highest sequence number; ties go to the later issue time,
// then to the lexicographically smallest encoding.
//
// # Names
//
// A node claims its display name by providing NameCID(name): CIDv1 (raw)
// of SHA-256("parley-name:" ‖ NormalizeName(name)). Provider records prove
// nothing; every claim must be checked against the claimant's record.
//
// The package is pure: no network, no disk, no logging, no global state.
// It imports no project package other than protocol.
package directory
