package protocol

import (
	"crypto/ed25519"
	"fmt"

	"github.com/parley-chat/parley/protocol/pb"
)

// MaxSessionStateSize caps one session's stored state (its skipped keys
// take most of it), and MaxPeerSessionsSize a PeerSessions blob.
const (
	MaxSessionStateSize = 512 + MaxSkippedKeys*80 + maxOldRemote*34
	MaxPeerSessionsSize = 64 + MaxPeerSessions*(MaxSessionStateSize+8) + MaxRefusedSessions*32
)

func (s *Session) toPB() *pb.SessionState {
	p := &pb.SessionState{
		Version:       SessionVersion,
		SessionId:     s.id[:],
		Me:            s.me[:],
		MeKey:         s.meKey[:],
		Peer:          s.peer[:],
		PeerKey:       s.peerKey[:],
		Initiator:     s.initiator,
		StartedMs:     s.started,
		SupersededMs:  s.superseded,
		Messages:      s.messages,
		SigningKey:    s.signing,
		CertSignature: s.certSig,
		Confirmed:     s.confirmed,
		DhPrivate:     s.r.dhPriv[:],
		DhPublic:      s.r.dhPub[:],
		DhRemote:      s.r.dhRemote[:],
		RootKey:       s.r.root[:],
		SendChain:     s.r.send[:],
		SendN:         s.r.ns,
		RecvN:         s.r.nr,
		PreviousN:     s.r.pn,
	}
	if s.peerSigning != nil {
		p.PeerSigningKey = s.peerSigning
	}
	if s.r.hasRecv {
		p.RecvChain = s.r.recv[:]
	}
	for _, k := range s.r.skipped {
		p.Skipped = append(p.Skipped, &pb.SkippedKey{RatchetKey: k.ratchet[:], Number: k.n, Key: k.mk[:]})
	}
	for _, k := range s.r.oldRemote {
		p.OldRemote = append(p.OldRemote, k[:])
	}
	return p
}

// Marshal encodes the session's state, private keys included: seal it
// before it touches a disk. Used and deleted message keys are not in it.
func (s *Session) Marshal() []byte { return marshal(s.toPB()) }

// ParseSession decodes what Session.Marshal produced, strictly: canonical
// encoding, field lengths, limits. It does not recompute public halves
// from private ones (two scalar multiplications per session); the
// integrity of the state is the store's AEAD seal.
func ParseSession(b []byte) (*Session, error) {
	if len(b) > MaxSessionStateSize {
		return nil, fmt.Errorf("%w: session state of %d bytes", ErrTooLarge, len(b))
	}
	var p pb.SessionState
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, fmt.Errorf("session state: %w", err)
	}
	return sessionFromPB(&p)
}

func sessionFromPB(p *pb.SessionState) (*Session, error) {
	bad := func(what string) error { return fmt.Errorf("%w: session state %s", ErrMalformed, what) }
	if p.GetVersion() != SessionVersion {
		return nil, bad(fmt.Sprintf("version %d", p.GetVersion()))
	}
	for _, f := range [][]byte{p.GetMe(), p.GetMeKey(), p.GetPeer(), p.GetPeerKey()} {
		if len(f) != IDSize {
			return nil, bad("ID length")
		}
	}
	if len(p.GetSessionId()) != SessionIDSize || SessionID(p.GetSessionId()).IsZero() {
		return nil, bad("session ID")
	}
	for _, f := range [][]byte{p.GetDhRemote(), p.GetRootKey(), p.GetSendChain()} {
		if len(f) != 32 {
			return nil, bad("key length")
		}
	}
	if n := len(p.GetRecvChain()); n != 0 && n != 32 {
		return nil, bad("receiving chain")
	}
	if len(p.GetSigningKey()) != ed25519.PrivateKeySize || len(p.GetDhPrivate()) != X25519KeySize || len(p.GetDhPublic()) != X25519KeySize {
		return nil, bad("own key length")
	}
	if n := len(p.GetPeerSigningKey()); n != 0 && n != ed25519.PublicKeySize {
		return nil, bad("peer signing key")
	}
	// The initiator learns the responder's key from its first reply; the
	// responder has the initiator's from the start, and a certificate.
	if p.GetInitiator() {
		if len(p.GetCertSignature()) != 0 || p.GetConfirmed() {
			return nil, bad("initiator with a certificate")
		}
	} else if len(p.GetPeerSigningKey()) == 0 || len(p.GetCertSignature()) < MinRSABits/8 ||
		len(p.GetCertSignature()) > MaxRSABits/8 || len(p.GetRecvChain()) == 0 {
		return nil, bad("responder fields")
	}
	if len(p.GetSkipped()) > MaxSkippedKeys || len(p.GetOldRemote()) > maxOldRemote {
		return nil, bad("too many keys")
	}
	if p.GetSupersededMs() < 0 {
		return nil, bad("superseded time")
	}
	s := &Session{
		id: SessionID(p.GetSessionId()), me: ID(p.GetMe()), meKey: ID(p.GetMeKey()),
		peer: ID(p.GetPeer()), peerKey: ID(p.GetPeerKey()), initiator: p.GetInitiator(),
		started: p.GetStartedMs(), superseded: p.GetSupersededMs(), messages: p.GetMessages(),
		signing: ed25519.PrivateKey(p.GetSigningKey()), confirmed: p.GetConfirmed(),
		r: ratchet{
			dhPriv: key32(p.GetDhPrivate()), dhPub: key32(p.GetDhPublic()),
			dhRemote: key32(p.GetDhRemote()), root: key32(p.GetRootKey()),
			send: key32(p.GetSendChain()), ns: p.GetSendN(), nr: p.GetRecvN(), pn: p.GetPreviousN(),
		},
	}
	if k := p.GetPeerSigningKey(); len(k) != 0 {
		s.peerSigning = ed25519.PublicKey(k)
	}
	if c := p.GetCertSignature(); len(c) != 0 {
		s.certSig = c
	}
	if c := p.GetRecvChain(); len(c) != 0 {
		s.r.recv, s.r.hasRecv = key32(c), true
	}
	for _, k := range p.GetSkipped() {
		if len(k.GetRatchetKey()) != 32 || len(k.GetKey()) != 32 {
			return nil, bad("skipped key")
		}
		s.r.skipped = append(s.r.skipped, skippedKey{ratchet: key32(k.GetRatchetKey()), n: k.GetNumber(), mk: key32(k.GetKey())})
	}
	for _, k := range p.GetOldRemote() {
		if len(k) != 32 {
			return nil, bad("old ratchet key")
		}
		s.r.oldRemote = append(s.r.oldRemote, key32(k))
	}
	return s, nil
}
