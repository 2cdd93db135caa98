package directory

import (
	"encoding/binary"

	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol"
)

// canon builds the canonical bytes a record signature covers, with the
// rules of package protocol: fixed-width big-endian integers; byte and
// UTF-8 strings as a u32 length and the bytes; lists as a u32 count and the
// elements.
type canon struct{ b []byte }

func (c *canon) u8(v uint8)   { c.b = append(c.b, v) }
func (c *canon) u32(v uint32) { c.b = binary.BigEndian.AppendUint32(c.b, v) }
func (c *canon) u64(v uint64) { c.b = binary.BigEndian.AppendUint64(c.b, v) }
func (c *canon) i64(v int64)  { c.u64(uint64(v)) }

func (c *canon) bytes(v []byte) {
	c.u32(uint32(len(v)))
	c.b = append(c.b, v...)
}

func (c *canon) str(v string) {
	c.u32(uint32(len(v)))
	c.b = append(c.b, v...)
}

// marshal and unmarshalCanonical are protocol's canonical protobuf
// encoding: deterministic, and a parse accepts only that one encoding.
func marshal(m proto.Message) []byte { return protocol.MarshalCanonical(m) }

func unmarshalCanonical(b []byte, m proto.Message) error { return protocol.UnmarshalCanonical(b, m) }
