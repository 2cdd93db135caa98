// Package store is a Parley node's local state: one badger v4 database per
// data directory, encrypted at rest, plus a small clear-text metadata file.
// It owns the keystore (the user's RSA identity key, X25519 prekeys, the
// libp2p host key as opaque bytes), friends, conversations, messages, the
// outbox, the persistent replay cache (seen envelope IDs) and groups
// (states, sender keys, messages). It knows nothing of libp2p; among
// project packages it imports only protocol.
//
// # Files
//
//	<dir>/parley.json  clear-text metadata: format version, Argon2id
//	                   parameters and salt, passphrase verifier, user ID
//	                   and public key (see ReadInfo). Written atomically
//	                   (temp file, fsync, rename, fsync of the directory).
//	<dir>/db/          the badger database (badger's AES-256 encryption).
//
// # Key derivation
//
// The passphrase and a random 16-byte salt go through Argon2id (by default
// t=3, m=64 MiB, p=4; the parameters actually used are in parley.json) to a
// 32-byte master key. HKDF-SHA256 (no salt) expands the master key into four
// independent 32-byte keys, one per info label:
//
//	"parley/v1/store-badger"   badger's encryption key
//	"parley/v1/store-rows"     AES-256-GCM key that seals ordinary rows
//	"parley/v1/store-secrets"  AES-256-GCM key that seals the identity key,
//	                           prekeys and the host key
//	"parley/v1/store-check"    HMAC-SHA256 key of the passphrase verifier
//
// The verifier is HMAC-SHA256(check key, "parley/v1/store-check/verifier").
// Open compares it (in constant time) before it touches the database, so a
// wrong passphrase fails with ErrBadPassphrase and changes nothing on disk.
// After unlocking, Open checks that the sealed identity in the database is
// the key named by parley.json (the genesis key, which never changes), or
// the end of the stored rotation chain that starts from it, else
// ErrTampered.
//
// # Sealed rows
//
// badger encrypts with AES-CTR, which has no integrity. So every row except
// the seen-ID markers is also sealed: value = 0x01 ‖ nonce(12) ‖
// AES-256-GCM(key, nonce, plaintext, associated data = the row's badger
// key). A flipped byte, a value copied under another key, or a row moved to
// another key fails to open and is reported as ErrTampered (as a *RowError
// naming the row kind); it is never served. Rolling a row back to an older
// sealed value of the same key, or deleting a row, is not detected.
// Plaintexts are JSON (unexported record types, so the on-disk format does
// not follow the exported structs by accident), except the identity row
// (user ID ‖ PKCS #8 DER) and the host key row (the opaque bytes).
//
// # Key layout
//
// Keys are a one-byte kind prefix followed by fixed-width binary fields.
// Times in keys are unix nanoseconds as big-endian uint64 with the sign bit
// flipped, so byte order is time order.
//
//	'I'                            identity: sealed(secrets) user ID ‖ PKCS #8
//	'H'                            libp2p host key: sealed(secrets) bytes
//	'P' ‖ prekey ID u64            prekey: sealed(secrets) JSON
//	'F' ‖ user ID(32)              friend: sealed JSON
//	'C' ‖ conversation ID(32)      conversation: sealed JSON
//	'M' ‖ conv(32) ‖ time ‖ msg(16)  message: sealed JSON
//	'X' ‖ msg ID(16)               message index: sealed conv ‖ time
//	'O' ‖ msg ID(16)               outbox entry: sealed JSON
//	'T' ‖ recipient(32) ‖ seq u64 ‖ msg ID(16)
//	                               outbox queue: sealed empty value; seq is
//	                               the write order (see OutboxQueue), the
//	                               outbox's only order
//	'S' ‖ msg ID(16)               seen ID: expiry (8 bytes, not sealed),
//	                               with badger's ExpiresAt set as well
//	'U'                            profile: sealed JSON
//	'K'                            key chain: sealed(secrets) JSON of rotations
//	'Q' ‖ key ID(32)               retired identity key: sealed(secrets) JSON
//	'R' ‖ user ID(32)              a friend's sessions: sealed(secrets) protobuf
//	'V' ‖ user ID(32) ‖ digest(32) key fork evidence (KeyFork): sealed JSON of
//	                               both statements; digest is SHA-256 over the
//	                               kind and the pair, so a pair is kept once
//	'G' ‖ group ID(32)             group: sealed JSON of its current signed
//	                               state (protocol encoding), removed (and the
//	                               unread count and last message of rows
//	                               written before 'A')
//	'A' ‖ group ID(32)             group activity: sealed JSON of the unread
//	                               count and last message, written with each
//	                               message so the roster is not rewritten
//	'E' ‖ group(32) ‖ epoch u64 ‖ sender(32) ‖ chain(32)
//	                               sender-key chain: sealed(secrets) protobuf
//	                               (protocol.SenderChain; own chains hold the
//	                               Ed25519 signing key)
//	'N' ‖ group(32) ‖ time ‖ msg ID(16)
//	                               group message: sealed JSON, plaintext and
//	                               wire form; time is the sender's
//	'W' ‖ group(32) ‖ sender(32) ‖ chain(32) ‖ iteration u32
//	                               group message index: sealed time ‖ msg ID;
//	                               a message is stored once per (group,
//	                               sender, chain, iteration), with its chain's
//	                               next state in the same transaction
//	'J' ‖ group(32) ‖ epoch u64 ‖ 0 or 1
//	                               group hand-out job (0: bodies and items)
//	                               and its progress (1): sealed(secrets)
//	                               JSON; written with the state, worked off
//	                               in batches (group_handouts.go)
//	'Y' ‖ group(32) ‖ epoch u64 ‖ from(32) ‖ chain(32)
//	                               early sender key (its state not held
//	                               yet): sealed(secrets) protobuf
//	                               (group_early_keys.go)
//
// 'D' is retired: older versions kept an outbox due index there ('D' ‖
// due time ‖ msg ID). Open deletes any such rows left on disk, and gives
// entries older still (without a seq) their queue place in due order.
//
// A message's sort time is its ReceivedAt for incoming messages and its
// SentAt for outgoing ones: history shows the local order in which the node
// received or sent, so a peer with a wrong clock cannot move its messages
// around in someone else's history. Messages pages walk that order, newest
// first, with ties broken by message ID.
//
// # Durability
//
// Every write method returns only after its transaction is on disk: in
// the store's own journal (journal.go), written before badger commits the
// same writes and fdatasynced beside that commit (durable.go); badger
// itself runs without SyncWrites, whose msync of its mapped log cost more
// CPU than the rest of a write. A read returns only once what it saw is
// durable, so nothing a crash could undo is shown or sent.
// Open replays the journal; checkpoints sync badger's files and drop the
// journal's older segments. StoreReceived writes the message, its seen
// ID and the conversation update in one transaction; a node acknowledges
// an envelope only after it returns.
//
// Every write goes through one commit queue (commit.go), the database's
// only writer: the writes waiting at a moment are run in queue order in
// one transaction, and the writes committed while a sync runs share the
// next one (group commit), so concurrent writers share their syncs and
// never conflict with each other. A write that
// fails leaves nothing behind; the others in its group are unaffected.
//
// # Backup
//
// Store.Backup streams the whole database (badger's backup stream, one
// snapshot) with every row as stored, still sealed; Load fills a fresh
// database beside the same MetaFile from such a stream and opens it once
// to check the identity. The backup file's own format and encryption
// belong to node/archive.
package store
