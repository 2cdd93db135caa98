package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parley-chat/parley/node/mailbox"
	"github.com/parley-chat/parley/node/outbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// mailboxTag protects the connections to the node's mailbox relays from
// the connection manager: a subscription is a stream that waits.
const mailboxTag = "parley-mailbox"

// mailRetries is how many times an envelope from a mailbox may fail for
// a reason that is not permanent (a store error, a key retired, too many
// contact requests) before it is given up: the relay hands envelopes over
// in order, so one that never goes would hold back all that follow.
const mailRetries = 5

// unknownWait caps the backoff while a relay does not know this node's
// record (after a first start, before the record has reached it).
const unknownWait = 5 * time.Second

// deliveredDelay gathers the delivery receipts of a burst fetched from a
// mailbox into one control message per friend.
const deliveredDelay = 50 * time.Millisecond

// mailboxes is the part that uses relays' mailboxes (package
// node/mailbox). Receiving: it stays subscribed to each of the node's
// mailbox relays (Config.MailboxRelays, else its bootstrap peers; one
// that does not speak the protocol fails and is retried quietly with a
// backoff), feeds each envelope through the messenger's receive path
// (open, then commit, as for one frame of a stream) and answers the
// relay only once it is stored or refused for good; then it tells the
// sender which messages it stored (a delivery receipt, KindDelivered),
// since the relay's acknowledgement to the sender only meant "held".
// Sending: deposit is the outbox's Config.Deposit, which tries a friend's
// mailbox relays (friendEntry.relays) in order. mu guards delivered.
type mailboxes struct {
	host    host.Host
	log     *slog.Logger
	cfg     Config
	me      protocol.ID
	relays  []peer.AddrInfo
	client  *mailbox.Client
	msgs    *messenger
	friends *friendBook

	ready atomic.Int64 // subscriptions that caught up with what their relay held

	mu        sync.Mutex
	delivered map[protocol.ID][]protocol.MsgID // stored from a mailbox, receipt not yet queued
	failures  map[[sha256.Size]byte]int        // temporary failures, by envelope
	kick      chan struct{}                    // delivered has grown; capacity 1
}

func newMailboxes(h host.Host, relays []peer.AddrInfo) *mailboxes {
	return &mailboxes{
		host: h, relays: relays, client: mailbox.NewClient(h),
		delivered: make(map[protocol.ID][]protocol.MsgID), kick: make(chan struct{}, 1),
		failures: make(map[[sha256.Size]byte]int),
	}
}

// serve subscribes to every mailbox relay and sends delivery receipts,
// until ctx ends.
func (mb *mailboxes) serve(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range mb.relays {
		wg.Go(func() { mb.subscribe(ctx, r) })
	}
	mb.sendReceipts(ctx)
	wg.Wait()
	return nil
}

// subscribe keeps a subscription to relay r
// (again after a failure, with a backoff from RetryMin doubling to at
// most a minute), counting the subscriptions that caught up (ready). A
// relay that does not speak the protocol, or does not know this node's
// record yet, fails quietly and is tried again after the backoff.
func (mb *mailboxes) subscribe(ctx context.Context, r peer.AddrInfo) {
	mb.host.Peerstore().AddAddrs(r.ID, r.Addrs, peerstore.PermanentAddrTTL)
	mb.host.ConnManager().Protect(r.ID, mailboxTag)
	defer mb.host.ConnManager().Unprotect(r.ID, mailboxTag)
	minWait, maxWait := mb.cfg.RetryMin, max(mb.cfg.RetryMin, min(mb.cfg.RetryMax, time.Minute))
	handle := func(ctx context.Context, env []byte) error { return mb.receive(ctx, r.ID, env) }
	wait := minWait
	for {
		began := time.Now()
		err := mb.client.Subscribe(ctx, r.ID, mb.me, handle, func() { mb.ready.Add(1) })
		if ctx.Err() != nil {
			return
		}
		var re *mailbox.RefusedError
		if errors.As(err, &re) && !re.Temporary() && re.Code != mailbox.CodeUnknown {
			// Not authorised (the record listing this device is not out
			// yet), or malformed: not worth the short backoff.
			mb.log.Warn("mailbox relay refused this device", "relay", r.ID.String(), "err", err)
			wait = maxWait
		} else {
			mb.log.Debug("mailbox subscription ended", "relay", r.ID.String(), "err", err)
		}
		if time.Since(began) > maxWait {
			wait = minWait
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
		if errors.Is(err, mailbox.ErrUnknown) {
			// The relay does not have this node's record yet; it will
			// soon (the publisher is at it): no long backoff.
			wait = min(wait, max(minWait, unknownWait))
		}
	}
}

// receive takes one envelope from relay's mailbox through the receive
// path of a direct frame. nil: stored, or refused for good (the relay
// drops it); an error: not now (it stays at the relay).
func (mb *mailboxes) receive(ctx context.Context, relay peer.ID, frame []byte) error {
	in := mb.msgs.receiveFrame(ctx, relay, frame)
	switch code := in.ack.Code; {
	case code == protocol.AckOK || code == protocol.AckReplay:
		// A chat message (alone, or the first of a session start) now
		// stored, or stored before (it came directly too, or the relay
		// did not see our ack): the sender is told it is here.
		if m, err := mb.msgs.st.Message(ctx, in.ack.MsgID); err == nil && m.Direction == store.In && m.From == in.from {
			mb.stored(in.from, m.ID)
		}
	case code.Permanent():
		mb.msgs.audit(relay, in.from, code, in.err)
	default:
		if mb.failedAgain(frame) < mailRetries {
			return fmt.Errorf("node: envelope from a mailbox not stored (%s): %w", code, in.err)
		}
		mb.log.Warn("envelope from a mailbox given up", "relay", relay.String(), "code", code.String(), "tries", mailRetries)
		mb.msgs.audit(relay, in.from, code, in.err)
	}
	return nil
}

// failedAgain counts a temporary failure of frame and returns how many
// there were.
func (mb *mailboxes) failedAgain(frame []byte) int {
	h := sha256.Sum256(frame)
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if len(mb.failures) >= 1024 {
		clear(mb.failures) // only envelopes at the head of a mailbox fail again
	}
	mb.failures[h]++
	return mb.failures[h]
}

// stored notes a message from a mailbox to be named in a delivery
// receipt.
func (mb *mailboxes) stored(from protocol.ID, id protocol.MsgID) {
	mb.mu.Lock()
	mb.delivered[from] = append(mb.delivered[from], id)
	mb.mu.Unlock()
	select {
	case mb.kick <- struct{}{}:
	default:
	}
}

// sendReceipts queues delivery receipts for what was stored from
// mailboxes, a burst at a time, until ctx ends.
func (mb *mailboxes) sendReceipts(ctx context.Context) {
	// Receipts gathered when the node stops are queued before serve
	// returns: the store is still open then, and the outbox sends them
	// after the next start.
	defer func() {
		qctx, cancel := context.WithTimeout(context.Background(), receiptFlushTimeout)
		defer cancel()
		mb.queueReceipts(qctx)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-mb.kick:
		}
		t := time.NewTimer(deliveredDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		mb.queueReceipts(ctx)
	}
}

// receiptFlushTimeout bounds queueing the last receipts at a stop.
const receiptFlushTimeout = 5 * time.Second

// queueReceipts queues a delivery receipt to each friend for the messages
// stored from a mailbox since the last ones.
func (mb *mailboxes) queueReceipts(ctx context.Context) {
	mb.mu.Lock()
	todo := mb.delivered
	mb.delivered = make(map[protocol.ID][]protocol.MsgID)
	mb.mu.Unlock()
	for from, ids := range todo {
		fe := mb.friends.friend(from)
		if fe == nil || fe.f.Status != store.FriendAccepted || fe.key == nil || fe.f.ChangedKey != nil {
			continue
		}
		mb.log.Debug("delivery receipt", "to", from.String(), "messages", len(ids))
		for chunk := range slices.Chunk(ids, protocol.MaxDeliveredIDs) {
			body, err := protocol.MarshalDelivered(chunk)
			if err == nil {
				err = mb.msgs.queueControl(ctx, fe, protocol.KindDelivered, body)
			}
			if err != nil && ctx.Err() == nil {
				mb.log.Warn("delivery receipt not queued", "to", from.String(), "err", err)
			}
		}
	}
}

// deposit is the outbox's Config.Deposit: it asks to's mailbox relays,
// in order, to hold ds, each as one pipeline (mailbox.Client.DepositAll).
// The first relay that holds at least the first of them ends the round:
// its count (and its refusal, if it held only some) is the answer, and
// the courier deposits the rest at its next attempt, in order. Only a
// relay that holds none (unreachable, or refusing the first) passes the
// same batch to the next.
func (mb *mailboxes) deposit(ctx context.Context, to protocol.ID, ds []*protocol.Delivery) (int, error) {
	fe := mb.friends.friend(to)
	if fe == nil || len(fe.relays) == 0 {
		return 0, fmt.Errorf("%w: %s", outbox.ErrNoMailbox, to)
	}
	envs := make([][]byte, len(ds))
	size := 0
	for i, d := range ds {
		var buf bytes.Buffer
		if err := protocol.WriteDelivery(&buf, d); err != nil {
			return 0, err
		}
		envs[i] = buf.Bytes()
		size += buf.Len()
	}
	// The dial timeout, and as much again per MiB to write.
	timeout := time.Duration(1+size>>20) * mb.cfg.DialTimeout
	var errs []error
	for _, r := range fe.relays {
		if r.ID == mb.host.ID() {
			continue
		}
		if protos, err := mb.host.Peerstore().GetProtocols(r.ID); err == nil && len(protos) > 0 && !slices.Contains(protos, mailbox.ID) {
			// Identified, and it does not serve mailboxes: a relay of
			// theirs for circuits only.
			errs = append(errs, fmt.Errorf("node: %s has no mailbox", r.ID))
			continue
		}
		mb.host.Peerstore().AddAddrs(r.ID, r.Addrs, peerstore.AddressTTL)
		dctx, cancel := context.WithTimeout(ctx, timeout)
		held, err := mb.client.DepositAll(dctx, r.ID, to, envs)
		cancel()
		if held > 0 {
			return held, err
		}
		if err == nil { // nothing to hold: ds was empty
			return 0, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return 0, fmt.Errorf("%w: %s", outbox.ErrNoMailbox, to)
	}
	return 0, errors.Join(errs...)
}

// receiveFrame runs one delivery frame (as deposited at a mailbox)
// through the receive path of a stream's frame: open, then commit. remote
// is the relay it came from, which is no device of the sender's, so no
// session reset or card goes to it.
func (ms *messenger) receiveFrame(ctx context.Context, remote peer.ID, frame []byte) *inbound {
	br := bufio.NewReader(bytes.NewReader(frame))
	d, err := protocol.ReadDelivery(br)
	if err == nil {
		if _, e := br.ReadByte(); e != io.EOF {
			err = fmt.Errorf("%w: bytes after the frame", protocol.ErrMalformed)
		}
	}
	if err != nil {
		code := protocol.AckCodeFor(err)
		if code == protocol.AckUnavailable {
			code = protocol.AckMalformed // cut short: it will not grow at the relay
		}
		return rejected(code, "frame does not parse", err)
	}
	in := &inbound{ready: make(chan struct{}), remote: remote}
	ms.open(ctx, d, in)
	close(in.ready)
	if in.ack.Code == protocol.AckOK {
		ms.commit(ctx, in)
	}
	return in
}

// receiveDelivered marks our messages to the sender that a delivery
// receipt names delivered: those to them that went to a mailbox (sent),
// each named, so none shows delivered before the friend stored it.
func (ms *messenger) receiveDelivered(ctx context.Context, m *protocol.Message) error {
	ids, err := protocol.ParseDelivered(m.Body)
	if err != nil {
		return err
	}
	conv := store.DirectConversation(m.Sender)
	for _, id := range ids {
		x, err := ms.st.Message(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // a message we no longer have
		}
		if err != nil {
			return err
		}
		if x.Conversation != conv || x.Direction != store.Out || x.Status != store.StatusSent {
			continue // not ours to them, or past sent already
		}
		up, err := ms.st.UpdateStatus(ctx, id, store.StatusDelivered, "", "")
		if err != nil {
			return err
		}
		ms.events.publish(Event{Type: EventMessageStatus, Message: up})
	}
	return nil
}

// maxMailboxRelays is how many relays hold a node's mail: two, so that
// one relay down or blocked loses nothing, and no more, so that few
// operators see when its mail comes and goes.
const maxMailboxRelays = 2

// mailboxRelays are the relays the node takes mail at: the first
// maxMailboxRelays of Config.MailboxRelays, else of its bootstrap peers
// (relays serve a mailbox by default).
func mailboxRelays(cfg Config, boot []peer.AddrInfo) ([]peer.AddrInfo, error) {
	relays := boot
	if len(cfg.MailboxRelays) > 0 {
		var err error
		if relays, err = addrInfos(cfg.MailboxRelays); err != nil {
			return nil, err
		}
	}
	return relays[:min(len(relays), maxMailboxRelays)], nil
}

// recordRelays are the relays the own directory record lists: the
// bootstrap peers (slots for circuits) and the mailbox relays.
func recordRelays(cfg Config) []string {
	out := slices.Clone(cfg.Bootstrap)
	for _, a := range cfg.MailboxRelays {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// friendRelays are a friend's mailbox relays: those their record lists,
// then the relays in the circuit addresses of their card, each once.
func friendRelays(recRelays []string, card []peer.AddrInfo) []peer.AddrInfo {
	var out []peer.AddrInfo
	add := func(info peer.AddrInfo) {
		i := slices.IndexFunc(out, func(x peer.AddrInfo) bool { return x.ID == info.ID })
		if i < 0 {
			out = append(out, info)
			return
		}
		for _, a := range info.Addrs {
			if !slices.ContainsFunc(out[i].Addrs, a.Equal) {
				out[i].Addrs = append(out[i].Addrs, a)
			}
		}
	}
	for _, s := range recRelays {
		if infos, err := addrInfos([]string{s}); err == nil {
			for _, info := range infos {
				add(info)
			}
		}
	}
	for _, dev := range card {
		for _, a := range dev.Addrs {
			if info, ok := circuitRelay(a); ok {
				add(info)
			}
		}
	}
	return out
}

// circuitRelay is the relay of a circuit address
// (<relay addr>/p2p/<relay>/p2p-circuit...).
func circuitRelay(a ma.Multiaddr) (peer.AddrInfo, bool) {
	before, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_CIRCUIT })
	if len(before) == 0 || len(before) == len(a) {
		return peer.AddrInfo{}, false
	}
	info, err := peer.AddrInfoFromP2pAddr(before)
	if err != nil {
		return peer.AddrInfo{}, false
	}
	return *info, true
}
