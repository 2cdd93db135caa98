package protocol

import (
	"crypto/sha256"
	"encoding/binary"
)

// canon builds the canonical byte encodings that Parley signs. The rules are
// deliberately simple so that another implementation can reproduce them from
// the package documentation alone:
//
//   - integers are fixed width, big-endian (u8, u16, u32, u64; i64 as two's
//     complement u64);
//   - byte strings and UTF-8 strings are a u32 length followed by the bytes;
//   - fixed-size values (msg_id) are written raw;
//   - a list is a u32 count followed by its elements.
//
// Domain separation is done by the signer: what is signed is always
// label ‖ canonical bytes (see PrivateKey.Sign), and no label is a prefix of
// another.
type canon struct{ b []byte }

func newCanon(sizeHint int) *canon { return &canon{b: make([]byte, 0, sizeHint)} }

func (c *canon) u8(v uint8)   { c.b = append(c.b, v) }
func (c *canon) u16(v uint16) { c.b = binary.BigEndian.AppendUint16(c.b, v) }
func (c *canon) u32(v uint32) { c.b = binary.BigEndian.AppendUint32(c.b, v) }
func (c *canon) u64(v uint64) { c.b = binary.BigEndian.AppendUint64(c.b, v) }
func (c *canon) i64(v int64)  { c.u64(uint64(v)) }
func (c *canon) raw(v []byte) { c.b = append(c.b, v...) }

func (c *canon) bytes(v []byte) {
	c.u32(uint32(len(v)))
	c.b = append(c.b, v...)
}

func (c *canon) str(v string) {
	c.u32(uint32(len(v)))
	c.b = append(c.b, v...)
}

// labelledHash is SHA-256(label ‖ data), without copying data.
func labelledHash(label string, data []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write(data)
	var out [32]byte
	h.Sum(out[:0])
	return out
}
