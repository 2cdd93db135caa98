// Package mailbox owns Parley's store-and-forward protocol
// /parley/mailbox/1.0.0: a relay holds opaque envelopes for a recipient
// who is offline and hands them over when one of the recipient's devices
// connects. It has two sides:
//
//   - Server, run by `parley relay`: it keeps held envelopes in its own
//     badger database (they survive a restart), enforces the limits of
//     Limits (per recipient, per depositor and recipient, TTL, deposit
//     rate per depositing peer), authorises fetches by the connection
//     itself — the fetching peer must be a device listed in the
//     recipient's current signed directory record — and deletes an
//     envelope only when the recipient acknowledges it. It never learns
//     content: it sees a recipient user ID and opaque bytes.
//   - Client, used by a user node: Register, Deposit and DepositAll (a
//     pipeline on one stream), Fetch (one pass) and
//     Subscribe (fetch, then receive pushes at once), each delivering
//     envelopes to a Handler that returns only once they are stored.
//
// # Wire format
//
// Each frame is a uvarint length and a protobuf message of
// node/mailbox/pb (mailbox.proto): the node writes ClientFrame, the relay
// ServerFrame, as on the messaging stream. A stream carries one kind of
// request: a pipeline of deposits, each answered by a Result in order
// (the client writes them without waiting for the Results; a refusal
// ends the pipeline: the relay answers it and closes the stream without
// reading further, so nothing after a refused deposit is held — the
// envelopes held are always a prefix of those written; the deposits that
// have arrived together are held in one synced write, batch.go); one
// register, answered by a Result; or one fetch, answered by a Result, then
// Item frames, a CaughtUp frame after the envelopes held when the fetch
// began, and (with subscribe) further Items as they are deposited. The
// node answers items with Ack frames. Every refusal is a Result with a
// Code; the client returns it as a *RefusedError, which matches the
// sentinel of its code (ErrFull, ErrRateLimited, ...) with errors.Is.
// docs/mailbox.md lists the codes, the limits' defaults and flags, the
// metrics, and what a user node does to use a mailbox.
//
// The package imports no project package but protocol, directory and
// internal (promreg, relaydb: the badger settings it shares with the group
// relay).
package mailbox
