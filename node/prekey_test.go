package node

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// clockedPair starts alice and bob, befriended, on one shared running
// clock, with a short prekey rotation period and acceptance window.
func clockedPair(t *testing.T) (a, b *Node, clk *testClock) {
	t.Helper()
	clk = newRunningClock()
	cfgA, cfgB := testConfig(t, "alice-2048"), testConfig(t, "bob-2048")
	for _, c := range []*Config{&cfgA, &cfgB} {
		c.Now = clk.Now
		c.PrekeyRotation = time.Hour
		c.MaxAge = 2 * time.Hour
		// These tests are about single envelopes sealed to prekeys (first
		// contact); in a session only the start uses the prekey.
		c.DisableSessions = true
	}
	a, b = startNode(t, cfgA, "Alice"), startNode(t, cfgB, "Bob")
	befriend(t, a, b)
	return a, b, clk
}

// ownPrekey is the prekey on n's invite card.
func ownPrekey(tb testing.TB, n *Node) *protocol.SignedPrekey {
	tb.Helper()
	c, err := protocol.ParseCardURI(meOf(tb, n).Invite)
	if err != nil {
		tb.Fatal(err)
	}
	if c.Prekey == nil {
		tb.Fatal("the invite card carries no prekey")
	}
	return c.Prekey
}

// storedPrekeyID is the prekey ID on the card n keeps for a friend, 0 if
// none.
func storedPrekeyID(n *Node, friend protocol.ID) uint64 {
	f, err := n.Friend(context.Background(), friend)
	if err != nil {
		return 0
	}
	c, err := protocol.ParseCardURI(f.Card)
	if err != nil || c.Prekey == nil {
		return 0
	}
	return c.Prekey.ID
}

// held sends text from a to b, but holds it in a's outbox until the test
// has read the envelope a sealed; then it lets it go.
func held(t *testing.T, a *Node, to protocol.ID, text string) *protocol.Envelope {
	t.Helper()
	sa := unlockedOf(t, a)
	sa.outbox.Hold(to)
	m, err := a.Send(context.Background(), to, text)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	e, err := sa.st.OutboxEntry(context.Background(), m.ID)
	if err != nil {
		t.Fatalf("the held message is not queued: %v", err)
	}
	env, err := protocol.ParseEnvelope(e.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	sa.outbox.Rush(to)
	return env
}

func TestPrekeyRotation(t *testing.T) {
	ctx := context.Background()
	a, b, clk := clockedPair(t)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	sb := unlockedOf(t, b)
	atk := newAttacker(t, b) // A's other device
	aliceKey := fixtureKey(t, "alice-2048")

	p1 := ownPrekey(t, b)
	if got := storedPrekeyID(a, bID); got != p1.ID {
		t.Fatalf("A keeps B's prekey %d, want %d", got, p1.ID)
	}
	env := held(t, a, bID, "to the first prekey")
	if env.Suite != protocol.SuiteRSAX25519 || env.PrekeyID != p1.ID {
		t.Fatalf("A sealed suite %s prekey %d, want rsa-x25519 and %d", env.Suite, env.PrekeyID, p1.ID)
	}
	waitFor(t, 10*time.Second, "the first message arrives", func() bool { return len(convHistory(t, b, aID)) == 1 })
	bCard, err := protocol.ParseCardURI(meOf(t, b).Invite)
	if err != nil {
		t.Fatal(err)
	}
	// Two envelopes to the first prekey, delivered later.
	late := atk.forge(t, aliceKey, bCard.Recipient(clk.Now()), protocol.KindText, "sealed before the rotation", clk.Now())
	tooLate := atk.forge(t, aliceKey, bCard.Recipient(clk.Now()), protocol.KindText, "sealed long before", clk.Now())

	// Nothing happens before the rotation is due.
	clk.Advance(30 * time.Minute)
	if err := sb.keys.ensurePrekey(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ownPrekey(t, b); got.ID != p1.ID {
		t.Fatalf("prekey replaced after half the rotation period: %d", got.ID)
	}

	clk.Advance(31 * time.Minute)
	if err := sb.keys.ensurePrekey(ctx); err != nil {
		t.Fatal(err)
	}
	p2 := ownPrekey(t, b)
	if p2.ID == p1.ID {
		t.Fatal("the prekey did not change after the rotation period")
	}
	r1, err := sb.st.Prekey(ctx, p1.ID)
	if err != nil {
		t.Fatalf("the old prekey is gone at once: %v", err)
	}
	if r1.Current() || r1.DeleteAt.IsZero() || !r1.DeleteAt.Equal(p1.NotAfter.Add(2*time.Hour)) {
		t.Fatalf("old prekey record: retired %v, delete at %v; want retired, deleted at %v",
			r1.RetiredAt, r1.DeleteAt, p1.NotAfter.Add(2*time.Hour))
	}
	if r2, err := sb.st.Prekey(ctx, p2.ID); err != nil || !r2.Current() {
		t.Fatalf("new prekey record: %+v, %v", r2, err)
	}

	// The retired prekey still opens what was sealed to it.
	hs := atk.open(t)
	hs.expect(late, nil, protocol.AckOK)
	hs.finish()

	// The friend gets the new card, and seals to the new prekey.
	waitFor(t, 10*time.Second, "A gets B's new card", func() bool { return storedPrekeyID(a, bID) == p2.ID })
	env = held(t, a, bID, "to the second prekey")
	if env.Suite != protocol.SuiteRSAX25519 || env.PrekeyID != p2.ID {
		t.Fatalf("after the rotation A sealed suite %s prekey %d, want rsa-x25519 and %d", env.Suite, env.PrekeyID, p2.ID)
	}
	want := []string{"to the first prekey", "sealed before the rotation", "to the second prekey"}
	waitFor(t, 10*time.Second, "everything arrives", func() bool { return len(convHistory(t, b, aID)) == len(want) })
	checkExactlyOnce(t, convHistory(t, b, aID), want)

	// Kept until MaxAge after its last valid instant, then purged.
	clk.Advance(r1.DeleteAt.Sub(clk.Now()) - time.Minute)
	if err := sb.keys.ensurePrekey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.st.Prekey(ctx, p1.ID); err != nil {
		t.Fatalf("the old prekey is purged a minute early: %v", err)
	}
	clk.Advance(2 * time.Minute)
	if err := sb.keys.ensurePrekey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.st.Prekey(ctx, p1.ID); !isErr(err, store.ErrNotFound) {
		t.Fatalf("the old prekey after its deletion time: %v, want ErrNotFound", err)
	}
	if _, err := sb.keys.prekeyByID(p1.ID); !isErr(err, protocol.ErrUnknownPrekey) {
		t.Fatalf("prekeyByID of a purged prekey: %v", err)
	}
	hs = atk.open(t)
	hs.expect(tooLate, nil, protocol.AckStale)
	hs.finish()

	// By now the second prekey was rotated out as well; A follows.
	p3 := ownPrekey(t, b)
	if p3.ID == p2.ID || p3.ID == p1.ID {
		t.Fatal("no rotation after a day")
	}
	waitFor(t, 10*time.Second, "A gets B's third card", func() bool { return storedPrekeyID(a, bID) == p3.ID })
	if env := held(t, a, bID, "to the third prekey"); env.PrekeyID != p3.ID {
		t.Fatalf("sealed to prekey %d, want %d", env.PrekeyID, p3.ID)
	}
	waitFor(t, 10*time.Second, "the last message arrives", func() bool { return len(convHistory(t, b, aID)) == 4 })
	waitFor(t, 10*time.Second, "A sees everything delivered", func() bool {
		return allStatus(convHistory(t, a, bID), store.StatusDelivered)
	})
}

// A friend's card that has gone unrenewed past its prekey's validity (the
// friend was away while its prekey rotated) must not stop the sender:
// Send falls back to suite 1 until a new card arrives.
func TestSendAfterFriendPrekeyExpired(t *testing.T) {
	ctx := context.Background()
	a, b, clk := clockedPair(t)
	aID, bID := meOf(t, a).UserID, meOf(t, b).UserID
	p := ownPrekey(t, b)
	clk.Advance(p.NotAfter.Sub(clk.Now()) + time.Minute) // B has not rotated yet

	env := held(t, a, bID, "after the prekey expired")
	if env.Suite != protocol.SuiteRSA {
		t.Fatalf("sealed with suite %s to an expired prekey, want rsa", env.Suite)
	}
	waitFor(t, 10*time.Second, "the message arrives", func() bool { return len(convHistory(t, b, aID)) == 1 })
	// The read receipt goes back the same way.
	if err := b.MarkRead(ctx, aID, protocol.MsgID{}); err != nil {
		t.Fatalf("MarkRead: %v", err)
	}
	waitFor(t, 10*time.Second, "A sees it read", func() bool {
		return allStatus(convHistory(t, a, bID), store.StatusRead)
	})
}
