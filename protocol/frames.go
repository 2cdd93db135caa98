package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/protocol/pb"
)

// Frame sizes on the messaging stream.
const (
	// MaxDeliverySize caps one Delivery frame: an envelope, a card and
	// their protobuf overhead.
	MaxDeliverySize = MaxEnvelopeSize + MaxChainedCardSize + 64
	// MaxAckSize caps one Ack frame.
	MaxAckSize = 512
	// maxAckDetail caps an Ack's reason text.
	maxAckDetail = 200
)

// AckCode is a receiver's answer to one delivered envelope.
type AckCode uint32

// Ack codes. Every code but AckOK and AckUnavailable is permanent: sending
// the same envelope again cannot succeed. AckReplay means the receiver
// already has the message, which a sender that lost an earlier
// acknowledgement counts as delivered.
const (
	AckOK          AckCode = 0 // verified and stored durably
	AckAuth        AckCode = 1 // signature or decryption failed
	AckReplay      AckCode = 2 // msg_id seen before
	AckStale       AckCode = 3 // outside the acceptance window, or its prekey, session or message key is gone
	AckNotForMe    AckCode = 4 // addressed to another user or key
	AckTooLarge    AckCode = 5 // over a size cap
	AckMalformed   AckCode = 6 // does not parse
	AckNotAFriend  AckCode = 7 // the sender may not send this kind to the receiver
	AckUnavailable AckCode = 8 // the receiver could not store it now; try again later
)

var ackNames = [...]string{"ok", "auth", "replay", "stale", "not-for-me", "too-large", "malformed", "not-a-friend", "unavailable"}

// String returns the code's name ("ok", "auth", "replay", "stale",
// "not-for-me", "too-large", "malformed", "not-a-friend", "unavailable").
func (c AckCode) String() string {
	if int(c) < len(ackNames) {
		return ackNames[c]
	}
	return fmt.Sprintf("code-%d", uint32(c))
}

// Valid reports whether c is a known code.
func (c AckCode) Valid() bool { return int(c) < len(ackNames) }

// Permanent reports whether sending the same envelope again cannot help.
func (c AckCode) Permanent() bool { return c != AckOK && c != AckUnavailable && c != AckReplay }

// AckCodeFor maps an Opener.Open or session Open error to the code a
// receiver answers.
// It returns AckUnavailable for errors that are not the protocol's.
func AckCodeFor(err error) AckCode {
	switch {
	case err == nil:
		return AckOK
	case errors.Is(err, ErrTooLarge):
		return AckTooLarge
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrKeySize):
		return AckMalformed
	case errors.Is(err, ErrNotForMe):
		return AckNotForMe
	case errors.Is(err, ErrStale), errors.Is(err, ErrUnknownPrekey), errors.Is(err, ErrExpired):
		return AckStale
	case errors.Is(err, ErrSessionUnknown), errors.Is(err, ErrMessageKeyGone), errors.Is(err, ErrSkipLimit):
		// A session message this receiver can never open: the sender
		// seals it again in a new session (the receiver asks for one with
		// a session reset).
		return AckStale
	case errors.Is(err, ErrSessionKeyMissing):
		return AckUnavailable // opens once the responder's certificate has arrived
	case errors.Is(err, ErrUnknownSender):
		return AckNotAFriend
	case errors.Is(err, ErrAuth):
		return AckAuth
	}
	return AckUnavailable
}

// ErrFraming is a frame whose length prefix is not a valid uvarint: the
// stream cannot be split into frames after it. It also matches
// ErrMalformed.
var ErrFraming = errors.New("protocol: bad frame length")

// Delivery is one frame on the messaging stream: an envelope (with, for a
// contact request or accept, the sender's card), or a session message.
type Delivery struct {
	Envelope   []byte // an encoded Envelope
	SenderCard []byte // an encoded Card, or nil; with an envelope only
	Session    []byte // an encoded SessionMessage, instead of Envelope
}

// Ack is the answer to one Delivery.
type Ack struct {
	MsgID  MsgID
	Code   AckCode
	Detail string
}

// WriteDelivery writes d as one length-delimited frame.
func WriteDelivery(w io.Writer, d *Delivery) error {
	m := &pb.Delivery{Envelope: d.Envelope, SenderCard: d.SenderCard, Session: d.Session}
	return writeFrame(w, m, MaxDeliverySize)
}

// ReadDelivery reads one Delivery frame: an envelope (and maybe a card) or
// a session message alone; anything else is ErrMalformed. A frame whose announced length is
// over MaxDeliverySize is ErrTooLarge and is not read: the stream cannot
// be resynchronised after it; neither can it after a length prefix that is
// not a uvarint (ErrFraming). A frame that does not parse is ErrMalformed,
// and the stream stays in step. io.EOF means the stream ended cleanly
// between frames; a stream cut inside a frame is io.ErrUnexpectedEOF; any
// other read error (a reset, a deadline) is returned wrapped as it is.
func ReadDelivery(r *bufio.Reader) (*Delivery, error) {
	b, err := readFrame(r, MaxDeliverySize)
	if err != nil {
		return nil, err
	}
	var m pb.Delivery
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: delivery frame: %v", ErrMalformed, err)
	}
	switch {
	case len(m.GetSession()) != 0:
		if len(m.GetEnvelope()) != 0 || len(m.GetSenderCard()) != 0 {
			return nil, fmt.Errorf("%w: delivery frame with a session message and an envelope or card", ErrMalformed)
		}
		return &Delivery{Session: m.GetSession()}, nil
	case len(m.GetEnvelope()) == 0:
		return nil, fmt.Errorf("%w: delivery frame without envelope", ErrMalformed)
	}
	return &Delivery{Envelope: m.GetEnvelope(), SenderCard: m.GetSenderCard()}, nil
}

// WriteAck writes a as one length-delimited frame; a long Detail is cut.
func WriteAck(w io.Writer, a *Ack) error {
	detail := a.Detail
	if len(detail) > maxAckDetail {
		detail = detail[:maxAckDetail]
	}
	m := &pb.Ack{Code: uint32(a.Code), Detail: detail}
	if !a.MsgID.IsZero() {
		m.MsgId = a.MsgID[:]
	}
	return writeFrame(w, m, MaxAckSize)
}

// ReadAck reads one Ack frame.
func ReadAck(r *bufio.Reader) (*Ack, error) {
	b, err := readFrame(r, MaxAckSize)
	if err != nil {
		return nil, err
	}
	var m pb.Ack
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: ack frame: %v", ErrMalformed, err)
	}
	a := &Ack{Code: AckCode(m.GetCode()), Detail: m.GetDetail()}
	switch id := m.GetMsgId(); len(id) {
	case 0:
	case MsgIDSize:
		a.MsgID = MsgID(id)
	default:
		return nil, fmt.Errorf("%w: ack with a %d-byte msg_id", ErrMalformed, len(id))
	}
	return a, nil
}

// MarshalReceipt encodes the body of a read receipt up to message upTo.
func MarshalReceipt(upTo MsgID) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.Receipt{UpTo: upTo[:]})
	if err != nil {
		panic("protocol: marshal receipt: " + err.Error()) // cannot fail for this message
	}
	return b
}

// ParseReceipt decodes the body of a read receipt.
func ParseReceipt(b []byte) (MsgID, error) {
	var m pb.Receipt
	if err := proto.Unmarshal(b, &m); err != nil {
		return MsgID{}, fmt.Errorf("%w: receipt: %v", ErrMalformed, err)
	}
	if len(m.GetUpTo()) != MsgIDSize {
		return MsgID{}, fmt.Errorf("%w: receipt without a msg_id", ErrMalformed)
	}
	id := MsgID(m.GetUpTo())
	if id.IsZero() {
		return MsgID{}, fmt.Errorf("%w: receipt for the zero msg_id", ErrMalformed)
	}
	return id, nil
}

// MaxDeliveredIDs caps the messages one delivery receipt names.
const MaxDeliveredIDs = 256

// MarshalDelivered encodes the body of a delivery receipt for ids (1 to
// MaxDeliveredIDs, none zero).
func MarshalDelivered(ids []MsgID) ([]byte, error) {
	if len(ids) == 0 || len(ids) > MaxDeliveredIDs {
		return nil, fmt.Errorf("%w: delivery receipt for %d messages (1 to %d)", ErrMalformed, len(ids), MaxDeliveredIDs)
	}
	m := &pb.Delivered{Ids: make([][]byte, len(ids))}
	for i, id := range ids {
		if id.IsZero() {
			return nil, fmt.Errorf("%w: delivery receipt for the zero msg_id", ErrMalformed)
		}
		m.Ids[i] = id[:]
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("protocol: marshal delivery receipt: %w", err)
	}
	return b, nil
}

// ParseDelivered decodes the body of a delivery receipt.
func ParseDelivered(b []byte) ([]MsgID, error) {
	var m pb.Delivered
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: delivery receipt: %v", ErrMalformed, err)
	}
	if n := len(m.GetIds()); n == 0 || n > MaxDeliveredIDs {
		return nil, fmt.Errorf("%w: delivery receipt for %d messages (1 to %d)", ErrMalformed, n, MaxDeliveredIDs)
	}
	ids := make([]MsgID, len(m.GetIds()))
	for i, raw := range m.GetIds() {
		if len(raw) != MsgIDSize {
			return nil, fmt.Errorf("%w: delivery receipt with a %d-byte msg_id", ErrMalformed, len(raw))
		}
		if ids[i] = MsgID(raw); ids[i].IsZero() {
			return nil, fmt.Errorf("%w: delivery receipt for the zero msg_id", ErrMalformed)
		}
	}
	return ids, nil
}

func writeFrame(w io.Writer, m proto.Message, max int) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("protocol: encode frame: %w", err)
	}
	if len(b) > max {
		return fmt.Errorf("%w: frame of %d bytes (max %d)", ErrTooLarge, len(b), max)
	}
	buf := make([]byte, 0, binary.MaxVarintLen64+len(b))
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	buf = append(buf, b...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("protocol: write frame: %w", err)
	}
	return nil
}

func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := readLength(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: frame of %d bytes (max %d)", ErrTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("protocol: read frame: %w", err)
	}
	return b, nil
}

// readLength reads a frame's uvarint length prefix. Read errors pass
// through (io.EOF only before the first byte); a prefix longer than a
// uint64 is ErrFraming.
func readLength(r *bufio.Reader) (uint64, error) {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if errors.Is(err, io.EOF) {
				return 0, io.EOF // clean end between frames
			}
			return 0, fmt.Errorf("protocol: read frame length: %w", err)
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<shift, nil
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, fmt.Errorf("%w: %w: length prefix overflows 64 bits", ErrFraming, ErrMalformed)
}
