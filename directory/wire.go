package directory

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// marshal encodes m deterministically. The record schema holds only bytes,
// strings, integers and messages of them, so marshalling cannot fail.
func marshal(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("directory: marshaling %T: %v", m, err))
	}
	return b
}

// unmarshalCanonical decodes b into m and accepts it only if it is the one
// canonical encoding of m: no unknown fields at any depth, and b equals the
// deterministic re-encoding (fields in order, no explicit defaults, no
// duplicates, minimal varints).
func unmarshalCanonical(b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if hasUnknown(m.ProtoReflect()) {
		return fmt.Errorf("%w: unknown fields", ErrMalformed)
	}
	if !bytes.Equal(marshal(m), b) {
		return fmt.Errorf("%w: not in canonical encoding", ErrMalformed)
	}
	return nil
}

func hasUnknown(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				found = hasUnknown(l.Get(i).Message())
			}
		} else if !fd.IsMap() { // the schema has no maps
			found = hasUnknown(v.Message())
		}
		return !found
	})
	return found
}
