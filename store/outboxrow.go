package store

import (
	"encoding/binary"
	"slices"

	"github.com/parley-chat/parley/protocol"
)

// An outbox entry's row is written in a small binary layout, not JSON:
// the entry is read twice and written once per message sent (queued, read
// by its courier, removed on its acknowledgement), and JSON spent more
// than the rest of those reads on base64-decoding the envelope. The
// layout, inside the row's seal:
//
//	version (outboxRowV1) ‖ flags ‖ seq (8, big-endian) ‖ message ID ‖
//	recipient ‖ envelope (the rest, not empty)
//
// Rows written by older versions are JSON objects (their first byte is
// '{', never outboxRowV1) and are still read.
const (
	outboxRowV1      byte = 1
	outboxRowHeader       = 2 + 8 + MsgIDSize + protocol.IDSize
	outboxFlagCtl    byte = 1 << 0
	outboxFlagSess   byte = 1 << 1
	outboxKnownFlags      = outboxFlagCtl | outboxFlagSess
)

// encodeOutboxRow is r's row (before its seal), in the binary layout.
func encodeOutboxRow(r *outboxRec) []byte {
	var flags byte
	if r.Control {
		flags |= outboxFlagCtl
	}
	if r.Session {
		flags |= outboxFlagSess
	}
	b := make([]byte, 0, outboxRowHeader+len(r.Envelope))
	b = append(b, outboxRowV1, flags)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = append(b, r.MsgID...)
	b = append(b, r.Recipient...)
	return append(b, r.Envelope...)
}

// decodeOutboxRow reads a row in either layout. The envelope of a binary
// row shares plain's memory.
func decodeOutboxRow(plain []byte) (outboxRec, error) {
	var r outboxRec
	switch {
	case len(plain) > 0 && plain[0] == '{':
		err := decodeRecord(rowOutbox, plain, &r)
		return r, err
	case len(plain) <= outboxRowHeader || plain[0] != outboxRowV1:
		return r, corrupt(rowOutbox, "unknown layout or short row")
	case plain[1]&^outboxKnownFlags != 0:
		return r, corrupt(rowOutbox, "unknown flags")
	}
	flags, rest := plain[1], plain[2:]
	r.Control, r.Session = flags&outboxFlagCtl != 0, flags&outboxFlagSess != 0
	r.Seq, rest = binary.BigEndian.Uint64(rest), rest[8:]
	r.MsgID, rest = rest[:MsgIDSize:MsgIDSize], rest[MsgIDSize:]
	r.Recipient, rest = rest[:protocol.IDSize:protocol.IDSize], rest[protocol.IDSize:]
	r.Envelope = slices.Clip(rest)
	return r, nil
}
