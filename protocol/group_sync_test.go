package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestGroupSyncRequest(t *testing.T) {
	f := newGroupFixture(t)
	chains := groupMembersChains(t, f)
	a, b := f.alice.ID(), f.bob.ID()
	responder := []byte("responder peer")
	wants := []GroupSyncWant{{Sender: a, Chain: chains[a][a].ID(), From: 3}}
	now := goldenNow
	r, err := chains[b][b].SyncRequest(responder, wants, now)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteGroupSyncRequest(&buf, r); err != nil {
		t.Fatal(err)
	}
	got, err := ReadGroupSyncRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	// Alice answers with the public part of bob's chain, as she holds it.
	bobs := chains[b][a].Public()
	if err := bobs.VerifySync(got, responder, now); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	tampered := *got
	tampered.Wants = []GroupSyncWant{{Sender: a, Chain: chains[a][a].ID(), From: 0}}
	for _, tc := range []struct {
		name string
		p    ChainPublic
		r    *GroupSyncRequest
		to   []byte
		now  time.Time
		want error
	}{
		{"tampered", bobs, &tampered, responder, now, ErrAuth},
		{"for another responder", bobs, got, []byte("someone else"), now, ErrNotForMe},
		{"checked with carol's chain", chains[f.carol.ID()][a].Public(), got, responder, now, ErrGroupWrongSender},
		{"stale", bobs, got, responder, now.Add(30 * 24 * time.Hour), ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.VerifySync(tc.r, tc.to, tc.now); !errors.Is(err, tc.want) {
				t.Fatalf("VerifySync = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := chains[a][b].SyncRequest(responder, wants, now); !errors.Is(err, ErrGroupWrongSender) {
		t.Fatalf("a request signed with a received chain = %v, want ErrGroupWrongSender", err)
	}

	// A response carries messages that parse; each is opened by the
	// receiver as any other.
	m, _, err := chains[a][a].Seal(KindText, []byte("missed"), now)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := WriteGroupSyncResponse(&buf, [][]byte{m.Marshal()}); err != nil {
		t.Fatal(err)
	}
	msgs, err := ReadGroupSyncResponse(bufio.NewReader(&buf))
	if err != nil || len(msgs) != 1 {
		t.Fatalf("response: %d messages, %v", len(msgs), err)
	}
	if p, _, err := chains[a][b].Open(msgs[0]); err != nil || string(p.Body) != "missed" {
		t.Fatalf("opening a synced message: %v", err)
	}
	buf.Reset()
	if err := WriteGroupSyncResponse(&buf, [][]byte{[]byte("junk")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGroupSyncResponse(bufio.NewReader(&buf)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a response with junk = %v, want ErrMalformed", err)
	}
}
