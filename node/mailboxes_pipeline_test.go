package node

import (
	"testing"

	"github.com/parley-chat/parley/node/mailbox"
)

// Fifty messages queued for an offline friend go to the mailbox in
// pipelines of the outbox's window (32 + 18: two streams, not fifty),
// and reach the friend exactly once, in order.
func TestMailboxDepositPipelined(t *testing.T) {
	relay := startMailRelay(t, t.TempDir(), "")
	a, bID, cfgB := offlineMailPair(t, relay)

	sa := unlockedOf(t, a)
	sa.outbox.Hold(bID) // all fifty queued before the courier goes
	texts := numbered("piped", 50)
	sendAll(t, a, bID, texts)
	streams := relay.counter(t, "parley_mailbox_deposit_streams_total", "")
	sa.outbox.Rush(bID)
	waitDeposited(t, a, bID, len(texts))
	if got := relay.counter(t, "parley_mailbox_deposit_streams_total", "") - streams; got != 2 {
		t.Errorf("%v deposit streams for 50 messages, want 2 (windows of 32)", got)
	}
	if got := relay.counter(t, "parley_mailbox_deposits_total", "ok"); got != float64(len(texts)) {
		t.Errorf("%v deposits held, want %d", got, len(texts))
	}

	b := unlockNode(t, cfgB)
	checkMailDelivered(t, a, b, texts)
}

// A relay that holds only part of a pipeline (its rate limit refuses the
// rest): the held part is settled sent, the rest goes again, later, in
// order, until all fifty are held; the friend gets each exactly once, in
// order.
func TestMailboxDepositRateLimited(t *testing.T) {
	relay := startMailRelayWith(t, t.TempDir(), "", mailbox.Limits{DepositRate: 10, DepositBurst: 12})
	a, bID, cfgB := offlineMailPair(t, relay)

	sa := unlockedOf(t, a)
	sa.outbox.Hold(bID)
	texts := numbered("limited", 50)
	sendAll(t, a, bID, texts)
	sa.outbox.Rush(bID)
	waitDeposited(t, a, bID, len(texts))
	if got := relay.counter(t, "parley_mailbox_deposits_total", "rate-limited"); got < 1 {
		t.Errorf("no deposit was rate-limited: the test did not take the partial path")
	}
	if got := relay.counter(t, "parley_mailbox_deposits_total", "ok"); got != float64(len(texts)) {
		t.Errorf("%v deposits held, want %d", got, len(texts))
	}
	if got := sa.outbox.Stats().Deposited; got != uint64(len(texts)) {
		t.Errorf("outbox Stats().Deposited = %d, want %d", got, len(texts))
	}

	b := unlockNode(t, cfgB)
	checkMailDelivered(t, a, b, texts)
}
