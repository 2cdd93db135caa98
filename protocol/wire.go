package protocol

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var deterministic = proto.MarshalOptions{Deterministic: true}

// marshal encodes m deterministically. Our messages hold only bytes,
// strings and integers, so marshalling cannot fail.
func marshal(m proto.Message) []byte {
	b, err := deterministic.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("protocol: marshaling %T: %v", m, err))
	}
	return b
}

// MarshalCanonical encodes m, a message of Parley's schema (bytes,
// strings, integers and messages of them), in its one canonical form: the
// deterministic encoding. Other packages that sign protobuf records
// (directory) use it and UnmarshalCanonical.
func MarshalCanonical(m proto.Message) []byte { return marshal(m) }

// UnmarshalCanonical decodes b into m and accepts only m's canonical
// encoding (see unmarshalCanonical); failures wrap ErrMalformed.
func UnmarshalCanonical(b []byte, m proto.Message) error { return unmarshalCanonical(b, m) }

// unmarshalCanonical decodes b into m and accepts it only if it is the one
// canonical encoding of m: no unknown fields (at any depth), and b equals
// the deterministic re-encoding (fields in order, no explicit defaults, no
// duplicates, minimal varints).
func unmarshalCanonical(b []byte, m proto.Message) error {
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, m); err != nil {
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
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				found = hasUnknown(l.Get(i).Message())
			}
		case fd.IsMap():
			// Parley's schema has no maps.
		default:
			found = hasUnknown(v.Message())
		}
		return !found
	})
	return found
}
