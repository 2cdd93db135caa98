// Package groupguard owns the spam and flood defences of group topics,
// for every node that carries them, member or relay: rate limits per
// sender chain and per forwarding peer, and the gossipsub options of a
// chat network (peer scoring, thresholds, the router's bounds). It does
// not import package node, so that relays (node/grouprelay) use the same
// rules; it knows group messages only as sizes and chain IDs.
//
// # Rates
//
// A Guard keeps token buckets (messages/s and bytes/s, each with a
// burst) per forwarding peer and per sender chain, in two tables capped
// at Config.MaxPeers and Config.MaxChains keys; a key unused for
// Config.Idle, or the least recently used one at the cap, is forgotten
// (which only hands it a full bucket, as a long pause would). The clock
// is Config.Now.
//
//   - Per forwarding peer (DefaultPeerMsgs, DefaultPeerBytes): applied to
//     every message of every RPC before the router queues it for
//     validation (PubSubOptions installs the inspector), so one peer
//     cannot fill the validation queue, whatever it sends. A message over
//     the rate is dropped there and is a strike against the peer: its
//     application score (P5) falls by StrikeWeight per strike, fading
//     with a half-life of DefaultStrikeHalfLife. A flood of 250 messages
//     over the rate takes a peer below the graylist, where the router drops
//     everything it sends unread.
//   - Per sender chain (DefaultChainMsgs, DefaultChainBytes): applied by
//     the topic validator after the message's signature verified (a
//     forger must not spend an honest member's budget). Over the rate the
//     validator answers Ignore, not Reject: the peer that forwarded it may
//     be honest (a member can send different messages to different
//     neighbours, each within the rate, which then arrive at a third node
//     together), and Reject would count against that peer's score. The
//     spammer's own peer is still caught by its per-peer rate, and what
//     a chain can post through any one node is bounded by its rate.
//
// # Scores
//
// Invalid messages (a signature that fails, a wrong topic, garbage) are
// Rejected by the validator, which gossipsub counts against the peer
// that sent them (P4, InvalidMessageWeight: 6 invalid messages take a
// peer below the graylist). P1 and P2 reward time in the mesh and first deliveries a
// little (at most TopicScoreCap in all), so an honest peer that once
// forwards something invalid is not cut off; P3 (mesh delivery rate) is
// off, since a quiet group has nothing to deliver for hours. P7 counts
// broken IWANT promises: a peer that advertises message IDs it does not
// have is soon ignored.
//
// IP colocation (P6). Many honest users share one public address: an
// office, a university, a mobile carrier's NAT. P6 counts only past
// IPColocationThreshold (32) peers on one address, with weight -1
// squared, so it takes 55 peers on one address to fall below the gossip
// threshold and 83 below the graylist, more than most nodes are connected to
// in all (the connection manager keeps 64 to 128). Addresses in private
// ranges (loopback, RFC 1918, RFC 6598 shared space, link-local, IPv6
// unique local) are whitelisted: a peer seen on one is on this node's
// own network. gossipsub also counts each IPv6 address's /64 as one
// address, so the users of one IPv6 network count together, as users
// behind one NAT do (the 500-member simulation gives its peers a /64
// each for that reason). P6 stays on at that strength because it costs honest users
// nothing and still marks a host that runs a hundred identities; the
// defences that matter are the rates and P4, which are per peer and per
// chain, not per address.
//
// # Bounds
//
// The validation queue holds DefaultValidateQueue messages and at most
// DefaultValidateThrottle validations run at once, both above one peer's
// burst (so one peer's burst does not crowd out the others'); with the
// size cap of a group message that bounds what waits for validation to
// about 22 MiB, and a flood of small messages to far less.
// The router takes at most MaxIHaveLength message IDs from one peer's
// IHAVEs per heartbeat (and asks for at most that many with IWANT) and
// at most MaxIHaveMessages IHAVEs, so a flood of bogus IDs costs a
// bounded amount of memory per peer and heartbeat, and its broken
// promises (P7) soon silence it. An IWANT for IDs this node does not
// hold costs a map lookup each; one for a message it holds is answered
// at most GossipRetransmission (3) times per peer.
//
// There is no peer gater (pubsub.WithPeerGater): it throttles by IP
// address, so on a network where many users share one (a NAT, or every
// test host on 127.0.0.1) it would slow honest peers down with the
// attacker sharing their address; the per-peer rate before the queue
// does the same job per peer ID.
//
// What this does not stop: a peer that makes a new identity after being
// graylisted starts at zero, as gossipsub scores are per peer ID; it is
// held back by its rate again. A member who spams within the rate is a
// social problem for the group's admins, not for the router.
package groupguard
