package mailbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/node/mailbox/pb"
	"github.com/parley-chat/parley/protocol"
)

// ID is the mailbox protocol.
const ID = "/parley/mailbox/1.0.0"

// IDPipelined is the same protocol from relays that end a deposit
// pipeline at its first refusal (serveDeposits): only to those does a
// depositor send deposits without waiting for each result. A relay of
// ID alone may hold deposits that follow a refused one, out of order, so
// a depositor sends it one deposit per stream.
const IDPipelined = "/parley/mailbox/1.1.0"

// Frame and envelope sizes.
const (
	// MaxEnvelopeSize caps one held envelope: the node deposits what it
	// would deliver directly (an encoded delivery frame).
	MaxEnvelopeSize = protocol.MaxDeliverySize
	// maxClientFrame and maxServerFrame cap a frame: an envelope and its
	// protobuf overhead, or an ack of maxAckIDs IDs.
	maxClientFrame = MaxEnvelopeSize + 128
	maxServerFrame = MaxEnvelopeSize + 128
	// maxAckIDs caps the IDs of one Ack frame.
	maxAckIDs = 1024
	// maxDetail caps a Result's detail text.
	maxDetail = 200
)

// Code is the relay's answer to a request.
type Code uint32

// Result codes. CodeOK is success; CodeRateLimited and CodeUnavailable are
// worth retrying later, the others not with the same request.
const (
	CodeOK            Code = 0
	CodeMalformed     Code = 1 // the request does not parse, or a field has the wrong form
	CodeTooLarge      Code = 2 // a frame or envelope over its cap
	CodeFull          Code = 3 // the recipient's mailbox is at its envelope or byte limit
	CodeSenderQuota   Code = 4 // this depositor holds its limit of envelopes for the recipient
	CodeRateLimited   Code = 5 // this depositor deposits too fast; retry after RetryAfter
	CodeNotAuthorised Code = 6 // the peer is not a device of the recipient
	CodeUnknown       Code = 7 // the recipient is not registered here (or has no record)
	CodeUnavailable   Code = 8 // the relay could not do it now (storage, shutting down)
)

var codeNames = [...]string{"ok", "malformed", "too-large", "full", "sender-quota", "rate-limited", "not-authorised", "unknown-recipient", "unavailable"}

// String returns the code's name, as in metrics labels.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code-%d", uint32(c))
}

// Sentinel errors, one per refusal code; a *RefusedError matches the one
// of its code.
var (
	ErrMalformed     = fmt.Errorf("mailbox: malformed: %w", protocol.ErrMalformed)
	ErrTooLarge      = fmt.Errorf("mailbox: too large: %w", protocol.ErrTooLarge)
	ErrFull          = errors.New("mailbox: recipient's mailbox is full")
	ErrSenderQuota   = errors.New("mailbox: depositor's quota for this recipient is used up")
	ErrRateLimited   = errors.New("mailbox: depositing too fast")
	ErrNotAuthorised = errors.New("mailbox: peer is not a device of the recipient")
	ErrUnknown       = errors.New("mailbox: recipient not registered at this relay")
	ErrUnavailable   = errors.New("mailbox: relay unavailable")
	// ErrProtocol is a relay that answered out of turn.
	ErrProtocol = errors.New("mailbox: protocol violation by the relay")
)

var codeErrs = [...]error{nil, ErrMalformed, ErrTooLarge, ErrFull, ErrSenderQuota, ErrRateLimited, ErrNotAuthorised, ErrUnknown, ErrUnavailable}

// RefusedError is a relay's refusal.
type RefusedError struct {
	Code       Code
	Detail     string
	RetryAfter time.Duration // with CodeRateLimited
}

func (e *RefusedError) Error() string {
	s := "mailbox: refused: " + e.Code.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is matches the sentinel of e's code.
func (e *RefusedError) Is(target error) bool {
	return int(e.Code) < len(codeErrs) && codeErrs[e.Code] != nil && target == codeErrs[e.Code]
}

// Temporary reports whether the same request may succeed later.
func (e *RefusedError) Temporary() bool {
	return e.Code == CodeRateLimited || e.Code == CodeUnavailable || e.Code == CodeFull || e.Code == CodeSenderQuota
}

// codeFor maps an error of this package to the code the relay answers.
func codeFor(err error) Code {
	var re *RefusedError
	switch {
	case err == nil:
		return CodeOK
	case errors.As(err, &re):
		return re.Code
	case errors.Is(err, protocol.ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, protocol.ErrMalformed):
		return CodeMalformed
	}
	return CodeUnavailable
}

func resultFrame(code Code, detail string, retry time.Duration) *pb.ServerFrame {
	if len(detail) > maxDetail {
		detail = detail[:maxDetail]
	}
	return &pb.ServerFrame{Kind: &pb.ServerFrame_Result{Result: &pb.Result{
		Code: uint32(code), Detail: detail, RetryAfterMs: uint64(retry.Milliseconds()),
	}}}
}

// refusal turns a Result into nil (CodeOK) or a *RefusedError.
func refusal(r *pb.Result) error {
	if Code(r.GetCode()) == CodeOK {
		return nil
	}
	return &RefusedError{Code: Code(r.GetCode()), Detail: r.GetDetail(), RetryAfter: time.Duration(r.GetRetryAfterMs()) * time.Millisecond}
}

// recipientID parses a 32-byte user ID.
func recipientID(b []byte) (protocol.ID, error) {
	var id protocol.ID
	if len(b) != len(id) {
		return id, fmt.Errorf("%w: recipient of %d bytes (want %d)", ErrMalformed, len(b), len(id))
	}
	copy(id[:], b)
	return id, nil
}

// writeFrame writes m as a uvarint length and its encoding.
func writeFrame(w io.Writer, m proto.Message, max int) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("mailbox: encode frame: %w", err)
	}
	if len(b) > max {
		return fmt.Errorf("%w: frame of %d bytes (max %d)", ErrTooLarge, len(b), max)
	}
	buf := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(b)), uint64(len(b)))
	if _, err := w.Write(append(buf, b...)); err != nil {
		return fmt.Errorf("mailbox: write frame: %w", err)
	}
	return nil
}

// readFrame reads one frame into m. A length over max is ErrTooLarge and
// the frame is not read (the stream cannot continue); a frame or length
// prefix that does not parse is ErrMalformed; io.EOF is a clean end
// between frames, io.ErrUnexpectedEOF an end inside one.
func readFrame(r *bufio.Reader, m proto.Message, max int) error {
	n, err := readLength(r)
	if err != nil {
		return err
	}
	if n > uint64(max) {
		return fmt.Errorf("%w: frame of %d bytes (max %d)", ErrTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("mailbox: read frame: %w", err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// readLength reads a uvarint length prefix.
func readLength(r *bufio.Reader) (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := r.ReadByte()
		switch {
		case i == 0 && errors.Is(err, io.EOF):
			return 0, io.EOF
		case errors.Is(err, io.EOF):
			return 0, fmt.Errorf("mailbox: read frame length: %w", io.ErrUnexpectedEOF)
		case err != nil:
			return 0, fmt.Errorf("mailbox: read frame length: %w", err)
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<(7*i), nil
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrMalformed)
}
