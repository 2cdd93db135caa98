package node

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// TestShortInvite: B adds A from A's short invite: B's node fetches A's
// card from A's device and sends the request; they become friends and
// talk. The link is a small fraction of the card link, which still works.
func TestShortInvite(t *testing.T) {
	ctx := context.Background()
	a, b, ma, mb := twoStrangers(t)
	if !protocol.IsInviteURI(ma.ShortInvite) {
		t.Fatalf("short invite %q", ma.ShortInvite)
	}
	t.Logf("invite link: short %d characters, card link %d characters", len(ma.ShortInvite), len(ma.Invite))
	if len(ma.ShortInvite) > 200 || len(ma.ShortInvite)*8 > len(ma.Invite) {
		t.Fatalf("short invite of %d characters (card link %d)", len(ma.ShortInvite), len(ma.Invite))
	}
	f, err := b.AddFriend(ctx, ma.ShortInvite)
	if err != nil {
		t.Fatal(err)
	}
	if f.UserID != ma.UserID || f.Name != "Alice" || f.Status != store.FriendPendingOut || f.Card == "" {
		t.Fatalf("AddFriend(short invite) = %+v", f.Friend)
	}
	waitStatus(t, a, mb.UserID, store.FriendPendingIn)
	if _, err := a.AcceptFriend(ctx, mb.UserID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, ma.UserID, store.FriendAccepted)
	if _, err := b.Send(ctx, ma.UserID, "found you"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the message arrives", func() bool { return len(convHistory(t, a, mb.UserID)) == 1 })

	// The card link still works, and the own short invite is refused.
	c := startNode(t, testConfig(t, "carol-2048"), "Carol")
	if f, err := c.AddFriend(ctx, ma.Invite); err != nil || f.UserID != ma.UserID {
		t.Fatalf("AddFriend(card link) = %+v, %v", f.Friend, err)
	}
	if _, err := a.AddFriend(ctx, ma.ShortInvite); !isErr(err, ErrInvalid) {
		t.Fatalf("AddFriend of the own short invite: %v, want ErrInvalid", err)
	}
	for _, bad := range []string{"parley:invite/", "parley:invite/AAAA", ma.ShortInvite[:len(ma.ShortInvite)-3]} {
		if _, err := c.AddFriend(ctx, bad); !isErr(err, ErrBadInvite) {
			t.Fatalf("AddFriend(%q): %v, want ErrBadInvite", bad, err)
		}
	}
}

// TestShortInviteWrongSecret: a wrong secret gets nothing, and a peer
// that keeps guessing is throttled, right secret or not.
func TestShortInviteWrongSecret(t *testing.T) {
	ctx := context.Background()
	a, b, ma, _ := twoStrangers(t)
	inv, err := protocol.ParseInviteURI(ma.ShortInvite)
	if err != nil {
		t.Fatal(err)
	}
	wrong := *inv
	wrong.Secret[0] ^= 1
	if _, err := b.AddFriend(ctx, wrong.URI()); !isErr(err, ErrInviteRefused) {
		t.Fatalf("AddFriend with a wrong secret: %v, want ErrInviteRefused", err)
	}
	other := *inv
	other.UserID = meOf(t, b).UserID // another user's ID with A's secret
	other.UserID[0] ^= 1
	if _, err := b.AddFriend(ctx, other.URI()); !isErr(err, ErrInviteRefused) {
		t.Fatalf("AddFriend naming another user: %v, want ErrInviteRefused", err)
	}
	for _, n := range []*Node{a, b} {
		if fs, err := n.Friends(ctx); err != nil || len(fs) != 0 {
			t.Fatalf("friends after refused invites: %+v, %v", fs, err)
		}
	}
	// Guessing on: past the limit every answer is "busy", the right
	// secret's too. (AddFriend would then try the directory.)
	for range cardBurst {
		unlockedOf(t, b).invites.fetch(ctx, &wrong)
	}
	if _, err := unlockedOf(t, b).invites.fetch(ctx, inv); !isErr(err, errCardUnreachable) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("card fetch after %d guesses: %v, want busy", cardBurst+2, err)
	}

	// Guesses from many peers: once refusedBurst were refused in a
	// window, every peer is told "busy", with the right secret too.
	c := startNode(t, testConfig(t, "carol-2048"), "Carol")
	uc := unlockedOf(t, c)
	if _, err := uc.invites.fetch(ctx, inv); err != nil {
		t.Fatalf("a fresh peer with the right secret: %v", err)
	}
	ua := unlockedOf(t, a)
	for range refusedBurst {
		ua.invites.refused.admit(struct{}{}, ua.cfg.Now())
	}
	if _, err := uc.invites.fetch(ctx, inv); !isErr(err, errCardUnreachable) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("card fetch after %d refusals from all peers: %v, want busy", refusedBurst, err)
	}
}

// TestShortInviteHostileDevice: a device that answers with a card that is
// not the invite's user's (another user's valid card, or garbage) adds
// nobody.
func TestShortInviteHostileDevice(t *testing.T) {
	ctx := context.Background()
	a, b, ma, _ := twoStrangers(t)
	carol := startNode(t, testConfig(t, "carol-2048"), "Carol")
	carolCard, err := protocol.ParseCardURI(meOf(t, carol).Invite)
	if err != nil {
		t.Fatal(err)
	}
	for name, answer := range map[string][]byte{
		"another user's card": carolCard.Marshal(),
		"garbage":             []byte("not a card at all"),
	} {
		t.Run(name, func(t *testing.T) {
			h, err := libp2p.New(
				libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
				libp2p.Security(noise.ID, noise.New),
				libp2p.Transport(tcp.NewTCPTransport),
				libp2p.DisableMetrics(),
			)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			h.SetStreamHandler(cardProtocol, func(s network.Stream) {
				defer s.Close()
				if _, err := protocol.ReadCardRequest(bufio.NewReader(s)); err != nil {
					s.Reset()
					return
				}
				protocol.WriteCardResponse(s, protocol.CardOK, answer)
			})
			var addrs [][]byte
			for _, a := range h.Addrs()[:1] {
				addrs = append(addrs, a.Bytes())
			}
			// A's user ID and secret, at the hostile device.
			real, err := protocol.ParseInviteURI(ma.ShortInvite)
			if err != nil {
				t.Fatal(err)
			}
			inv, err := protocol.NewInvite(ma.UserID, real.Secret, []byte(h.ID()), addrs)
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.AddFriend(ctx, inv.URI())
			if !isErr(err, ErrInviteRefused) {
				t.Fatalf("AddFriend from a hostile device: %v, want ErrInviteRefused", err)
			}
			if strings.Contains(err.Error(), string(answer)) {
				t.Fatalf("error repeats the device's answer: %v", err)
			}
			if fs, _ := b.Friends(ctx); len(fs) != 0 {
				t.Fatalf("B added %+v", fs)
			}
		})
	}
	if fs, _ := a.Friends(ctx); len(fs) != 0 {
		t.Fatalf("A has friends: %+v", fs)
	}
}

// TestShortInviteLength: at the default key size (RSA-3072) the short
// invite is a tenth of the card link.
func TestShortInviteLength(t *testing.T) {
	me := meOf(t, startNode(t, testConfig(t, "alice-3072"), "Alice"))
	t.Logf("RSA-3072: short invite %d characters, card link %d characters", len(me.ShortInvite), len(me.Invite))
	if len(me.ShortInvite) > 200 || len(me.ShortInvite)*10 > len(me.Invite) {
		t.Fatalf("short invite of %d characters, card link %d", len(me.ShortInvite), len(me.Invite))
	}
}

// TestShortInviteDirectoryFallback: when the invite's device does not
// answer, B's node finds A's record in the directory and adds A from it.
func TestShortInviteDirectoryFallback(t *testing.T) {
	ctx := context.Background()
	relay := startRelays(t, 1)[0]
	a := startNode(t, dirConfig(t, fixtureKey(t, "alice-2048"), relay.Addrs()[0]), "Alice")
	b := startNode(t, dirConfig(t, fixtureKey(t, "bob-2048"), relay.Addrs()[0]), "Bob")
	// Both in the DHT: Alice's record there, Bob able to look it up.
	waitPublished(t, a)
	waitPublished(t, b)
	ma, mb := meOf(t, a), meOf(t, b)
	real, err := protocol.ParseInviteURI(ma.ShortInvite)
	if err != nil {
		t.Fatal(err)
	}
	// A device nobody runs, at an address where nothing listens.
	ghost, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	ghostID := ghost.ID()
	ghost.Close()
	dead, err := protocol.NewInvite(ma.UserID, real.Secret, []byte(ghostID), real.Addrs[:1])
	if err != nil {
		t.Fatal(err)
	}
	f, err := b.AddFriend(ctx, dead.URI())
	if err != nil {
		t.Fatal(err)
	}
	if f.UserID != ma.UserID || f.Name != "Alice" || f.Status != store.FriendPendingOut || len(f.Record) == 0 {
		t.Fatalf("AddFriend through the directory = %+v", f.Friend)
	}
	waitStatus(t, a, mb.UserID, store.FriendPendingIn)
}
