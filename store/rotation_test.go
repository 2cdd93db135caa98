package store

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/protocoltest"
)

// newKeyStore creates a store for the fixture key named owner, closed at
// cleanup.
func newKeyStore(t *testing.T, owner *protocol.PrivateKey) (*Store, *testClock) {
	t.Helper()
	c := newClock()
	s, err := Create(t.TempDir(), testPass, owner, testOptions(c))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c
}

// openUnchecked opens the database of the (closed) store in dir without
// loading the identity: the attacker's view, who can write rows but only
// replay sealed values. Closed at cleanup.
func openUnchecked(t *testing.T, dir string) *Store {
	t.Helper()
	m, err := readMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := unlock(testPass, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := openDB(dir, m, keys, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // Close is idempotent
	return s
}

func mustRotation(t *testing.T, user protocol.ID, old, next *protocol.PrivateKey, seq uint64, now time.Time) *protocol.Rotation {
	t.Helper()
	r, err := protocol.NewRotation(user, old, next, seq, now)
	if err != nil {
		t.Fatalf("NewRotation(seq %d): %v", seq, err)
	}
	return r
}

func sameKey(a, b *protocol.PrivateKey) bool {
	return a != nil && b != nil && bytes.Equal(a.Bytes(), b.Bytes())
}

// wantIdentity checks the store's current identity key.
func wantIdentity(t *testing.T, s *Store, want *protocol.PrivateKey, name string) {
	t.Helper()
	id, err := s.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if !sameKey(id, want) {
		t.Fatalf("Identity is %s, want %s (%s)", id.ID(), want.ID(), name)
	}
}

// wantChain checks KeyChain link by link against the encoded rotations.
func wantChain(t *testing.T, s *Store, want ...*protocol.Rotation) {
	t.Helper()
	got, err := s.KeyChain(t.Context())
	if err != nil {
		t.Fatalf("KeyChain: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("KeyChain has %d links, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Marshal(), want[i].Marshal()) {
			t.Fatalf("KeyChain link %d differs from the rotation stored", i)
		}
	}
}

// wantRetired checks RetiredKeys: the keys (in key ID order) and their
// Until.
func wantRetired(t *testing.T, s *Store, want ...RetiredKey) {
	t.Helper()
	got, err := s.RetiredKeys(t.Context())
	if err != nil {
		t.Fatalf("RetiredKeys: %v", err)
	}
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b RetiredKey) int {
		ai, bi := a.Key.ID(), b.Key.ID()
		return bytes.Compare(ai[:], bi[:])
	})
	if len(got) != len(want) {
		t.Fatalf("RetiredKeys returned %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameKey(got[i].Key, want[i].Key) || !got[i].Until.Equal(want[i].Until) {
			t.Fatalf("retired key %d: %s until %v, want %s until %v", i, got[i].Key.ID(), got[i].Until, want[i].Key.ID(), want[i].Until)
		}
	}
}

// wantUser checks that the user ID and the genesis key never move.
func wantUser(t *testing.T, s *Store, genesis *protocol.PrivateKey) {
	t.Helper()
	if s.UserID() != genesis.ID() {
		t.Fatalf("UserID = %s, want %s", s.UserID(), genesis.ID())
	}
	if !s.GenesisKey().Equal(genesis.Public()) {
		t.Fatal("GenesisKey is not the genesis key")
	}
	info, err := ReadInfo(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if info.UserID != genesis.ID() || !info.PublicKey.Equal(genesis.Public()) {
		t.Fatal("metadata no longer names the genesis key")
	}
}

func TestRotateIdentity(t *testing.T) {
	t.Parallel()
	genesis := protocoltest.Key(t, "alice-2048")
	k2 := protocoltest.Key(t, "alice-3072")
	k3 := protocoltest.Key(t, "bob-3072")
	s, c := newKeyStore(t, genesis)
	ctx := t.Context()
	user := genesis.ID()

	wantChain(t, s)
	wantRetired(t, s)

	r1 := mustRotation(t, user, genesis, k2, 1, c.Now())
	until1 := c.Now().Add(24 * time.Hour)
	if err := s.RotateIdentity(ctx, k2, r1, until1); err != nil {
		t.Fatalf("first RotateIdentity: %v", err)
	}
	wantIdentity(t, s, k2, "after the first rotation")
	wantChain(t, s, r1)
	wantUser(t, s, genesis)
	wantRetired(t, s, RetiredKey{genesis, until1})

	c.Add(time.Minute)
	r2 := mustRotation(t, user, k2, k3, 2, c.Now())
	until2 := c.Now().Add(48 * time.Hour)
	if err := s.RotateIdentity(ctx, k3, r2, until2); err != nil {
		t.Fatalf("second RotateIdentity: %v", err)
	}
	wantIdentity(t, s, k3, "after the second rotation")
	wantChain(t, s, r1, r2)
	wantUser(t, s, genesis)
	retired := []RetiredKey{{genesis, until1}, {k2, until2}}
	wantRetired(t, s, retired...)

	// The chain as stored leads from the genesis key to the identity.
	chain, err := s.KeyChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	end, err := protocol.VerifyChain(user, s.GenesisKey(), chain)
	if err != nil || !end.Equal(k3.Public()) {
		t.Fatalf("VerifyChain of the stored chain: %v", err)
	}

	// Across Close and Open with the passphrase.
	s = reopen(t, s, c)
	wantIdentity(t, s, k3, "after reopen")
	wantChain(t, s, r1, r2)
	wantUser(t, s, genesis)
	wantRetired(t, s, retired...)

	// Purging: nothing before its time; a key goes at its Until exactly.
	for _, tc := range []struct {
		now  time.Time
		n    int
		left []RetiredKey
	}{
		{until1.Add(-time.Nanosecond), 0, retired},
		{until1, 1, retired[1:]},
		{until1.Add(time.Hour), 0, retired[1:]},
		{until2.Add(time.Hour), 1, nil},
		{until2.Add(2 * time.Hour), 0, nil},
	} {
		n, err := s.PurgeRetiredKeys(ctx, tc.now)
		if err != nil {
			t.Fatalf("PurgeRetiredKeys(%v): %v", tc.now, err)
		}
		if n != tc.n {
			t.Fatalf("PurgeRetiredKeys(%v) = %d, want %d", tc.now, n, tc.n)
		}
		wantRetired(t, s, tc.left...)
	}
	s = reopen(t, s, c)
	wantRetired(t, s)
	wantIdentity(t, s, k3, "after purging and reopening")
	wantChain(t, s, r1, r2)
}

func TestRotateIdentityRefused(t *testing.T) {
	t.Parallel()
	genesis := protocoltest.Key(t, "alice-2048")
	k2 := protocoltest.Key(t, "alice-3072")
	k3 := protocoltest.Key(t, "bob-3072")
	carol := protocoltest.Key(t, "carol-3072")
	other := protocoltest.Key(t, "bob-2048")
	s, c := newKeyStore(t, genesis)
	ctx := t.Context()
	user := genesis.ID()

	r1 := mustRotation(t, user, genesis, k2, 1, c.Now())
	until1 := c.Now().Add(time.Hour)
	if err := s.RotateIdentity(ctx, k2, r1, until1); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Minute)
	now := c.Now()
	later := now.Add(time.Hour)

	badOld := mustRotation(t, user, k2, k3, 2, now)
	badOld.OldSignature = flipped(badOld.OldSignature)
	badNew := mustRotation(t, user, k2, k3, 2, now)
	badNew.NewSignature = flipped(badNew.NewSignature)

	cases := []struct {
		name  string
		next  *protocol.PrivateKey
		r     *protocol.Rotation
		until time.Time
	}{
		{"not from the current key", k3, mustRotation(t, user, genesis, k3, 2, now), later},
		{"to another key than next", carol, mustRotation(t, user, k2, k3, 2, now), later},
		{"for another user", k3, mustRotation(t, other.ID(), k2, k3, 2, now), later},
		{"flipped old signature", k3, badOld, later},
		{"flipped new signature", k3, badNew, later},
		{"sequence not increasing", k3, mustRotation(t, user, k2, k3, 1, now), later},
		{"back to a key of the chain", genesis, mustRotation(t, user, k2, genesis, 2, now), later},
		{"nil rotation", k3, nil, later},
		{"nil next key", nil, mustRotation(t, user, k2, k3, 2, now), later},
		{"zero retire time", k3, mustRotation(t, user, k2, k3, 2, now), time.Time{}},
	}
	rows := [][]byte{identityKey(), keyChainKey(), retiredKey(genesis.ID())}
	raw := func() [][]byte {
		var vs [][]byte
		for _, k := range rows {
			vs = append(vs, rawGet(t, s, k))
		}
		return vs
	}
	before := raw()
	for _, tc := range cases {
		if err := s.RotateIdentity(ctx, tc.next, tc.r, tc.until); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: RotateIdentity: %v, want ErrInvalid", tc.name, err)
		}
		// Nothing written: the sealed rows are the same bytes (a rewrite
		// would have fresh nonces), and no new retired key appeared.
		if after := raw(); !slices.EqualFunc(before, after, bytes.Equal) {
			t.Fatalf("%s: a refused rotation rewrote rows", tc.name)
		}
		wantIdentity(t, s, k2, tc.name)
		wantChain(t, s, r1)
		wantRetired(t, s, RetiredKey{genesis, until1})
	}

	s = reopen(t, s, c)
	wantIdentity(t, s, k2, "after refusals and reopen")
	wantChain(t, s, r1)
	wantRetired(t, s, RetiredKey{genesis, until1})

	// The store still takes the right rotation.
	r2 := mustRotation(t, user, k2, k3, 2, now)
	if err := s.RotateIdentity(ctx, k3, r2, later); err != nil {
		t.Fatalf("valid rotation after refusals: %v", err)
	}
	wantIdentity(t, s, k3, "after the valid rotation")
	wantChain(t, s, r1, r2)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateIdentity(ctx, carol, mustRotation(t, user, k3, carol, 3, now), later); !errors.Is(err, ErrClosed) {
		t.Fatalf("RotateIdentity after Close: %v, want ErrClosed", err)
	}
}

// TestRotationTampered replays and edits the identity, key chain and
// retired key rows as an attacker who can write the database but has no
// sealing key; Open must refuse an identity that is not the end of the
// stored chain.
func TestRotationTampered(t *testing.T) {
	t.Parallel()
	genesis := protocoltest.Key(t, "alice-2048")
	k2 := protocoltest.Key(t, "alice-3072")
	k3 := protocoltest.Key(t, "bob-3072")
	s, c := newKeyStore(t, genesis)
	ctx := t.Context()
	dir := s.Dir()
	user := genesis.ID()

	if err := s.RotateIdentity(ctx, k2, mustRotation(t, user, genesis, k2, 1, c.Now()), c.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	midIdentity := rawGet(t, s, identityKey()) // sealed k2: genuine, but stale after the next rotation
	midChain := rawGet(t, s, keyChainKey())
	if err := s.RotateIdentity(ctx, k3, mustRotation(t, user, k2, k3, 2, c.Now()), c.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	curIdentity := rawGet(t, s, identityKey())
	curChain := rawGet(t, s, keyChainKey())

	// A flipped retired key is caught where it is read.
	rk := retiredKey(k2.ID())
	v := rawGet(t, s, rk)
	rawSet(t, s, rk, flipped(v))
	_, err := s.RetiredKeys(ctx)
	wantTampered(t, "RetiredKeys with a flipped row", err, rowRetired)
	_, err = s.PurgeRetiredKeys(ctx, c.Now().Add(24*time.Hour))
	wantTampered(t, "PurgeRetiredKeys with a flipped row", err, rowRetired)
	rawSet(t, s, rk, v)
	wantRetired(t, s, RetiredKey{genesis, c.Now().Add(time.Hour)}, RetiredKey{k2, c.Now().Add(time.Hour)})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Each case edits the closed database, expects Open to fail with
	// ErrTampered on the given row kind, then puts the rows back.
	cases := []struct {
		name string
		edit func(raw *Store)
		kind string
	}{
		{"identity rolled back to a middle key of the chain", func(raw *Store) {
			rawSet(t, raw, identityKey(), midIdentity)
		}, rowIdentity},
		{"chain rolled back one link under the newest identity", func(raw *Store) {
			rawSet(t, raw, keyChainKey(), midChain)
		}, rowIdentity},
		{"chain deleted under a rotated identity", func(raw *Store) {
			rawDelete(t, raw, keyChainKey())
		}, rowIdentity},
		{"chain row flipped", func(raw *Store) {
			rawSet(t, raw, keyChainKey(), flipped(curChain))
		}, rowKeyChain},
		{"chain row moved under the identity key", func(raw *Store) {
			rawSet(t, raw, identityKey(), curChain)
		}, rowIdentity},
		{"validly sealed identity outside the chain", func(raw *Store) {
			// Not something an attacker can write (it needs the secrets
			// key): a writer bug, which Open must still refuse.
			carol := protocoltest.Key(t, "carol-3072")
			der := carol.Bytes()
			plain := append(append([]byte{}, user[:]...), der...)
			rawSet(t, raw, identityKey(), raw.secrets.seal(identityKey(), plain))
		}, rowIdentity},
	}
	for _, tc := range cases {
		raw := openUnchecked(t, dir)
		tc.edit(raw)
		if err := raw.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, testPass, testOptions(c))
		if err == nil {
			s.Close()
		}
		wantTampered(t, tc.name+": Open", err, tc.kind)

		raw = openUnchecked(t, dir)
		rawSet(t, raw, identityKey(), curIdentity)
		rawSet(t, raw, keyChainKey(), curChain)
		if err := raw.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// Restored, the store opens on the newest key.
	s = openTest(t, dir, c)
	wantIdentity(t, s, k3, "after restoring the rows")
	chain, err := s.KeyChain(ctx)
	if err != nil || len(chain) != 2 {
		t.Fatalf("KeyChain after restore: %d links, %v", len(chain), err)
	}
}

// TestRotateIdentityConcurrent races rotations from the same key to
// different keys: exactly one wins (the others lose the badger conflict,
// are run again, and no longer chain), and the store ends on its key.
func TestRotateIdentityConcurrent(t *testing.T) {
	t.Parallel()
	genesis := protocoltest.Key(t, "alice-2048")
	s, c := newKeyStore(t, genesis)
	ctx := t.Context()
	nexts := []*protocol.PrivateKey{
		protocoltest.Key(t, "alice-3072"),
		protocoltest.Key(t, "bob-3072"),
		protocoltest.Key(t, "carol-3072"),
	}
	rs := make([]*protocol.Rotation, len(nexts))
	for i, k := range nexts {
		rs[i] = mustRotation(t, genesis.ID(), genesis, k, 1, c.Now())
	}
	until := c.Now().Add(time.Hour)
	errs := make([]error, len(nexts))
	var wg sync.WaitGroup
	for i := range nexts {
		wg.Go(func() { errs[i] = s.RotateIdentity(ctx, nexts[i], rs[i], until) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			t.Fatalf("rotations %d and %d both succeeded", winner, i)
		case !errors.Is(err, ErrInvalid):
			t.Fatalf("losing rotation %d: %v, want ErrInvalid", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no rotation succeeded: %v", errs)
	}
	wantIdentity(t, s, nexts[winner], "after the race")
	wantChain(t, s, rs[winner])
	wantRetired(t, s, RetiredKey{genesis, until})
	s = reopen(t, s, c)
	wantIdentity(t, s, nexts[winner], "after the race and reopen")
	wantChain(t, s, rs[winner])
}
