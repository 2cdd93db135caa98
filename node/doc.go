// Package node assembles and runs a Parley node: the encrypted store, the
// libp2p host (its Ed25519 key, kept in the store, is the device identity),
// the messaging service on /parley/msg/1.0.0, delivery (package
// node/outbox), friends, receipts, prekey rotation and the in-process
// event stream, removal notices (removal.go) and short invites
// (invite.go). It holds the use cases the local API calls (register,
// unlock, send, retry, delete, history, friends, read receipts, connect,
// invites); it holds no
// HTTP handlers, badger keys or wire encoding, which belong to api, store
// and protocol.
//
// # Lifecycle
//
// A node's State is one value, changed only under Node.mu:
//
//	new ──Register──> unlocked ──Close / a part fails──> closing ──> closed
//	locked ──Unlock──┘     (a failed start goes back to locked)
//
// new: no identity in the data directory; locked: an identity on disk,
// the host not running; unlocked: the store is open and the parts run
// (type unlocked); closing and closed: after Close, or after a part
// failed (Node.Done, Node.Err). A running node holds an exclusive lock on
// its data directory (node.lock), so a second process on it fails at New
// with ErrInUse.
//
// # Parts
//
// The unlocked node is made of parts, each owning its state and its one
// lock, each given what it uses (store, host, config, logger, other parts
// or functions of them) and none pointing back to the node. Their serve
// methods run under one errgroup; the first to fail stops the node.
//
//	keyring     keys: identity, rotations, prekeys, own card (serve: prekey rotation)
//	friendBook  friends, pinning, contact requests     (serve: record rechecks)
//	messenger   msgProtocol handler and client side, ratchet sessions, receipts
//	outbox      delivery: one ordered queue per recipient (package node/outbox)
//	presence    who is online, dialling friends, reachability
//	publisher   own directory record and name claim in the DHT
//	groups      group states, sender keys, one gossipsub topic per group and
//	            epoch, catch-up on /parley/group-sync/1.0.0 (group_sync.go), and
//	            relays' on /parley/group-relay-sync/1.0.0 (group_relay_sync.go); states
//	            and sender keys go to members in 1:1 envelopes through the
//	            outbox, a new epoch's as a stored job worked off in batches
//	            (group_node.go, group_handout.go, group_roster.go); relay
//	            tickets to the group's relays (group_relays.go; the relay side
//	            is package node/grouprelay)
//	inviter     short invites: serves the own card on /parley/card/1.0.0, fetches friends' (invite.go)
//	reserver    a slot on each relay from the start; circuit addresses for the card (reservations.go)
//	puncher     retries hole punches libp2p's single attempt missed (punch.go)
//	mailboxes   relays' mailboxes: subscribe and store (delivery receipts), deposit for the outbox
//	bus         events to the API (Node-wide; no goroutine)
//
// "Session" means a double-ratchet session with a friend (messenger's
// peerSess); the running node is "unlocked", and the API's token is a
// login (package api).
//
// # Data flow
//
//	API ──Send──> messenger seals (friend's peerSess lock) ──queue write──> store commit queue
//	                                                             │ one txn, one sync
//	                                                             ▼ for all waiting
//	     Send returns <── durable ──  outbox.Notify ──> courier(recipient)
//	                                                             │ reads the store's
//	                                                             ▼ queue in order
//	                                          stream /parley/msg/1.0.0 ──> receiver
//	receiver: readLoop ─> workers open in parallel ─> commitLoop stores in
//	          stream order (a burst of one sender in one transaction) ─> ack
//	courier:  acks read together are settled in one write (delivered)
//	courier:  Open fails ─> deposit what is queued, in order, a window per
//	          pipeline (one stream), at the friend's mailbox relay ─> the
//	          held prefix settled sent, path mailbox (node/outbox doc)
//	mailboxes: relay pushes ─> open, commit (as one frame of a stream) ─> ack
//	          to the relay ─> KindDelivered receipt ─> the sender marks delivered
//
// Writes that must be ordered are ordered by the store's commit queue,
// not retried against each other: a message is queued for writing under
// its friend's session lock, in the turn it took with its timestamp, so
// writes are in timestamp order (RSA signatures, a single envelope's or
// a strict-mode session message's, are made outside the lock, between
// taking the turn and queuing the write: peerSess), and the courier
// reads only what has been committed.
//
// # Locks
//
// Each part's mu is held only for short reads and writes of that part's
// fields: nothing blocks while holding it, and no other part is called.
// Three locks serialise work and are held across store writes:
// keyring.rotateMu (a rotation), friendBook.changeMu (a change to a friend
// record) and peerSess.mu (sealing and opening in one friend's sessions).
// Where two locks are held, they are taken in this order, never the
// reverse:
//
//	Node.loginMu  >  Node.mu
//	keyring.rotateMu  >  keyring.mu
//	friendBook.changeMu  >  peerSess.mu (one friend's sessions)  >  messenger.mu, friendBook.mu, keyring.mu
//	outbox.Outbox.mu  >  outbox link.mu
//	groups: one group's lock (lockGroup)  >  groups.mu
//	(a group control opened under peerSess.mu goes to the groups part in
//	its own goroutine, after the session lock is released)
//
// The store and the outbox take no lock of this package.
//
// It imports store and protocol (and directory), never api or web; only
// cmd/parley wires a node to the API. Multi-node tests live here.
package node
