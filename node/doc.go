// Package node assembles and runs a Parley node: the encrypted store, the
// libp2p host (its Ed25519 key, kept in the store, is the device identity),
// the messaging service on /parley/msg/1.0.0, delivery (package
// node/outbox), friends, receipts, prekey rotation and the in-process
// event stream. It holds the use cases the local API calls (register,
// unlock, send, history, friends, read receipts, connect); it holds no
// HTTP handlers, badger keys or wire encoding, which belong to api, store
// and protocol.
//
// A node moves through three states: new (no identity in its data
// directory), locked (an identity on disk, the passphrase not given: the
// host is not running) and unlocked. Register and Unlock start the
// unlocked part (type session: the open store, the host and the
// background workers); Close ends it. A running node holds an exclusive
// lock on its data directory (node.lock), so a second process on it
// fails at New with ErrInUse.
//
// # Parts and data flow
//
//	API ──Send──> seal (friend's lock) ──queue write──> store commit queue
//	                                                      │ one txn, one sync
//	                                                      ▼ for all waiting
//	     Send returns 202 <── durable ──  outbox.Notify ──> courier(recipient)
//	                                                      │ reads the store's
//	                                                      ▼ queue in order
//	                                   stream /parley/msg/1.0.0 ──> receiver
//	receiver: readLoop ─> workers open in parallel ─> commitLoop stores in
//	          stream order (a burst of one sender in one transaction) ─> ack
//	courier:  acks read together are settled in one write (delivered)
//
// Writes that must be ordered are ordered by the store's commit queue,
// not retried against each other: a message is queued for writing under
// its friend's session lock, so writes are in seal order, and the courier
// reads only what has been committed.
//
// # Locks
//
// Each part has one lock of its own; where two are held, they are taken
// in this order, never the reverse:
//
//	Node.loginMu  >  Node.mu
//	peerSess.mu (one friend's sessions)  >  session.mu (caches)
//	session.friendMu  >  peerSess.mu
//	outbox.Outbox.mu  >  outbox link.mu
//
// session.mu guards short map reads and writes only; nothing blocks while
// holding it. The store and the outbox take no lock of this package.
//
// It imports store and protocol (and directory), never api or web; only
// cmd/parley wires a node to the API. Multi-node tests live here.
package node
