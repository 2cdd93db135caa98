package grouprelay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
)

// ID is the protocol on which a group's admin hands a relay a ticket:
// the node writes one frame (uvarint length ‖ protocol.RelayTicket
// encoding), the relay answers with one (u8 code ‖ uvarint length ‖
// detail, UTF-8, at most maxDetail bytes) and closes the stream.
const ID = "/parley/group-relay/1.0.0"

// SyncID is the group sync protocol, which relays answer as members do.
const SyncID = "/parley/group-sync/1.0.0"

// RelaySyncID is the protocol on which a relay asks a member for what was
// posted on a topic while it was away (protocol.RelaySyncRequest, its
// ticket for the topic and the chains' first missing iterations; the
// member answers with a protocol group sync response). Members serve it.
const RelaySyncID = "/parley/group-relay-sync/1.0.0"

const (
	maxDetail     = 200
	streamTimeout = 20 * time.Second
)

// Code is a relay's answer to a ticket.
type Code uint8

// Answer codes.
const (
	CodeOK          Code = 0
	CodeMalformed   Code = 1 // does not parse (protocol.ErrMalformed, ErrTooLarge)
	CodeAuth        Code = 2 // bad signature (protocol.ErrAuth)
	CodeNotAdmin    Code = 3 // signer without authority (protocol.ErrGroupNotAdmin)
	CodeLineage     Code = 4 // names a previous ticket it does not follow (protocol.ErrTicketLineage)
	CodeStale       Code = 5 // not newer than the relay's, or for a topic left (protocol.ErrTicketStale)
	CodeEpoch       Code = 6 // of the wrong epoch (protocol.ErrGroupEpoch)
	CodeFull        Code = 7 // the relay carries its limit of topics
	CodeUnavailable Code = 8 // the relay could not do it now
)

var codeNames = [...]string{"ok", "malformed", "auth", "not-admin", "lineage", "stale", "epoch", "full", "unavailable"}

// String returns the code's name, as in metrics labels.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code-%d", c)
}

// Sentinels of the codes that protocol has none for.
var (
	// ErrFull is a relay that carries its limit of topics.
	ErrFull = errors.New("grouprelay: relay carries its limit of topics")
	// ErrUnavailable is a relay that could not take a ticket now.
	ErrUnavailable = errors.New("grouprelay: relay unavailable")
)

var codeErrs = [...]error{nil, protocol.ErrMalformed, protocol.ErrAuth, protocol.ErrGroupNotAdmin, protocol.ErrTicketLineage,
	protocol.ErrTicketStale, protocol.ErrGroupEpoch, ErrFull, ErrUnavailable}

// codeFor maps an error to its answer code.
func codeFor(err error) Code {
	if err == nil {
		return CodeOK
	}
	if errors.Is(err, protocol.ErrTooLarge) {
		return CodeMalformed
	}
	for c := CodeMalformed; int(c) < len(codeErrs); c++ {
		if errors.Is(err, codeErrs[c]) {
			return c
		}
	}
	return CodeUnavailable
}

// RefusedError is a relay's refusal of a ticket; it matches the sentinel
// of its code with errors.Is (protocol.ErrGroupNotAdmin, ErrFull, ...).
type RefusedError struct {
	Code   Code
	Detail string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("grouprelay: ticket refused (%s): %s", e.Code, e.Detail)
}

// Is matches the sentinel of e's code.
func (e *RefusedError) Is(target error) bool {
	return int(e.Code) < len(codeErrs) && codeErrs[e.Code] != nil && target == codeErrs[e.Code]
}

// Temporary reports whether the same ticket may be taken later.
func (e *RefusedError) Temporary() bool { return e.Code == CodeUnavailable || e.Code == CodeFull }

func writeTicket(w io.Writer, raw []byte) error {
	_, err := w.Write(append(binary.AppendUvarint(nil, uint64(len(raw))), raw...))
	return err
}

func readTicket(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("%w: ticket frame: %v", protocol.ErrMalformed, err)
	}
	if n > protocol.MaxRelayTicketSize {
		return nil, fmt.Errorf("%w: ticket frame of %d bytes", protocol.ErrTooLarge, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: ticket frame: %v", protocol.ErrMalformed, err)
	}
	return b, nil
}

func writeAnswer(w io.Writer, c Code, detail string) error {
	if len(detail) > maxDetail {
		detail = detail[:maxDetail]
	}
	b := binary.AppendUvarint([]byte{byte(c)}, uint64(len(detail)))
	_, err := w.Write(append(b, detail...))
	return err
}

func readAnswer(r *bufio.Reader) (Code, string, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, "", err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > maxDetail {
		return 0, "", fmt.Errorf("%w: answer frame", protocol.ErrMalformed)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, "", err
	}
	return Code(c), string(b), nil
}

// Offer hands t to the relay p and returns its answer: nil when taken
// (or already held), a *RefusedError when refused, another error when the
// exchange failed.
func Offer(ctx context.Context, h host.Host, p peer.ID, t *protocol.RelayTicket) error {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, ID)
	if err != nil {
		return fmt.Errorf("grouprelay: opening a stream: %w", err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(streamTimeout))
	if err := writeTicket(s, t.Marshal()); err != nil {
		_ = s.Reset()
		return fmt.Errorf("grouprelay: sending a ticket: %w", err)
	}
	_ = s.CloseWrite()
	c, detail, err := readAnswer(bufio.NewReader(s))
	if err != nil {
		return fmt.Errorf("grouprelay: reading the answer: %w", err)
	}
	if c != CodeOK {
		return &RefusedError{Code: c, Detail: detail}
	}
	return nil
}
