package mailbox

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/parley-chat/parley/node/mailbox/pb"
)

// FuzzReadFrame feeds arbitrary bytes to the relay's frame reader: it
// must not panic, and every failure is typed (too large, malformed) or an
// end of input.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, depositFrame(make([]byte, 32), []byte("x")), maxClientFrame)
	f.Add(buf.Bytes())
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.ClientFrame
		err := readFrame(bufio.NewReader(bytes.NewReader(b)), &m, maxClientFrame)
		if err != nil && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) &&
			!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
