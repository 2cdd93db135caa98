// Package grouprelay owns the relay side of groups: a relay that a group
// chooses carries the group's gossipsub topic, admits on it only what
// the group's members sign, keeps that traffic (ciphertext) for a while
// and hands it to members who were offline. It runs on a relay's host and
// gossipsub router (node.Relay) beside the mailbox, and never learns a
// group's name or any text; tickets name no user and no group (what it
// sees of a message is the header every carrier sees: group ID, epoch,
// sender's user ID, chain, iteration, time, size).
//
//   - Tickets, on /parley/group-relay/1.0.0 (ID): a group's admin hands
//     the relay a protocol.RelayTicket per epoch (and again as members'
//     sender keys reach the admin). The relay takes it as
//     protocol.CheckRelayTicket says (a first ticket proves knowledge of
//     the epoch's state through its topic proof; the next epoch's follows
//     the previous one's, signed by one of its admin keys), keeps it in
//     its database and joins the ticket's topic.
//   - The topic validator rejects (pubsub.ValidationReject, so gossipsub's
//     scoring punishes whoever forwarded it) a message that does not
//     parse, is not for the ticket's epoch, or is not signed by a chain key
//     the ticket lists (ignored instead while the ticket lists fewer keys
//     than the epoch has members); for a short Grace after the next epoch's ticket, the
//     previous topic keeps being carried under its own ticket, then it is
//     left. The sender chain's rate (groupguard) applies through
//     Config.Admit.
//   - Accepted messages are stored, by topic, for Limits.Retention (14 days
//     by default), within a cap per topic and in total (the oldest go
//     first), and served on /parley/group-sync/1.0.0 to a requester who
//     signs with a chain key of the ticket (protocol VerifySync), as
//     members answer each other.
//   - Catching up (catchup.go): what was posted while the relay was away
//     (down, restarted, cut off) gossipsub does not bring back, so the
//     relay asks each peer that joins one of its topics — after a
//     restart, every member it meets again — on /parley/group-relay-sync/1.0.0
//     (RelaySyncID; protocol.RelaySyncRequest) for each chain of the ticket
//     from the first iteration it lacks after the first it holds. It has
//     no chain key: the request carries its ticket, which a member answers
//     only for its own epoch's topic and an admin chain's signature
//     (protocol RelayTicket.VerifyFor). The answer is checked as live
//     traffic is (check: the ticket's epoch and keys, the signature, the
//     topic's group), except that instead of the live window and the rate
//     limiter a message must be younger than the retention; it is stored
//     once (keyed by chain and iteration). One peer is asked at a time,
//     at most 8 answers of protocol.MaxSyncMessages per join.
//
// Offer is the client side a member node uses to hand over a ticket. The
// package imports no project package but protocol, internal/promreg and
// internal/relaydb (the badger settings it shares with the mailbox).
package grouprelay
