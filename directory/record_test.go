package directory

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/pb"
)

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	alice := key(t, "alice-2048")
	in := input(t, alice, 7)
	r := mustRecord(t, alice, in, t0.Add(500*time.Millisecond))
	b := r.Marshal()
	got, err := VerifyRecord(b, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("VerifyRecord: %v", err)
	}
	if !bytes.Equal(got.Marshal(), b) || got.UserID() != alice.ID() || got.Name() != in.Name ||
		!got.Key().Equal(alice.Public()) || !got.Genesis().Equal(alice.Public()) || len(got.Chain()) != 0 ||
		got.Seq() != 7 || !got.IssuedAt().Equal(t0) || !got.ExpiresAt().Equal(t0.Add(24*time.Hour)) ||
		len(got.Devices()) != 2 || got.Devices()[1].Peer != in.Devices[1].Peer ||
		len(got.Relays()) != 2 || got.Relays()[0] != testRelays[0] ||
		got.Prekey() == nil || got.Prekey().ID != in.Prekey.ID || got.Fingerprint() != alice.ID().Fingerprint() {
		t.Fatalf("round trip changed the record")
	}
	if len(got.Keys()) != 1 || !got.HasKey(alice.ID()) || got.HasKey(key(t, "bob-2048").ID()) {
		t.Fatal("Keys/HasKey of a record without a chain")
	}
	if rc := got.Recipient(t0); rc.UserID != alice.ID() || !rc.Key.Equal(alice.Public()) || rc.Prekey == nil {
		t.Fatal("Recipient of the record")
	}
	if err := (Validator{Now: func() time.Time { return t0 }}).Validate(Key(alice.ID()), b); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	// The minimal record: no devices, relays or prekey.
	bare := mustRecord(t, alice, RecordInput{Name: "A", Lifetime: time.Second}, t0)
	if _, err := VerifyRecord(bare.Marshal(), t0); err != nil {
		t.Fatalf("bare record: %v", err)
	}
	// The zero Validator reads the real clock.
	now := mustRecord(t, alice, RecordInput{Name: "A", Lifetime: time.Hour}, time.Now())
	if err := (Validator{}).Validate(Key(alice.ID()), now.Marshal()); err != nil {
		t.Fatalf("zero Validator: %v", err)
	}
}

// After rotations the record is signed by the current key, carries the
// chain, and the user ID stays the genesis key's.
func TestRotatedRecord(t *testing.T) {
	t.Parallel()
	genesis := key(t, "alice-2048")
	next := []*protocol.PrivateKey{key(t, "alice-3072"), key(t, "bob-2048"), key(t, "carol-2048")}
	for n := 1; n <= 3; n++ {
		r, chain := rotated(t, genesis, 10, next[:n]...)
		got, err := VerifyRecord(r.Marshal(), t0)
		if err != nil {
			t.Fatalf("%d links: %v", n, err)
		}
		cur := next[n-1]
		if got.UserID() != genesis.ID() || !got.Key().Equal(cur.Public()) || !got.Genesis().Equal(genesis.Public()) ||
			len(got.Chain()) != n || !bytes.Equal(got.Chain()[n-1].Marshal(), chain[n-1].Marshal()) ||
			got.Fingerprint() != genesis.ID().Fingerprint() {
			t.Fatalf("%d links: fields of the rotated record", n)
		}
		if err := (Validator{Now: func() time.Time { return t0 }}).Validate(Key(genesis.ID()), r.Marshal()); err != nil {
			t.Fatalf("%d links: Validate: %v", n, err)
		}
		checkErr(t, "rotated record under the current key's ID", (Validator{Now: func() time.Time { return t0 }}).Validate(Key(cur.ID()), r.Marshal()), ErrKeyMismatch)
		ks := got.Keys()
		if len(ks) != n+1 || !ks[0].Equal(genesis.Public()) || !ks[n].Equal(cur.Public()) {
			t.Fatalf("%d links: Keys", n)
		}
		for _, k := range append([]*protocol.PrivateKey{genesis}, next[:n]...) {
			if !got.HasKey(k.ID()) {
				t.Fatalf("%d links: HasKey(%s) = false", n, k.ID())
			}
		}
		if n < 3 && got.HasKey(next[2].ID()) {
			t.Fatalf("%d links: HasKey of a key not in the chain", n)
		}
	}
}

func TestRecordRefused(t *testing.T) {
	t.Parallel()
	alice, bob, carol := key(t, "alice-2048"), key(t, "bob-2048"), key(t, "carol-2048")
	r := mustRecord(t, alice, input(t, alice, 5), t0)
	rot, chain := rotated(t, alice, 5, bob, carol)
	other := rotate(t, alice.ID(), bob, key(t, "alice-3072"), 2) // a fork from bob
	foreignDevice := device(t, 3, bob.ID())
	stolenSig := device(t, 3, alice.ID())
	stolenSig.Peer = r.devices[0].Peer
	secp, _, err := crypto.GenerateSecp256k1Key(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	secpPeer, err := peer.IDFromPrivateKey(secp)
	if err != nil {
		t.Fatal(err)
	}
	secpSig, err := secp.Sign(deviceMessage(alice.ID()))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		b    []byte
		now  time.Time
		want []error
	}{
		"signed by bob":             {resigned(t, r, bob, func(*Record) {}), t0, []error{ErrBadSignature, protocol.ErrAuth}},
		"signature flipped":         {reencoded(t, r, func(m *pb.UserRecord) { m.Signature[9] ^= 1 }), t0, []error{ErrBadSignature, protocol.ErrAuth}},
		"bob's key, alice's user":   {resigned(t, r, bob, func(c *Record) { c.key = bob.Public() }), t0, []error{ErrBadChain, protocol.ErrAuth}},
		"seq raised, not re-signed": {reencoded(t, r, func(m *pb.UserRecord) { m.Seq++ }), t0, []error{ErrBadSignature}},
		"expired":                   {r.Marshal(), r.ExpiresAt(), []error{ErrExpired}},
		"expired long ago":          {r.Marshal(), r.ExpiresAt().Add(365 * 24 * time.Hour), []error{ErrExpired}},
		"issued in the future":      {r.Marshal(), t0.Add(-MaxFutureSkew - time.Second), []error{ErrFuture, protocol.ErrExpired}},
		"lifetime over 7 days": {resigned(t, r, alice, func(c *Record) { c.expiresAt = c.issuedAt.Add(MaxLifetime + time.Second) }),
			t0, []error{ErrLifetime}},
		"expires before issue": {resigned(t, r, alice, func(c *Record) { c.expiresAt = c.issuedAt }), t0, []error{ErrLifetime}},
		"chain order swapped": {resigned(t, rot, carol, func(c *Record) { c.chain[0], c.chain[1] = c.chain[1], c.chain[0] }),
			t0, []error{ErrBadChain, protocol.ErrAuth}},
		"chain link broken": {resigned(t, rot, carol, func(c *Record) {
			l := *c.chain[1]
			l.NewSignature = append([]byte(nil), l.NewSignature...)
			l.NewSignature[5] ^= 1
			c.chain[1] = &l
		}), t0, []error{ErrBadChain, protocol.ErrAuth}},
		"chain link dropped":      {resigned(t, rot, carol, func(c *Record) { c.chain = c.chain[1:] }), t0, []error{ErrBadChain}},
		"chain forked":            {resigned(t, rot, carol, func(c *Record) { c.chain[1] = other }), t0, []error{ErrBadChain}},
		"chain stripped":          {resigned(t, rot, carol, func(c *Record) { c.genesis, c.chain = nil, nil }), t0, []error{ErrBadChain}},
		"genesis of bob":          {resigned(t, rot, carol, func(c *Record) { c.genesis = bob.Public() }), t0, []error{ErrBadChain}},
		"signed by a retired key": {resigned(t, rot, bob, func(*Record) {}), t0, []error{ErrBadSignature}},
		"chain of another user": {resigned(t, rot, carol, func(c *Record) {
			c.userID = bob.ID()
			c.chain = chain
		}), t0, []error{ErrBadChain}},
		"device for another user":           {resigned(t, r, alice, func(c *Record) { c.devices[1] = foreignDevice }), t0, []error{ErrBadDevice, protocol.ErrAuth}},
		"device signed by another host key": {resigned(t, r, alice, func(c *Record) { c.devices[0] = stolenSig }), t0, []error{ErrBadDevice}},
		"device signature flipped": {resigned(t, r, alice, func(c *Record) {
			c.devices[0].Sig = append([]byte(nil), c.devices[0].Sig...)
			c.devices[0].Sig[0] ^= 1
		}), t0, []error{ErrBadDevice}},
		"device with a secp256k1 key":                {resigned(t, r, alice, func(c *Record) { c.devices[0] = Device{Peer: secpPeer, Sig: secpSig[:64]} }), t0, []error{ErrBadDevice}},
		"device listed twice":                        {resigned(t, r, alice, func(c *Record) { c.devices[1] = c.devices[0] }), t0, []error{ErrMalformed}},
		"prekey of bob":                              {resigned(t, r, alice, func(c *Record) { c.prekey = prekey(t, bob) }), t0, []error{ErrBadPrekey, protocol.ErrAuth}},
		"prekey of the genesis key after a rotation": {resigned(t, rot, carol, func(c *Record) { c.prekey = prekey(t, alice) }), t0, []error{ErrBadPrekey}},
		"weak key": {reencoded(t, r, func(m *pb.UserRecord) { m.PublicKey = publicDER(t, "weak-1024.pem") }), t0, []error{protocol.ErrKeySize}},
		"16384-bit key": {reencoded(t, r, func(m *pb.UserRecord) { m.PublicKey = publicDER(t, "huge-16384.pub.pem") }),
			t0, []error{protocol.ErrKeySize}},
		"weak genesis key":      {reencoded(t, rot, func(m *pb.UserRecord) { m.GenesisKey = publicDER(t, "weak-1024.pem") }), t0, []error{protocol.ErrKeySize}},
		"bad name":              {resigned(t, r, alice, func(c *Record) { c.name = " Alice" }), t0, []error{ErrMalformed}},
		"relay not a multiaddr": {resigned(t, r, alice, func(c *Record) { c.relays[0] = "/ip4/nope" }), t0, []error{ErrMalformed}},
		"relay not in canonical form": {resigned(t, r, alice, func(c *Record) { c.relays[0] = "/ip4/198.51.100.20/tcp/04001" }),
			t0, []error{ErrMalformed}},
		"too many relays": {resigned(t, r, alice, func(c *Record) {
			for len(c.relays) <= MaxRelays {
				c.relays = append(c.relays, testRelays[0])
			}
		}), t0, []error{ErrTooLarge}},
		"too many devices": {resigned(t, r, alice, func(c *Record) {
			for i := range MaxDevices - 1 {
				c.devices = append(c.devices, device(t, uint64(10+i), alice.ID()))
			}
		}), t0, []error{ErrTooLarge}},
		"version 2":       {reencoded(t, r, func(m *pb.UserRecord) { m.Version = 2 }), t0, []error{ErrMalformed}},
		"short user ID":   {reencoded(t, r, func(m *pb.UserRecord) { m.UserId = m.UserId[1:] }), t0, []error{ErrMalformed}},
		"short signature": {reencoded(t, r, func(m *pb.UserRecord) { m.Signature = m.Signature[:64] }), t0, []error{ErrMalformed}},
		"bad peer ID":     {reencoded(t, r, func(m *pb.UserRecord) { m.Devices[0].PeerId = []byte{1, 2, 3} }), t0, []error{ErrMalformed}},
		"short device signature": {reencoded(t, r, func(m *pb.UserRecord) { m.Devices[0].Signature = m.Devices[0].Signature[1:] }),
			t0, []error{ErrMalformed}},
		"genesis without chain": {reencoded(t, r, func(m *pb.UserRecord) { m.GenesisKey = bob.Public().Bytes() }), t0, []error{ErrMalformed}},
		"chain without genesis": {reencoded(t, rot, func(m *pb.UserRecord) { m.GenesisKey = nil }), t0, []error{ErrMalformed}},
		"oversized":             {make([]byte, MaxRecordSize+1), t0, []error{ErrTooLarge}},
	} {
		got, err := VerifyRecord(tc.b, tc.now)
		if testing.Verbose() {
			t.Logf("%s: %v", name, err)
		}
		if got != nil {
			t.Errorf("%s: VerifyRecord accepted the record", name)
			continue
		}
		for _, w := range tc.want {
			if !errorsIs(err, w) {
				t.Errorf("%s: %v, want %v", name, err, w)
			}
		}
		v := Validator{Now: func() time.Time { return tc.now }}
		if err := v.Validate(Key(alice.ID()), tc.b); err == nil {
			t.Errorf("%s: Validate accepted the record", name)
		}
	}
	// At the edges: accepted.
	for name, now := range map[string]time.Time{
		"last second":            r.ExpiresAt().Add(-time.Second),
		"issued 5 minutes ahead": t0.Add(-MaxFutureSkew),
	} {
		if _, err := VerifyRecord(r.Marshal(), now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	week := resigned(t, r, alice, func(c *Record) { c.expiresAt = c.issuedAt.Add(MaxLifetime) })
	if _, err := VerifyRecord(week, t0); err != nil {
		t.Errorf("lifetime of exactly 7 days: %v", err)
	}
}

// Every byte of a record matters: flipping any bit of any byte (one bit
// per byte, rotating) gets it refused.
func TestRecordTamperedAnywhere(t *testing.T) {
	t.Parallel()
	alice, bob := key(t, "alice-2048"), key(t, "bob-2048")
	r, _ := rotated(t, alice, 3, bob)
	b := r.Marshal()
	v := Validator{Now: func() time.Time { return t0 }}
	step := 1
	if testing.Short() {
		step = 7
	}
	for i := 0; i < len(b); i += step {
		c := bytes.Clone(b)
		c[i] ^= 1 << (i % 8)
		if err := v.Validate(Key(alice.ID()), c); err == nil {
			t.Fatalf("byte %d of %d flipped: accepted", i, len(b))
		}
	}
}

func TestRecordNonCanonical(t *testing.T) {
	t.Parallel()
	alice := key(t, "alice-2048")
	r := mustRecord(t, alice, input(t, alice, 5), t0)
	raw := r.Marshal()
	if _, err := VerifyRecord(raw, t0); err != nil {
		t.Fatal(err)
	}
	// The encoding of field 10 (seq = 5) inside raw.
	seqField := protowire.AppendVarint(protowire.AppendTag(nil, 10, protowire.VarintType), 5)
	at := bytes.Index(raw, seqField)
	if at < 0 {
		t.Fatal("seq field not found")
	}
	for name, b := range map[string][]byte{
		"unknown field": append(bytes.Clone(raw), protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)...),
		"unknown field in device": reencoded(t, r, func(m *pb.UserRecord) {
			m.Devices[0].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
		}),
		"unknown field in chain link": func() []byte {
			rot, _ := rotated(t, alice, 5, key(t, "bob-2048"))
			return reencoded(t, rot, func(m *pb.UserRecord) {
				m.Chain[0].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
			})
		}(),
		"unknown field in prekey": reencoded(t, r, func(m *pb.UserRecord) {
			m.Prekey.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
		}),
		"duplicate field":         append(bytes.Clone(raw), raw[:2]...),
		"seq repeated at the end": append(bytes.Clone(raw), seqField...),
		"non-minimal varint":      concat(raw[:at], protowire.AppendTag(nil, 10, protowire.VarintType), []byte{0x85, 0x00}, raw[at+len(seqField):]),
		"fields out of order":     concat(seqField, raw[:at], raw[at+len(seqField):]),
		"explicit default":        concat(raw[:at], protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.BytesType), 0), raw[at:]),
		"truncated":               raw[:len(raw)-1],
		"empty":                   {},
	} {
		if got, err := ParseRecord(b); !errorsIs(err, ErrMalformed) || got != nil {
			t.Errorf("%s: ParseRecord = %v, %v; want nil, ErrMalformed", name, got, err)
		}
	}
}

func TestNewRecordRejects(t *testing.T) {
	t.Parallel()
	alice, bob := key(t, "alice-2048"), key(t, "bob-2048")
	mod := func(f func(in *RecordInput)) RecordInput {
		in := input(t, alice, 1)
		f(&in)
		return in
	}
	many := func(n int) []Device {
		var ds []Device
		for i := range n {
			ds = append(ds, device(t, uint64(20+i), alice.ID()))
		}
		return ds
	}
	chain := []*protocol.Rotation{rotate(t, alice.ID(), alice, bob, 1)}
	for name, tc := range map[string]struct {
		signer protocol.Signer
		in     RecordInput
		want   error
	}{
		"no lifetime":            {alice, mod(func(in *RecordInput) { in.Lifetime = 0 }), ErrLifetime},
		"lifetime over 7 days":   {alice, mod(func(in *RecordInput) { in.Lifetime = MaxLifetime + time.Second }), ErrLifetime},
		"empty name":             {alice, mod(func(in *RecordInput) { in.Name = "" }), ErrMalformed},
		"bad relay":              {alice, mod(func(in *RecordInput) { in.Relays = []string{"nope"} }), ErrMalformed},
		"too many relays":        {alice, mod(func(in *RecordInput) { in.Relays = make([]string, MaxRelays+1) }), ErrMalformed},
		"too many devices":       {alice, mod(func(in *RecordInput) { in.Devices = many(MaxDevices + 1) }), ErrTooLarge},
		"device twice":           {alice, mod(func(in *RecordInput) { in.Devices = append(in.Devices, in.Devices[0]) }), ErrMalformed},
		"device of another user": {alice, mod(func(in *RecordInput) { in.Devices = []Device{device(t, 1, bob.ID())} }), ErrBadDevice},
		"prekey of another user": {alice, mod(func(in *RecordInput) { in.Prekey = prekey(t, bob) }), ErrBadPrekey},
		"signer not the genesis": {bob, mod(func(in *RecordInput) { in.Genesis = alice.Public() }), ErrBadChain},
		"chain without genesis":  {bob, mod(func(in *RecordInput) { in.Chain = chain }), ErrBadChain},
		"chain ends elsewhere":   {key(t, "carol-2048"), mod(func(in *RecordInput) { in.Genesis, in.Chain = alice.Public(), chain }), ErrBadChain},
		"signed by the old key":  {alice, mod(func(in *RecordInput) { in.Genesis, in.Chain = alice.Public(), chain }), ErrBadChain},
		"lying signer":           {lyingSigner{alice.Public(), bob}, input(t, alice, 1), ErrBadSignature},
	} {
		if r, err := NewRecord(tc.signer, tc.in, t0); !errorsIs(err, tc.want) || r != nil {
			t.Errorf("%s: NewRecord = %v, %v; want nil, %v", name, r, err, tc.want)
		}
	}
	// At the limits: accepted.
	in := mod(func(in *RecordInput) {
		in.Devices = many(MaxDevices)
		in.Lifetime = MaxLifetime
		in.Name = strings.Repeat("é", protocol.MaxNameSize/2)
		for len(in.Relays) < MaxRelays {
			in.Relays = append(in.Relays, testRelays[len(in.Relays)%2])
		}
	})
	r := mustRecord(t, alice, in, t0)
	if _, err := VerifyRecord(r.Marshal(), t0); err != nil {
		t.Fatalf("record at the limits: %v", err)
	}
	t.Logf("record at the limits (RSA-2048, %d devices, %d relays, prekey): %d bytes", MaxDevices, MaxRelays, len(r.Marshal()))
	// Relays are stored in their canonical text form.
	r = mustRecord(t, alice, mod(func(in *RecordInput) { in.Relays = []string{"/ip4/198.51.100.20/tcp/04001"} }), t0)
	if got := r.Relays(); len(got) != 1 || got[0] != "/ip4/198.51.100.20/tcp/4001" {
		t.Fatalf("relay stored as %q", got)
	}
}

// lyingSigner names one key and signs with another.
type lyingSigner struct {
	pub *protocol.PublicKey
	k   *protocol.PrivateKey
}

func (s lyingSigner) Public() *protocol.PublicKey { return s.pub }

func (s lyingSigner) Sign(label string, msg []byte) ([]byte, error) { return s.k.Sign(label, msg) }

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// publicDER returns the SubjectPublicKeyInfo of a fixture key file (private
// PKCS #8 or public PEM), bypassing the size checks.
func publicDER(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "protocol", "testdata", "keys", file))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s is not PEM", file)
	}
	if strings.HasSuffix(file, ".pub.pem") {
		return blk.Bytes
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.(*rsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
