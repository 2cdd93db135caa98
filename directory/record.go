package directory

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/protocol/pb"
)

// Record limits and labels.
const (
	// Namespace is the DHT namespace of user records: keys are
	// "/parley-user/<user-id>".
	Namespace = "parley-user"
	// LabelRecord is the domain label of record signatures.
	LabelRecord = "parley/v1/dir"
	// RecordVersion is the record format version.
	RecordVersion = 1
	// MaxRecordSize caps an encoded record.
	MaxRecordSize = 16 << 10
	// MaxLifetime caps expires-at minus issued-at.
	MaxLifetime = 7 * 24 * time.Hour
	// MaxFutureSkew is how far after now a record's issue time may be.
	MaxFutureSkew = 5 * time.Minute
	// MaxDevices and MaxRelays cap the lists a record carries; MaxRelaySize
	// caps each relay multiaddr's text form.
	MaxDevices   = 8
	MaxRelays    = 16
	MaxRelaySize = protocol.MaxAddrSize
)

// Record is a user's signed directory entry. It is immutable: build one
// with NewRecord, or decode one with ParseRecord and check it with Verify.
// The signature, by the current key under "parley/v1/dir", covers
//
//	u8 version ‖ bytes(user_id) ‖ str(name) ‖ bytes(public_key) ‖
//	bytes(genesis_key, empty without a chain) ‖ u32 n ‖ bytes(rotation)×n ‖
//	u32 d ‖ (bytes(peer_id) ‖ bytes(device signature))×d ‖ u32 r ‖ str(relay)×r ‖
//	bytes(signed prekey, empty if none) ‖ u64 seq ‖ i64 issued_at ‖ i64 expires_at
//
// where rotation and signed prekey are their protobuf encodings (see
// package protocol for the canonical encoding rules).
type Record struct {
	userID    protocol.ID
	name      string
	key       *protocol.PublicKey // current
	genesis   *protocol.PublicKey // nil without a chain
	chain     []*protocol.Rotation
	devices   []Device
	relays    []string
	prekey    *protocol.SignedPrekey
	seq       uint64
	issuedAt  time.Time
	expiresAt time.Time
	signature []byte
	raw       []byte
}

// RecordInput is what a node puts in its record. Genesis and Chain are nil
// for a user who never rotated; after rotations Genesis is the first key
// (whose ID is the user ID) and Chain leads from it to the signer's key.
type RecordInput struct {
	Name     string
	Genesis  *protocol.PublicKey
	Chain    []*protocol.Rotation
	Devices  []Device // from SignDevice, one per device
	Relays   []string // multiaddrs; stored in their canonical text form
	Prekey   *protocol.SignedPrekey
	Seq      uint64        // must grow with every record the user publishes
	Lifetime time.Duration // 1s to MaxLifetime
}

// NewRecord builds and signs a record with the user's current key, issued
// at now (whole seconds) and expiring Lifetime later. It checks what Verify
// checks, so a record it returns passes Verify until it expires.
func NewRecord(signer protocol.Signer, in RecordInput, now time.Time) (*Record, error) {
	key := signer.Public()
	r := &Record{
		userID:   key.ID(),
		name:     in.Name,
		key:      key,
		devices:  append([]Device(nil), in.Devices...),
		prekey:   in.Prekey,
		seq:      in.Seq,
		issuedAt: time.Unix(now.Unix(), 0),
	}
	if in.Lifetime < time.Second || in.Lifetime > MaxLifetime {
		return nil, fmt.Errorf("%w: lifetime %v (want 1s to %v)", ErrLifetime, in.Lifetime, MaxLifetime)
	}
	r.expiresAt = r.issuedAt.Add(in.Lifetime.Truncate(time.Second))
	switch {
	case len(in.Chain) > 0 && in.Genesis == nil:
		return nil, fmt.Errorf("%w: %w: chain without a genesis key", ErrBadChain, ErrMalformed)
	case len(in.Chain) > 0:
		r.userID, r.genesis, r.chain = in.Genesis.ID(), in.Genesis, append([]*protocol.Rotation(nil), in.Chain...)
	case in.Genesis != nil && !in.Genesis.Equal(key):
		return nil, fmt.Errorf("%w: %w: signer is not the genesis key and there is no chain", ErrBadChain, protocol.ErrAuth)
	}
	for _, a := range in.Relays {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: relay address %q: %v", ErrMalformed, a, err)
		}
		r.relays = append(r.relays, m.String())
	}
	if err := r.checkForm(); err != nil {
		return nil, err
	}
	if err := r.checkKeys(); err != nil {
		return nil, err
	}
	sig, err := signer.Sign(LabelRecord, r.canonical())
	if err != nil {
		return nil, fmt.Errorf("signing record: %w", err)
	}
	r.signature = sig
	if err := r.checkSignature(); err != nil {
		return nil, err // a Signer whose signatures do not match its key
	}
	r.raw = marshal(r.toPB())
	if len(r.raw) > MaxRecordSize {
		return nil, fmt.Errorf("%w: record of %d bytes (max %d)", ErrTooLarge, len(r.raw), MaxRecordSize)
	}
	return r, nil
}

// checkForm checks the fields that need no key: name, list sizes,
// duplicates, address form and the lifetime.
func (r *Record) checkForm() error {
	if err := protocol.CheckName(r.name); err != nil {
		return err
	}
	if len(r.devices) > MaxDevices || len(r.relays) > MaxRelays {
		return fmt.Errorf("%w: record lists %d devices and %d relays (max %d and %d)",
			ErrTooLarge, len(r.devices), len(r.relays), MaxDevices, MaxRelays)
	}
	seen := make(map[peer.ID]bool, len(r.devices))
	for _, d := range r.devices {
		if d.Peer == "" || len(d.Peer) > protocol.MaxDeviceSize || seen[d.Peer] {
			return fmt.Errorf("%w: device peer ID empty, too long or listed twice", ErrMalformed)
		}
		seen[d.Peer] = true
	}
	for _, a := range r.relays {
		if a == "" || len(a) > MaxRelaySize || !utf8.ValidString(a) {
			return fmt.Errorf("%w: relay address of %d bytes", ErrMalformed, len(a))
		}
	}
	if life := r.expiresAt.Sub(r.issuedAt); life <= 0 || life > MaxLifetime {
		return fmt.Errorf("%w: issued %s, expires %s", ErrLifetime,
			r.issuedAt.UTC().Format(time.RFC3339), r.expiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkKeys checks, without a clock, what binds the keys together: the
// current key follows from the user ID (ErrBadChain), the prekey is signed
// by it (ErrBadPrekey), each device signed the user ID (ErrBadDevice).
func (r *Record) checkKeys() error {
	if r.genesis == nil {
		if r.key.ID() != r.userID {
			return fmt.Errorf("%w: %w: key %s does not hash to user ID %s", ErrBadChain, protocol.ErrAuth, r.key, r.userID)
		}
	} else {
		cur, err := protocol.VerifyChain(r.userID, r.genesis, r.chain)
		if err != nil {
			return fmt.Errorf("record chain: %w", err)
		}
		if !cur.Equal(r.key) {
			return fmt.Errorf("%w: %w: chain ends at key %s, not the record key %s", ErrBadChain, protocol.ErrAuth, cur, r.key)
		}
	}
	if r.prekey != nil {
		if err := r.prekey.VerifySignature(r.key); err != nil {
			return fmt.Errorf("%w: %w", ErrBadPrekey, err)
		}
	}
	for _, d := range r.devices {
		if err := d.Verify(r.userID); err != nil {
			return err
		}
	}
	return nil
}

func (r *Record) checkSignature() error {
	if err := r.key.Verify(LabelRecord, r.canonical(), r.signature); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

func (r *Record) canonical() []byte {
	c := &canon{b: make([]byte, 0, 1024)}
	c.u8(RecordVersion)
	c.bytes(r.userID[:])
	c.str(r.name)
	c.bytes(r.key.Bytes())
	if r.genesis != nil {
		c.bytes(r.genesis.Bytes())
	} else {
		c.bytes(nil)
	}
	c.u32(uint32(len(r.chain)))
	for _, l := range r.chain {
		c.bytes(l.Marshal())
	}
	c.u32(uint32(len(r.devices)))
	for _, d := range r.devices {
		c.bytes([]byte(d.Peer))
		c.bytes(d.Sig)
	}
	c.u32(uint32(len(r.relays)))
	for _, a := range r.relays {
		c.str(a)
	}
	if r.prekey != nil {
		c.bytes(r.prekey.Marshal())
	} else {
		c.bytes(nil)
	}
	c.u64(r.seq)
	c.i64(r.issuedAt.Unix())
	c.i64(r.expiresAt.Unix())
	return c.b
}

func (r *Record) toPB() *pb.UserRecord {
	m := &pb.UserRecord{
		Version:   RecordVersion,
		UserId:    r.userID[:],
		Name:      r.name,
		PublicKey: r.key.Bytes(),
		Relays:    r.relays,
		Seq:       r.seq,
		IssuedAt:  r.issuedAt.Unix(),
		ExpiresAt: r.expiresAt.Unix(),
		Signature: r.signature,
	}
	if r.genesis != nil {
		m.GenesisKey = r.genesis.Bytes()
	}
	for _, l := range r.chain {
		var lm pb.Rotation
		if err := unmarshalCanonical(l.Marshal(), &lm); err != nil {
			panic(fmt.Sprintf("directory: re-reading a rotation: %v", err))
		}
		m.Chain = append(m.Chain, &lm)
	}
	for _, d := range r.devices {
		m.Devices = append(m.Devices, &pb.DeviceClaim{PeerId: []byte(d.Peer), Signature: d.Sig})
	}
	if r.prekey != nil {
		var pm pb.SignedPrekey
		if err := unmarshalCanonical(r.prekey.Marshal(), &pm); err != nil {
			panic(fmt.Sprintf("directory: re-reading a prekey: %v", err))
		}
		m.Prekey = &pm
	}
	return m
}

// Marshal returns the record's encoding (protobuf parley.v1.UserRecord,
// canonical): the value stored in the DHT.
func (r *Record) Marshal() []byte { return append([]byte(nil), r.raw...) }

// ParseRecord decodes a record and checks its form: size, canonical
// encoding (it re-encodes to the same bytes), version, field sizes, key
// sizes, name, peer IDs, multiaddrs and lifetime. It does not check keys,
// signatures or the clock: call Verify (or use Validator) before trusting
// anything in it.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("%w: record of %d bytes (max %d)", ErrTooLarge, len(b), MaxRecordSize)
	}
	var m pb.UserRecord
	if err := unmarshalCanonical(b, &m); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if m.GetVersion() != RecordVersion {
		return nil, fmt.Errorf("%w: record version %d", ErrMalformed, m.GetVersion())
	}
	uid, err := protocol.IDFromBytes(m.GetUserId())
	if err != nil {
		return nil, fmt.Errorf("record user ID: %w", err)
	}
	key, err := protocol.ParsePublicKey(m.GetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("record key: %w", err)
	}
	if n := len(m.GetSignature()); n < protocol.MinRSABits/8 || n > protocol.MaxRSABits/8 {
		return nil, fmt.Errorf("%w: record signature of %d bytes", ErrMalformed, n)
	}
	r := &Record{
		userID:    uid,
		name:      m.GetName(),
		key:       key,
		relays:    m.GetRelays(),
		seq:       m.GetSeq(),
		issuedAt:  time.Unix(m.GetIssuedAt(), 0),
		expiresAt: time.Unix(m.GetExpiresAt(), 0),
		signature: m.GetSignature(),
		raw:       append([]byte(nil), b...),
	}
	if err := r.parseChain(&m); err != nil {
		return nil, err
	}
	if len(m.GetDevices()) > MaxDevices || len(m.GetRelays()) > MaxRelays {
		return nil, fmt.Errorf("%w: record lists %d devices and %d relays (max %d and %d)",
			ErrTooLarge, len(m.GetDevices()), len(m.GetRelays()), MaxDevices, MaxRelays)
	}
	for i, dm := range m.GetDevices() {
		id, err := peer.IDFromBytes(dm.GetPeerId())
		if err != nil {
			return nil, fmt.Errorf("%w: device %d peer ID: %v", ErrMalformed, i, err)
		}
		if len(dm.GetSignature()) != deviceSigSize {
			return nil, fmt.Errorf("%w: device %d signature of %d bytes", ErrMalformed, i, len(dm.GetSignature()))
		}
		r.devices = append(r.devices, Device{Peer: id, Sig: dm.GetSignature()})
	}
	for _, a := range r.relays {
		// One spelling per address: the multiaddr's own text form.
		if addr, err := ma.NewMultiaddr(a); err != nil || addr.String() != a {
			return nil, fmt.Errorf("%w: relay address %q", ErrMalformed, a)
		}
	}
	if pm := m.GetPrekey(); pm != nil {
		if r.prekey, err = protocol.ParseSignedPrekey(marshal(pm)); err != nil {
			return nil, fmt.Errorf("record prekey: %w", err)
		}
	}
	if err := r.checkForm(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Record) parseChain(m *pb.UserRecord) error {
	switch {
	case len(m.GetChain()) == 0 && len(m.GetGenesisKey()) == 0:
		return nil
	case len(m.GetChain()) == 0 || len(m.GetGenesisKey()) == 0:
		return fmt.Errorf("%w: a genesis key needs a chain and a chain a genesis key", ErrMalformed)
	case len(m.GetChain()) > protocol.MaxChainLength:
		return fmt.Errorf("%w: %w: chain of %d rotations (max %d)", ErrBadChain, ErrTooLarge, len(m.GetChain()), protocol.MaxChainLength)
	}
	var err error
	if r.genesis, err = protocol.ParsePublicKey(m.GetGenesisKey()); err != nil {
		return fmt.Errorf("record genesis key: %w", err)
	}
	for i, lm := range m.GetChain() {
		l, err := protocol.ParseRotation(marshal(lm))
		if err != nil {
			return fmt.Errorf("record rotation %d: %w", i, err)
		}
		r.chain = append(r.chain, l)
	}
	return nil
}

// Verify checks everything a storing or reading peer must check before
// trusting r at now: not expired (ErrExpired) and not issued more than
// MaxFutureSkew ahead (ErrFuture), the record signature by the current key
// (ErrBadSignature), the current key follows from the user ID
// (ErrBadChain), the prekey signature (ErrBadPrekey) and each device
// signature (ErrBadDevice). The
// form checks (size, canonical encoding, key sizes, lifetime) were made by
// ParseRecord or NewRecord.
func (r *Record) Verify(now time.Time) error {
	if !now.Before(r.expiresAt) {
		return fmt.Errorf("%w: record expired at %s", ErrExpired, r.expiresAt.UTC().Format(time.RFC3339))
	}
	if r.issuedAt.After(now.Add(MaxFutureSkew)) {
		return fmt.Errorf("%w: issued at %s", ErrFuture, r.issuedAt.UTC().Format(time.RFC3339))
	}
	// Cheapest first: a record forged without the current key fails at its
	// own signature, before the chain's two verifications per link.
	if r.genesis == nil && r.key.ID() != r.userID {
		return fmt.Errorf("%w: %w: key %s does not hash to user ID %s", ErrBadChain, protocol.ErrAuth, r.key, r.userID)
	}
	if err := r.checkSignature(); err != nil {
		return err
	}
	return r.checkKeys()
}

// VerifyRecord is ParseRecord followed by Verify.
func VerifyRecord(b []byte, now time.Time) (*Record, error) {
	r, err := ParseRecord(b)
	if err != nil {
		return nil, err
	}
	if err := r.Verify(now); err != nil {
		return nil, err
	}
	return r, nil
}

// UserID returns the user's ID: the genesis key's ID, unchanged by rotation.
func (r *Record) UserID() protocol.ID { return r.userID }

// Name returns the display name (a label, not an identity).
func (r *Record) Name() string { return r.name }

// Key returns the user's current key: the one to encrypt to and the one
// that signs the user's envelopes.
func (r *Record) Key() *protocol.PublicKey { return r.key }

// Genesis returns the user's first key (whose ID is the user ID): Key for
// a user who never rotated.
func (r *Record) Genesis() *protocol.PublicKey {
	if r.genesis == nil {
		return r.key
	}
	return r.genesis
}

// Chain returns the rotations from Genesis to Key (nil if none).
func (r *Record) Chain() []*protocol.Rotation { return append([]*protocol.Rotation(nil), r.chain...) }

// Keys returns the user's keys in order, Genesis first and Key last.
func (r *Record) Keys() []*protocol.PublicKey { return protocol.ChainKeys(r.Genesis(), r.chain) }

// HasKey reports whether the key with ID id is one of Keys: for a verified
// record, whether a key pinned earlier leads to the current key through
// the record's chain.
func (r *Record) HasKey(id protocol.ID) bool {
	for _, k := range r.Keys() {
		if k.ID() == id {
			return true
		}
	}
	return false
}

// Devices returns the user's devices (copies).
func (r *Record) Devices() []Device {
	ds := make([]Device, len(r.devices))
	for i, d := range r.devices {
		ds[i] = Device{Peer: d.Peer, Sig: append([]byte(nil), d.Sig...)}
	}
	return ds
}

// HasDevice reports whether p is one of the record's devices.
func (r *Record) HasDevice(p peer.ID) bool {
	for _, d := range r.devices {
		if d.Peer == p {
			return true
		}
	}
	return false
}

// DevicePeers returns the peer IDs of the record's devices.
func (r *Record) DevicePeers() []peer.ID {
	out := make([]peer.ID, len(r.devices))
	for i, d := range r.devices {
		out[i] = d.Peer
	}
	return out
}

// Relays returns the relay multiaddrs, in text form.
func (r *Record) Relays() []string { return append([]string(nil), r.relays...) }

// Prekey returns the current signed prekey, or nil.
func (r *Record) Prekey() *protocol.SignedPrekey { return r.prekey }

// Seq returns the sequence number: among valid records, the highest wins.
func (r *Record) Seq() uint64 { return r.seq }

// IssuedAt returns when the record was signed.
func (r *Record) IssuedAt() time.Time { return r.issuedAt }

// ExpiresAt returns when the record stops being valid.
func (r *Record) ExpiresAt() time.Time { return r.expiresAt }

// Fingerprint returns the user ID in the grouped hex form people compare
// (protocol.ID.Fingerprint). It tells apart users who claim the same name
// and, like the user ID, does not change with key rotation.
func (r *Record) Fingerprint() string { return r.userID.Fingerprint() }

// Recipient returns the user as a Seal recipient at now: the current key,
// with the prekey if it is valid at now (suite 2), without it otherwise.
func (r *Record) Recipient(now time.Time) protocol.Recipient {
	if rc, err := protocol.NewRecipient(r.userID, r.key, r.prekey, now); err == nil {
		return rc
	}
	return protocol.Recipient{UserID: r.userID, Key: r.key}
}
