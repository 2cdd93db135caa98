package protocol

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol/pb"
)

// frame is a length prefix and b, as on the wire.
func frame(b []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(b))), b...) }

// pbFrame encodes m as one frame, whatever its size.
func pbFrame(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return frame(b)
}

func deliveryFrame(tb testing.TB, d *Delivery) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := WriteDelivery(&buf, d); err != nil {
		tb.Fatalf("WriteDelivery: %v", err)
	}
	return buf.Bytes()
}

func readerOf(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func TestDeliveryRoundTrip(t *testing.T) {
	env := bytes.Repeat([]byte{0xab}, 1000)
	card := []byte("a card")
	var stream []byte
	stream = append(stream, deliveryFrame(t, &Delivery{Envelope: env, SenderCard: card})...)
	stream = append(stream, deliveryFrame(t, &Delivery{Envelope: []byte{1}})...)
	big := bytes.Repeat([]byte{7}, MaxEnvelopeSize)
	stream = append(stream, deliveryFrame(t, &Delivery{Envelope: big, SenderCard: bytes.Repeat([]byte{9}, MaxCardSize)})...)
	r := readerOf(stream)
	d, err := ReadDelivery(r)
	if err != nil || !bytes.Equal(d.Envelope, env) || !bytes.Equal(d.SenderCard, card) {
		t.Fatalf("first frame: %+v, %v", d, err)
	}
	d, err = ReadDelivery(r)
	if err != nil || !bytes.Equal(d.Envelope, []byte{1}) || d.SenderCard != nil {
		t.Fatalf("second frame: %+v, %v", d, err)
	}
	d, err = ReadDelivery(r)
	if err != nil || !bytes.Equal(d.Envelope, big) || len(d.SenderCard) != MaxCardSize {
		t.Fatalf("largest frame: %d/%d bytes, %v", len(d.Envelope), len(d.SenderCard), err)
	}
	if _, err := ReadDelivery(r); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}

	var buf bytes.Buffer
	err = WriteDelivery(&buf, &Delivery{Envelope: bytes.Repeat([]byte{1}, MaxDeliverySize)})
	if !errors.Is(err, ErrTooLarge) || buf.Len() != 0 {
		t.Fatalf("WriteDelivery over the cap: %v, wrote %d bytes", err, buf.Len())
	}
}

func TestAckRoundTrip(t *testing.T) {
	id := MsgID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	long := strings.Repeat("é", 300)
	acks := []Ack{
		{MsgID: id, Code: AckOK},
		{MsgID: id, Code: AckReplay, Detail: "replay"},
		{Code: AckMalformed, Detail: "frame does not parse"}, // zero ID: did not parse
		{MsgID: id, Code: AckUnavailable, Detail: long},
		{MsgID: id, Code: AckCode(42)}, // an unknown code still travels
	}
	var buf bytes.Buffer
	for i := range acks {
		if err := WriteAck(&buf, &acks[i]); err != nil {
			t.Fatalf("WriteAck %d: %v", i, err)
		}
	}
	r := bufio.NewReader(&buf)
	for i, want := range acks {
		got, err := ReadAck(r)
		if err != nil {
			t.Fatalf("ReadAck %d: %v", i, err)
		}
		if len(want.Detail) > maxAckDetail {
			want.Detail = want.Detail[:maxAckDetail]
		}
		if *got != want {
			t.Fatalf("ack %d = %+v, want %+v", i, got, want)
		}
	}
	if _, err := ReadAck(r); err != io.EOF {
		t.Fatalf("after the last ack: %v, want io.EOF", err)
	}

	for name, b := range map[string][]byte{
		"short msg_id": pbFrame(t, &pb.Ack{MsgId: []byte{1, 2, 3}}),
		"long msg_id":  pbFrame(t, &pb.Ack{MsgId: make([]byte, MsgIDSize+1)}),
		"garbage":      frame([]byte{0x07, 0x01}),
	} {
		if _, err := ReadAck(readerOf(b)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ReadAck %s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := ReadAck(readerOf(pbFrame(t, &pb.Ack{Detail: strings.Repeat("x", MaxAckSize)}))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadAck of an oversized frame: %v, want ErrTooLarge", err)
	}
}

// countingReader counts the bytes handed out.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadDeliveryOversizedIsNotRead(t *testing.T) {
	for _, n := range []uint64{MaxDeliverySize + 1, 1 << 40, 1<<64 - 1} {
		stream := append(binary.AppendUvarint(nil, n), bytes.Repeat([]byte{0x0a}, MaxDeliverySize+100)...)
		cr := &countingReader{r: bytes.NewReader(stream)}
		r := bufio.NewReaderSize(cr, 16)
		if _, err := ReadDelivery(r); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("length %d: %v, want ErrTooLarge", n, err)
		}
		if cr.n > 16 {
			t.Fatalf("length %d: read %d bytes of the stream, want only the buffered prefix", n, cr.n)
		}
	}
	// Exactly at the cap is read.
	env := bytes.Repeat([]byte{1}, MaxDeliverySize-4) // tag, 3-byte length, envelope
	b := pbFrame(t, &pb.Delivery{Envelope: env})
	if got := len(b) - len(binary.AppendUvarint(nil, uint64(MaxDeliverySize))); got != MaxDeliverySize {
		t.Fatalf("test frame is %d bytes, want %d", got, MaxDeliverySize)
	}
	if d, err := ReadDelivery(readerOf(b)); err != nil || len(d.Envelope) != len(env) {
		t.Fatalf("frame of exactly MaxDeliverySize: %v", err)
	}
}

func TestReadDeliveryGarbageKeepsStep(t *testing.T) {
	good := deliveryFrame(t, &Delivery{Envelope: []byte("next")})
	cases := map[string][]byte{
		"invalid wire type":    frame([]byte{0x07, 1, 2, 3}),
		"field cut short":      frame([]byte{0x0a, 0x05, 1}),
		"empty frame":          frame(nil),
		"no envelope":          pbFrame(t, &pb.Delivery{SenderCard: []byte("card only")}),
		"envelope as a varint": frame([]byte{0x08, 0x01}),
		"random bytes":         frame([]byte("\xff\xfe\xfd\xfc\xfb\xfa garbage \x00\x01")),
	}
	for name, bad := range cases {
		r := readerOf(append(append([]byte(nil), bad...), good...))
		if _, err := ReadDelivery(r); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: %v, want ErrMalformed", name, err)
		}
		d, err := ReadDelivery(r)
		if err != nil || string(d.Envelope) != "next" {
			t.Fatalf("%s: the next frame: %+v, %v", name, d, err)
		}
	}
	// A length prefix that overflows 64 bits is refused, but no reader can
	// know where the next frame starts after it: the stream is out of step
	// (ReadDelivery says ErrMalformed today, which its callers take as
	// "go on"; ErrTooLarge would end the stream).
	overflow := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
	if _, err := ReadDelivery(readerOf(overflow)); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("length varint overflow: %v, want ErrMalformed or ErrTooLarge", err)
	}
	// Unknown fields are skipped, not refused.
	b, err := proto.Marshal(&pb.Delivery{Envelope: []byte("env")})
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, 0x78, 0x01) // field 15, varint 1
	if d, err := ReadDelivery(readerOf(frame(b))); err != nil || string(d.Envelope) != "env" {
		t.Fatalf("frame with an unknown field: %+v, %v", d, err)
	}
}

func TestReadDeliveryTruncatedAndEOF(t *testing.T) {
	full := deliveryFrame(t, &Delivery{Envelope: bytes.Repeat([]byte{3}, 300), SenderCard: []byte("c")})
	for _, n := range []int{1, 2, len(full) / 2, len(full) - 1} {
		_, err := ReadDelivery(readerOf(full[:n]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("frame cut at %d of %d bytes: %v, want io.ErrUnexpectedEOF", n, len(full), err)
		}
	}
	if _, err := ReadDelivery(readerOf([]byte{0x80})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("length prefix cut: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := ReadDelivery(readerOf(nil)); err != io.EOF {
		t.Fatalf("empty stream: %v, want exactly io.EOF", err)
	}
	if _, err := ReadAck(readerOf(nil)); err != io.EOF {
		t.Fatalf("empty ack stream: %v, want exactly io.EOF", err)
	}
	r := readerOf(full)
	if _, err := ReadDelivery(r); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDelivery(r); err != io.EOF {
		t.Fatalf("end after a whole frame: %v, want exactly io.EOF", err)
	}
}

func TestReceiptRoundTripAndMalformed(t *testing.T) {
	id := MsgID{0xde, 0xad, 0xbe, 0xef, 15: 1}
	b := MarshalReceipt(id)
	if !bytes.Equal(b, MarshalReceipt(id)) {
		t.Fatal("MarshalReceipt is not deterministic")
	}
	if got, err := ParseReceipt(b); err != nil || got != id {
		t.Fatalf("ParseReceipt = %s, %v; want %s", got, err, id)
	}
	bad := map[string][]byte{
		"empty":        nil,
		"zero msg_id":  MarshalReceipt(MsgID{}),
		"short msg_id": mustMarshal(t, &pb.Receipt{UpTo: id[:15]}),
		"long msg_id":  mustMarshal(t, &pb.Receipt{UpTo: append(id[:], 0)}),
		"garbage":      []byte{0x07, 0xff},
		"cut":          b[:len(b)-1],
		"wrong type":   {0x08, 0x01},
	}
	for name, in := range bad {
		if _, err := ParseReceipt(in); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseReceipt %s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestDeliveredRoundTripAndMalformed(t *testing.T) {
	ids := []MsgID{{1, 15: 2}, {3, 15: 4}}
	b, err := MarshalDelivered(ids)
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := MarshalDelivered(ids); !bytes.Equal(b, b2) {
		t.Fatal("MarshalDelivered is not deterministic")
	}
	if got, err := ParseDelivered(b); err != nil || len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Fatalf("ParseDelivered = %v, %v; want %v", got, err, ids)
	}
	for name, in := range map[string][]MsgID{"none": nil, "zero": {{}}, "too many": make([]MsgID, MaxDeliveredIDs+1)} {
		if _, err := MarshalDelivered(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("MarshalDelivered %s: %v, want ErrMalformed", name, err)
		}
	}
	many := make([][]byte, MaxDeliveredIDs+1)
	for i := range many {
		many[i] = ids[0][:]
	}
	bad := map[string][]byte{
		"empty":        nil,
		"zero msg_id":  mustMarshal(t, &pb.Delivered{Ids: [][]byte{make([]byte, MsgIDSize)}}),
		"short msg_id": mustMarshal(t, &pb.Delivered{Ids: [][]byte{ids[0][:15]}}),
		"too many":     mustMarshal(t, &pb.Delivered{Ids: many}),
		"garbage":      {0x07, 0xff},
		"cut":          b[:len(b)-1],
	}
	for name, in := range bad {
		if _, err := ParseDelivered(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseDelivered %s: %v, want ErrMalformed", name, err)
		}
	}
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAckCodeFor(t *testing.T) {
	cases := []struct {
		err  error
		want AckCode
	}{
		{nil, AckOK},
		{ErrTooLarge, AckTooLarge},
		{ErrMalformed, AckMalformed},
		{ErrKeySize, AckMalformed},
		{ErrNotForMe, AckNotForMe},
		{ErrStale, AckStale},
		{ErrUnknownPrekey, AckStale},
		{ErrExpired, AckStale},
		{ErrUnknownSender, AckNotAFriend},
		{ErrAuth, AckAuth},
		{errors.New("disk full"), AckUnavailable},
		{context.Canceled, AckUnavailable},
		{io.ErrUnexpectedEOF, AckUnavailable},
	}
	for _, c := range cases {
		if got := AckCodeFor(c.err); got != c.want {
			t.Errorf("AckCodeFor(%v) = %s, want %s", c.err, got, c.want)
		}
		if c.err == nil {
			continue
		}
		wrapped := fmt.Errorf("opening: %w", fmt.Errorf("inner: %w", c.err))
		if got := AckCodeFor(wrapped); got != c.want {
			t.Errorf("AckCodeFor(wrapped %v) = %s, want %s", c.err, got, c.want)
		}
	}
	// Every sentinel the package declares maps to a protocol code.
	for _, s := range []error{ErrAuth, ErrMalformed, ErrTooLarge, ErrNotForMe, ErrStale, ErrUnknownPrekey, ErrUnknownSender, ErrKeySize, ErrExpired} {
		if c := AckCodeFor(s); c == AckOK || c == AckUnavailable {
			t.Errorf("sentinel %v maps to %s", s, c)
		}
	}
}

func TestAckCodeNames(t *testing.T) {
	want := map[AckCode]struct {
		name      string
		permanent bool
	}{
		AckOK: {"ok", false}, AckAuth: {"auth", true}, AckReplay: {"replay", false},
		AckStale: {"stale", true}, AckNotForMe: {"not-for-me", true}, AckTooLarge: {"too-large", true},
		AckMalformed: {"malformed", true}, AckNotAFriend: {"not-a-friend", true}, AckUnavailable: {"unavailable", false},
	}
	for c, w := range want {
		if c.String() != w.name || c.Permanent() != w.permanent || !c.Valid() {
			t.Errorf("code %d: %q permanent=%v valid=%v, want %q permanent=%v", uint32(c), c.String(), c.Permanent(), c.Valid(), w.name, w.permanent)
		}
	}
	if c := AckCode(9); c.Valid() || c.String() != "code-9" || !c.Permanent() {
		t.Errorf("unknown code: %q valid=%v permanent=%v", c.String(), c.Valid(), c.Permanent())
	}
}

func TestIDFingerprint(t *testing.T) {
	var id ID
	for i := range id {
		id[i] = byte(i * 9)
	}
	fp := id.Fingerprint()
	groups := strings.Split(fp, " ")
	if len(groups) != 16 || len(fp) != 16*4+15 {
		t.Fatalf("fingerprint %q: %d groups, %d characters; want 16 groups of 4", fp, len(groups), len(fp))
	}
	for _, g := range groups {
		if len(g) != 4 || strings.ToUpper(g) != g {
			t.Fatalf("group %q of %q", g, fp)
		}
	}
	b, err := hex.DecodeString(strings.ReplaceAll(fp, " ", ""))
	if err != nil || !bytes.Equal(b, id[:]) {
		t.Fatalf("fingerprint %q does not spell the ID: %v", fp, err)
	}
	if got := (ID{}).Fingerprint(); got != strings.TrimSpace(strings.Repeat("0000 ", 16)) {
		t.Fatalf("zero ID fingerprint %q", got)
	}
	if got := (ID{0xab, 0xcd, 0xef, 0x01}).Fingerprint(); !strings.HasPrefix(got, "ABCD EF01 0000") {
		t.Fatalf("fingerprint %q", got)
	}
}

// FuzzReadDelivery feeds arbitrary streams to ReadDelivery. Properties: no
// panic; every error is io.EOF (only between frames), io.ErrUnexpectedEOF,
// ErrTooLarge (which ends the stream) or ErrMalformed (after which the
// next frame is read); each read makes progress; a frame that reads
// re-encodes within the cap and reads back the same.
func FuzzReadDelivery(f *testing.F) {
	one := deliveryFrame(f, &Delivery{Envelope: []byte("envelope"), SenderCard: []byte("card")})
	two := append(append([]byte(nil), one...), deliveryFrame(f, &Delivery{Envelope: bytes.Repeat([]byte{1}, 200)})...)
	f.Add([]byte{})
	f.Add(one)
	f.Add(two)
	f.Add(one[:len(one)/2])
	f.Add(append(frame([]byte{0x07, 0x01}), one...))
	f.Add(binary.AppendUvarint(nil, MaxDeliverySize+1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add(frame(nil))
	f.Add(frame(append(mustMarshal(f, &pb.Delivery{Envelope: []byte("e")}), 0x78, 0x01)))
	f.Add(frame(append(mustMarshal(f, &pb.Delivery{Envelope: []byte("first")}), mustMarshal(f, &pb.Delivery{Envelope: []byte("second")})...)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := readerOf(data)
		for i := 0; i <= len(data); i++ {
			d, err := ReadDelivery(r)
			switch {
			case err == nil:
				if d == nil || len(d.Envelope) == 0 {
					t.Fatalf("read %+v without an error", d)
				}
				var buf bytes.Buffer
				if err := WriteDelivery(&buf, d); err != nil {
					t.Fatalf("a frame that read does not write: %v", err)
				}
				back, err := ReadDelivery(bufio.NewReader(&buf))
				if err != nil || !bytes.Equal(back.Envelope, d.Envelope) || !bytes.Equal(back.SenderCard, d.SenderCard) {
					t.Fatalf("round trip: %+v, %v; want %+v", back, err, d)
				}
				continue
			case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrTooLarge):
				return
			case errors.Is(err, ErrMalformed):
				continue
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		t.Fatalf("%d reads of %d bytes and no end", len(data)+1, len(data))
	})
}
