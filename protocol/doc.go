// Package protocol owns Parley's wire formats and cryptography: identities,
// envelopes, signed prekeys, contact cards, key rotation, safety numbers,
// sessions and groups.
// It is pure and silent: no network, no disk, no logging, no global state.
// Callers branch on its sentinel errors (ErrAuth, ErrMalformed, ErrTooLarge,
// ErrNotForMe, ErrStale, ErrUnknownPrekey, ErrUnknownSender, ErrKeySize,
// ErrExpired, ErrBadChain; for sessions ErrSessionUnknown,
// ErrSessionKeyMissing, ErrMessageKeyGone, ErrSkipLimit; for groups
// ErrGroupWrongGroup, ErrGroupEpoch, ErrGroupPrevious, ErrGroupNotAdmin,
// ErrGroupNotMember, ErrGroupWrongSender, ErrGroupReplay,
// ErrGroupTooFarAhead).
//
// # Identities
//
// A user's identity is an RSA key pair, 3072 bits by default; keys of 2048 to
// 8192 bits with exponent 65537 are accepted, anything else is ErrKeySize
// before any RSA operation. A key's ID is SHA-256 of its SubjectPublicKeyInfo
// DER, printed as lower-case unpadded base32; a user's ID is the ID of the
// user's first key. One key pair signs (RSA-PSS-SHA256, salt length 32 when
// signing and when verifying) and receives (RSA-OAEP-SHA256), always under a
// domain label: a signature under label L over message m is
// RSA-PSS(SHA-256(L ‖ m)).
//
// # Envelopes
//
// An envelope carries one message from a sender to a recipient. On the wire
// it is the protobuf message parley.v1.Envelope (pb/parley.proto); a parser
// accepts only the canonical encoding. What is signed and authenticated is
// not the protobuf but the canonical header (Header.Canonical):
//
//	u8 version ‖ u8 suite ‖ u16 kind ‖ msg_id ‖ i64 timestamp_ms ‖
//	bytes(sender) ‖ bytes(sender_key) ‖ bytes(recipient) ‖ bytes(recipient_key) ‖
//	bytes(sender_device) ‖ u64 prekey_id ‖ bytes(ephemeral) ‖ bytes(wrapped_key)
//
// where integers are big-endian and bytes(x) is a u32 length and x. The
// construction, for a body of at most 32 KiB:
//
//	msg_id   = 16 random bytes (also the anti-replay nonce)
//	s        = 32 random bytes
//	wrapped  = RSA-OAEP-SHA256(recipient key, s,
//	               label = "parley/v1/oaep" ‖ sender ID ‖ recipient ID ‖ msg_id)
//	suite 1: ikm = s,                          salt = msg_id
//	suite 2: ikm = X25519(ephemeral, prekey) ‖ s, salt = ephemeral public ‖ prekey public
//	         (an all-zero X25519 result is an error)
//	key ‖ nonce = HKDF-SHA256(ikm, salt,
//	               info = "parley/v1/env-key" ‖ SHA-256(canonical header)), 32 + 12 bytes
//	plaintext = sender ID ‖ recipient ID ‖ msg_id ‖ i64 timestamp_ms ‖ u32 len(body) ‖ body,
//	            zero-padded to a multiple of 256 bytes
//	ciphertext = AES-256-GCM(key, nonce, plaintext, AAD = canonical header)
//	signature  = RSA-PSS-SHA256(sender key,
//	               "parley/v1/env-sig" ‖ canonical header ‖ SHA-256(ciphertext))
//
// The nonce is carried in the envelope (the seed's iv field) and must equal
// the derived one. Opener.Open checks, in order: size cap (64 KiB), parse,
// recipient is me, timestamp inside the window (14 days back, 5 minutes
// ahead by default), the signature with the sender key the caller supplies,
// unwrap, derive, decrypt, and that the IDs, msg_id and timestamp inside the
// ciphertext equal the header's. Every cryptographic failure is the same
// ErrAuth. The replay check (a msg_id seen before) belongs to the caller.
//
// # Signed prekeys, cards and safety numbers
//
// A signed prekey (SignedPrekey) is an X25519 public key with an ID and a
// validity window, signed under "parley/v1/prekey". A contact card (Card) is
// a user's signed bundle {user ID, display name, RSA public key, devices,
// multiaddrs, current signed prekey, issued-at} under "parley/v1/card",
// shared as a "parley:card/…" link, or fetched from the user's device
// with a short invite (Invite, "parley:invite/…": user ID, device, one or
// two addresses and a secret; see invite.go). SafetyNumber computes the
// 60-digit number two users compare to verify each other's keys.
//
// An envelope of kind KindFriendRemoved (9, empty body) tells a friend
// that the sender removed them; it is never a session message.
//
// # Safety numbers
//
// A safety number is what two users read to each other to check that each
// node holds the other's real key; it must cover the key whose acceptance
// the user confirms. It is two 30-digit halves, one per user, the smaller
// first (algorithm in safety.go). Which key a half is computed over:
//
//   - A user's own half, and a friend's half while the friend's key in use
//     follows from their genesis key through a verified rotation chain
//     (Rotation, VerifyChain): the genesis key, under "parley/v1/safety"
//     (SafetyNumber). The chain proves continuity, so a rotation keeps the
//     number, on both sides.
//   - A friend whose new key does not follow from the key pinned for them
//     (a key change without a chain: a substituted key, a stolen genesis
//     key, a forked history): the new key, under "parley/v1/key-safety"
//     (ChangedKeySafetyNumber). That number differs from every number
//     shown before, even when the new key is the friend's genesis key, and
//     marking the friend verified accepts the new key only when the number
//     the user confirmed is this one. The friend's own node shows the
//     genesis number, which does not match: against a substituted key,
//     that is the point. A friend whose own history really forked (who
//     rotated again from an old backup, say) gets the matching number as
//     ChangedKeySafetyNumber(own ID, current key, your ID, your genesis
//     key); nodes do not show that one yet.
//
// # Key rotation
//
// A user moves to a new RSA key with a Rotation {user ID, old key ID, new
// public key, sequence, time}, signed by the old key under
// "parley/v1/rotate-old" and counter-signed by the new key under
// "parley/v1/rotate-new" (wire form: parley.v1.Rotation in
// pb/rotation.proto). The user ID stays the ID of the genesis key, and so
// does the safety number. VerifyChain follows a chain of rotations from the
// genesis key to the current key. A card issued after a rotation is version
// 2: it is signed by the current key and carries the genesis key and the
// chain (NewChainedCard); a card of a user who never rotated is unchanged
// (version 1).
//
// # Sessions
//
// A session is a Signal-style double ratchet between two users, anchored in
// their RSA identities; it makes a message cost an Ed25519 signature and
// AES-GCM instead of an RSA signature and an RSA decryption, and gives
// forward secrecy per message and post-compromise security after each DH
// ratchet step. Messages that cannot use one (first contact, a peer whose
// session is being reset) still go as envelopes.
//
// Start. The initiator A seals a suite-2 envelope of kind KindSessionStart
// (5) to B, RSA-PSS signed as every envelope, whose body (pb.SessionStart)
// carries: session_id (16 random bytes), A's fresh Ed25519 session signing
// key, A's first X25519 ratchet key, root_seed (32 random bytes), the ID of
// the session it replaces (informational), and the first message's kind
// and body (kind 0: none), so the first message costs one envelope. The
// envelope's signature certifies A's session key; its encryption (RSA-OAEP
// and X25519 with B's prekey) keeps root_seed secret:
//
//	SK = HKDF-SHA256(ikm = root_seed, salt = session_id,
//	         info = "parley/v1/sess-root" ‖ SHA-256(canonical start header))
//
// B's signed prekey is B's first ratchet key (DR spec, section 3.3):
//
//	A:  RK, CKs = KDF_RK(SK, X25519(A ratchet, B prekey))
//	B:  RK, CKr = KDF_RK(SK, X25519(B prekey, A ratchet)); then at once a
//	    DH step with a fresh key, so the session state never holds the
//	    prekey's private half
//	KDF_RK(rk, dh) = HKDF-SHA256(ikm = dh, salt = rk, info = "parley/v1/sess-ratchet"), 64 bytes → RK ‖ CK
//	KDF_CK(ck)     = HMAC-SHA256(ck, 0x01) → message key, HMAC-SHA256(ck, 0x02) → next CK
//
// B certifies its own Ed25519 session key with its RSA key, once per
// session (RSA-PSS under "parley/v1/sess-cert" over session_id ‖
// bytes(A's user ID) ‖ bytes(B's user ID) ‖ bytes(B's key ID) ‖
// bytes(B's Ed25519 key)), and attaches key and certificate to every
// message until A's DH step shows that A has it. So every session key is
// certified by its owner's RSA key, for this session and these two users.
//
// Messages (pb.SessionMessage, KindText etc. in clear like an envelope's
// kind) have the canonical header
//
//	u8 version ‖ u8 sig_alg ‖ u16 kind ‖ msg_id ‖ i64 timestamp_ms ‖
//	session_id (16) ‖ ratchet_key (32) ‖ u32 previous_chain ‖ u32 number ‖
//	bytes(cert_key) ‖ bytes(cert_signature)
//
// and are made with the next message key mk of the sending chain:
//
//	key ‖ nonce = HKDF-Expand-SHA256(mk, "parley/v1/sess-key" ‖ msg_id), 32 + 12 bytes
//	plaintext   = u32 len(body) ‖ body, zero-padded to a multiple of 256 bytes
//	ciphertext  = AES-256-GCM(key, nonce, plaintext,
//	                  AAD = "parley/v1/sess-msg" ‖ sender ID ‖ recipient ID ‖ header)
//	signature   = Ed25519(session key, "parley/v1/sess-sig" ‖ sender ID ‖
//	                  recipient ID ‖ header ‖ SHA-256(ciphertext))       sig_alg 1
//	            or RSA-PSS-SHA256(identity key, same bytes under the label
//	                  "parley/v1/sess-sig")                             sig_alg 2 (strict)
//
// (msg_id in the key derivation means that a state restored from an old
// copy, which derives a used mk again, still never reuses a key and nonce.)
// The receiver verifies the certificate and the signature before it
// touches the ratchet. A DH ratchet step (X25519) happens whenever the
// direction changes; message keys are deleted once used; at most
// MaxSkippedKeys (1,000) keys of messages not yet arrived are kept (the
// oldest go first), and a message that would skip more than MaxSkipJump
// (2,000) is ErrSkipLimit with nothing derived. A session should be
// replaced by a new start after SessionMaxAge (7 days) or
// SessionMaxMessages (10,000): NeedsRekey, PeerSessions.NeedsStart.
//
// State. Session and PeerSessions marshal to protobuf (pb/session.proto)
// with their private keys; the caller seals the blob and stores it in the
// same transaction as the message and its seen msg_id. Every method is
// transactional: on error nothing changed. Used message keys and old chain
// keys are not in the stored state.
//
// Crossing starts and lost state. PeerSessions keeps, per peer, the current
// session and those superseded less than SessionGrace (14 days) ago, at
// most MaxPeerSessions. The current one is the session with the latest
// start (start envelope timestamp, then session ID): both sides apply the
// rule to the same starts, so starts that cross settle on the same session,
// and the other still opens what was sent on it. A receiver without state
// for a message (ErrSessionUnknown; or ErrMessageKeyGone or ErrSkipLimit for
// a msg_id it has not seen) sends an RSA-signed envelope of kind
// KindSessionReset (6) whose body (pb.SessionReset) names the session, and
// refuses that session from then on (PeerSessions.Refuse: a late start or
// message of it never opens, so nothing opens twice); the sender drops it
// (PeerSessions.Reset) and sends again, in a new session, what is not
// acknowledged. A session past its grace never becomes current again.
//
// What sessions give: confidentiality and integrity of each message,
// forward secrecy (a stolen state opens no message whose key was used,
// nor, after the next DH steps, earlier chains; it does hold the keys of
// messages skipped and not yet arrived), post-compromise security
// (a stolen state opens nothing sent after its owner's next DH step), and
// signatures anchored in the RSA identities. What they do not give:
// deniability (Ed25519 and RSA signatures are transferable proof of who
// sent a message), and hiding of metadata (sender, recipient, session,
// times, sizes to 256 bytes, and message kinds are visible to relays).
// The start's secrecy is that of its envelope (RSA-OAEP and the prekey),
// so a start is forward-secret only once B's prekey is deleted.
//
// # What a rotation ends
//
// After a user rotates (a Rotation signed by the old key and the new),
// everything anchored in the old key is accepted only during a grace
// period, then never again. A session is anchored, on each side, in the
// RSA key that certified that side's Ed25519 session key: the start
// envelope's signing key for the initiator, the certificate's key for the
// responder (Session.Keys; stored in every session state since format 1,
// so older states need no migration). With a rotation:
//
//   - envelopes and session starts signed by the old key are refused as
//     soon as the receiver has pinned the new one (Opener.SenderKey);
//   - messages of a session anchored in the peer's old key open only
//     while that key is in its grace: PeerSessions.OpenWith takes the
//     peer's pinned key and the keys it retired, each with the end of its
//     grace (Anchors, RetiredKey; a node uses the rotation statement's
//     time plus its key grace, the same for every reader). Past it the
//     session is refused as ErrSessionUnknown wrapping ErrKeyRetired, and
//     the receiver asks for a reset: the next message starts a session
//     under the current keys. The same holds for sessions anchored in
//     one's own retired key. Session.Open and PeerSessions.Open open only
//     sessions anchored in the key they are given;
//   - an envelope or start sealed to the receiver's old key opens during
//     the grace (Opener.OldKey; the start is accepted with that key).
//     Past it, once the signature has verified, Open returns
//     ErrKeyRetired, not ErrNotForMe: the sender had not learnt the new
//     key, and the receiver answers AckUnavailable (retryable), so that
//     the sender fetches the new card and seals again with the same
//     msg_id. A message the user wrote never fails for it.
//
// Whether a msg_id arrived is answered only after the signature: the
// Opener's Seen hook runs after the signature check and before any
// decryption, and a receiver asks its seen IDs about a session message
// only after Session.Open verified its signature (ErrMessageKeyGone,
// ErrSkipLimit; ErrSessionUnknown comes before any signature and is not
// answered as a replay). So nobody learns whether a message was delivered
// by sending something they could not sign.
//
// # Groups
//
// A group is a random 32-byte ID, a signed roster per epoch (the group
// state), one sender key per member and epoch, and one gossipsub topic
// per epoch. Wire forms: pb/group.proto.
//
// Group state (pb.GroupState): version, group ID, name (UTF-8, at most
// 128 bytes), epoch (1 for a new group), members (at most 1,000, ordered
// by user ID, each admin (1) or member (2), at least one admin), the
// previous state's hash (none at epoch 1), issued-at, and the signing
// admin's user ID and RSA key ID, signed with RSA-PSS under
// "parley/v1/group-state" over
//
//	u8 version ‖ group_id (32) ‖ bytes(name) ‖ u64 epoch ‖
//	u32 count ‖ (user_id (32) ‖ u8 role)* ‖ bytes(previous) ‖
//	i64 issued_ms ‖ signer (32) ‖ signer_key (32)
//
// Its hash is SHA-256("parley/v1/group-hash" ‖ its protobuf encoding,
// signature included). A new group's state (VerifyGroupGenesis) must be
// of epoch 1 and signed by one of its own admins; someone added at a later
// epoch, who holds no earlier state, checks only that (VerifyGroupState). A change (Accept) is
// accepted only for the same group (ErrGroupWrongGroup), for exactly the
// next epoch (ErrGroupEpoch: no replays of old states, no skipped
// epochs), with previous = the current state's hash (ErrGroupPrevious: a
// fork), signed by an admin of the current state (ErrGroupNotAdmin) with
// the key the caller holds for them (ErrUnknownSender; ErrAuth for the
// signature). States travel to members inside 1:1 session messages of
// kind KindGroupState (7).
//
// Sender keys. Each member makes, per epoch, a chain: a random 32-byte
// chain key and a fresh Ed25519 key pair, whose public key is the chain's
// ID (NewSenderChain). The chain moves as a session's sending chain does:
//
//	mk_i   = HMAC-SHA256(ck_i, 0x01)
//	ck_i+1 = HMAC-SHA256(ck_i, 0x02)
//
// The owner hands {group ID, epoch, state hash, owner, chain ID,
// iteration, chain key} (pb.SenderKeyDistribution) to every other member
// inside a 1:1 session message of kind KindSenderKey (8), so every sender
// key is anchored in its owner's RSA identity as the session is. A
// receiver accepts it (AcceptSenderKey) only for its current state
// (group, epoch, and state hash: ErrGroupWrongGroup, ErrGroupEpoch,
// ErrGroupPrevious), only from the session of its owner (ErrGroupWrongSender:
// Alice's key inside Mallory's session is refused), and only from a member
// (ErrGroupNotMember). Receivers get the chain key and the public key, never
// the signing key, so a member who holds Alice's chain cannot post on it.
//
// Group messages (pb.GroupMessage) have the canonical header
//
//	u8 version ‖ u16 kind ‖ group_id (32) ‖ u64 epoch ‖ sender (32) ‖
//	chain (32) ‖ u32 iteration ‖ msg_id (16) ‖ i64 timestamp_ms
//
// and are made with the message key mk of the chain's next iteration:
//
//	key ‖ nonce = HKDF-Expand-SHA256(mk, "parley/v1/group-key" ‖ msg_id), 32 + 12 bytes
//	plaintext   = u32 len(body) ‖ body, zero-padded to a multiple of 256 bytes
//	ciphertext  = AES-256-GCM(key, nonce, plaintext, AAD = "parley/v1/group-msg" ‖ header)
//	signature   = Ed25519(chain key pair, "parley/v1/group-sig" ‖ header ‖ SHA-256(ciphertext))
//
// so group ID, epoch, sender, chain and iteration (and msg_id, time and
// kind) are bound to the ciphertext and the signature. A receiver checks,
// in order (SenderChain.Open): group, epoch, that the sender owns the
// chain (ErrGroupWrongSender), the Ed25519 signature (ErrAuth), then the
// iteration, then the AEAD (ErrAuth). An iteration already used is
// ErrGroupReplay; one more than MaxGroupSkip (2,000) past the next
// expected is ErrGroupTooFarAhead with nothing derived; the keys of
// skipped iterations are kept, at most MaxGroupSkip of them (the oldest
// go first; their messages are then ErrGroupReplay). SenderChain.Verify
// is the part that needs no chain key (the signature and the binding),
// which a topic validator runs before a message is forwarded; its
// ChainPublic.Check returns a proof (VerifiedGroupMessage: a private copy
// of what verified, and the chain that verified it), which
// SenderChain.OpenVerified opens without a second signature check when it
// is that chain, and verifies in full otherwise. A message that reached
// its reader any other way (group sync) is opened with Open. Chains are
// values: Seal and Open return the next state, which the caller stores
// with the message in one transaction (SenderChain.Marshal, pb.SenderChainState:
// private keys included, to be sealed).
//
// Topic. Epoch e of group g, whose state has hash H (the state's Hash),
// is carried on the gossipsub topic named from the epoch's topic proof P:
//
//	P     = SHA-256("parley/v1/topic-proof" ‖ g ‖ u64 e ‖ H)
//	topic = "/parley/group/2/" ‖ hex(SHA-256("parley/v1/group-topic" ‖ P))
//
// so the topic names neither the group's ID nor its name (the name never
// leaves 1:1 sessions; the ID is in every message's header, so nodes that
// carry the topic's traffic see it), and only holders of the epoch's
// state can compute it or P: seeing a group's messages does not tell
// anyone a later epoch's topic. Removing a member
// starts a new epoch: a new topic and new chains for everyone remaining,
// handed out pairwise, so the removed member's old chains open nothing
// sent after it. The removed member is sent the new state (so that it
// learns of its removal), never a chain of the new epoch.
//
// Relay tickets. A group's admin tells the relays it chose which chain
// keys may post on an epoch's topic with a relay ticket (pb.RelayTicket,
// RelayTicket): {P, epoch, the epoch's number of members, previous
// ticket's hash (or nothing), the keys ordered by chain, each with an
// admin flag, issued_ms, signer chain}, signed by the signer chain's
// Ed25519 key under "parley/v1/relay-ticket" over
//
//	u8 version ‖ P (32) ‖ u64 epoch ‖ u32 members ‖ bytes(previous) ‖
//	u32 count ‖ (chain (32) ‖ u8 admin)* ‖ i64 issued_ms ‖ signer (32)
//
// A ticket's hash is SHA-256("parley/v1/ticket-hash" ‖ its encoding). It
// holds public keys only: no user ID, no name, no group ID. The relay
// learns the topic from P (so a ticket proves that its maker holds the
// epoch's state) and decides with CheckRelayTicket, in order: the
// signature (ErrAuth); when the ticket names a previous ticket the relay
// holds, that it is of the next epoch (ErrGroupEpoch) and signed by an
// admin key of that ticket (ErrGroupNotAdmin) — the lineage; when the
// relay holds a ticket for the same topic, that the new one is of its
// epoch (ErrGroupEpoch), issued later (ErrTicketStale), and signed by an
// admin key of the held ticket or its signer (ErrGroupNotAdmin), except
// that a ticket vouched for by the lineage replaces one that is not;
// otherwise, that an admin key of the ticket itself signed it
// (ErrTicketLineage when it names a previous ticket the relay does not
// hold, else ErrGroupNotAdmin). The admin who made an epoch issues its
// tickets: the first with its own chain of the epoch before, following
// its ticket of that epoch, then again (issued later) as members' sender
// keys reach it; a ticket of the same keys is handed again as it was. A
// relay admits on the topic only messages of the
// ticket's epoch signed by one of its keys (SenderChain.Verify with the
// header's sender), and answers sync requests signed by one of its keys.
// While a ticket lists fewer keys than members (Complete), a chain it does
// not list may be a member's whose key has not reached the admin yet, so
// the relay ignores such a message instead of rejecting it.
// A current member who is not an admin knows P too and could hand a relay
// a first ticket for a topic the relay has no lineage for; the admin's
// ticket that follows the previous epoch's replaces it.
//
// Leaving. A member who leaves sends each admin a 1:1 envelope of kind
// KindGroupLeave (11) whose body is group_id (32) ‖ u64 epoch (GroupLeave),
// and stops (its node leaves the topic and keeps the group as removed,
// ignoring what still comes for it). An admin takes the request only from
// a member of its current state, only for that epoch (an old request,
// replayed after the member was added again, is ignored), and never when
// it would leave the group without an admin; it removes the member with
// the next state. Only a state signed by an admin changes the roster; the
// envelope's signature names who asks, so nobody can make another member
// leave.
//
// Sync. A member who missed messages asks another member's node for
// them (pb.GroupSyncRequest: group, epoch, its own user ID and chain, the
// responder's peer ID, a time, and per chain {sender, chain, first
// iteration wanted}), signed with its own chain's Ed25519 key under
// "parley/v1/group-sync" over
//
//	u8 version ‖ group_id (32) ‖ u64 epoch ‖ requester (32) ‖
//	requester_chain (32) ‖ bytes(responder) ‖ i64 timestamp_ms ‖
//	u32 count ‖ (sender (32) ‖ chain (32) ‖ u32 from)*
//
// The responder answers only a request that verifies with a chain of that
// epoch it holds, names it, and is inside the envelope time window
// (ChainPublic.VerifySync), with at most MaxSyncMessages stored messages
// (pb.GroupSyncResponse), which the asker opens like any other. Both are
// length-prefixed frames, as the delivery frames are.
//
// Relay sync. A group relay that was away asks a member for what was
// posted on a topic meanwhile with pb.RelaySyncRequest {its ticket's
// encoding, and per chain of the ticket (each at most once) {chain, first
// iteration wanted}} (RelaySyncRequest), one length-prefixed frame. It
// holds no chain key; the ticket authenticates the request: the member
// answers only a ticket of the epoch it holds (ErrGroupEpoch) whose P is
// its state's (ErrNotForMe), with a valid signature (ErrAuth) by a chain
// of an admin of its state, of this epoch or the one before
// (ErrGroupNotAdmin) — RelayTicket.VerifyFor — and otherwise resets the
// stream and sends nothing. The ticket names no relay and nothing is
// signed per request: whoever holds the ticket may ask, and gets what the
// ticket entitles its relay to carry anyway, the topic's ciphertext. The
// answer is a pb.GroupSyncResponse, of which the relay keeps only what its
// topic validator's checks admit.
//
// What a group message shows in clear: group ID, epoch, sender, chain,
// iteration, time, kind and size (to 256 bytes), to every node carrying
// the topic. It is signed (transferable proof of authorship among those
// who hold the chain's public key), not deniable.
package protocol
