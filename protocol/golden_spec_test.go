package protocol

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// goldenSpecCanonical encodes a header exactly as doc.go describes it,
// without the package's canon helper.
func goldenSpecCanonical(h *Header) []byte {
	var b []byte
	field := func(v []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		return append(b, v...)
	}
	b = append(b, h.Version, byte(h.Suite))
	b = binary.BigEndian.AppendUint16(b, uint16(h.Kind))
	b = append(b, h.MsgID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Timestamp))
	b = field(h.Sender[:])
	b = field(h.SenderKey[:])
	b = field(h.Recipient[:])
	b = field(h.RecipientKey[:])
	b = field(h.SenderDevice)
	b = binary.BigEndian.AppendUint64(b, h.PrekeyID)
	b = field(h.Ephemeral)
	b = field(h.WrappedKey)
	return b
}

// goldenSpecOpen opens e following doc.go step by step, with the standard
// library only: verify the PSS signature, unwrap with OAEP, derive with HKDF,
// decrypt with AES-GCM, and check the inner layout.
func goldenSpecOpen(e *Envelope, sender *rsa.PrivateKey, recipient *rsa.PrivateKey, prekeyPriv, prekeyPub []byte) ([]byte, error) {
	canonical := goldenSpecCanonical(&e.Header)
	ctHash := sha256.Sum256(e.Ciphertext)
	sigDigest := sha256.Sum256(slices.Concat([]byte("parley/v1/env-sig"), canonical, ctHash[:]))
	if err := rsa.VerifyPSS(&sender.PublicKey, crypto.SHA256, sigDigest[:], e.Signature, &rsa.PSSOptions{SaltLength: 32}); err != nil {
		return nil, fmt.Errorf("signature: %v", err)
	}
	label := slices.Concat([]byte("parley/v1/oaep"), e.Sender[:], e.Recipient[:], e.MsgID[:])
	s, err := rsa.DecryptOAEP(sha256.New(), nil, recipient, e.WrappedKey, label)
	if err != nil {
		return nil, fmt.Errorf("unwrap: %v", err)
	}
	if len(s) != 32 {
		return nil, fmt.Errorf("secret of %d bytes", len(s))
	}
	var ikm, salt []byte
	switch e.Suite {
	case 1:
		ikm, salt = s, e.MsgID[:]
	case 2:
		agreed, err := goldenX25519(prekeyPriv, e.Ephemeral)
		if err != nil {
			return nil, err
		}
		ikm, salt = slices.Concat(agreed, s), slices.Concat(e.Ephemeral, prekeyPub)
	default:
		return nil, fmt.Errorf("suite %d", e.Suite)
	}
	hh := sha256.Sum256(canonical)
	okm, err := hkdf.Key(sha256.New, ikm, salt, "parley/v1/env-key"+string(hh[:]), 44)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(okm[32:], e.Nonce) {
		return nil, errors.New("carried nonce is not the derived one")
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	pt, err := gcm.Open(nil, okm[32:], e.Ciphertext, canonical)
	if err != nil {
		return nil, fmt.Errorf("AES-GCM: %v", err)
	}
	if len(pt)%256 != 0 {
		return nil, fmt.Errorf("plaintext of %d bytes is not padded to 256", len(pt))
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(e.Timestamp))
	head := slices.Concat(e.Sender[:], e.Recipient[:], e.MsgID[:], ts[:])
	if !bytes.HasPrefix(pt, head) {
		return nil, errors.New("inner sender ‖ recipient ‖ msg_id ‖ timestamp differ from the header")
	}
	n := int(binary.BigEndian.Uint32(pt[len(head):]))
	rest := pt[len(head)+4:]
	if n > len(rest) || len(rest)-n >= 256 || strings.Trim(string(rest[n:]), "\x00") != "" {
		return nil, fmt.Errorf("bad padding for a %d-byte body in %d bytes", n, len(pt))
	}
	return rest[:n], nil
}

// goldenX25519 computes X25519(priv, pub) through crypto/ecdh.
func goldenX25519(priv, pub []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return k.ECDH(p)
}

// TestGoldenCanonicalHeaderSpec checks Header.Canonical against bytes written
// out by hand from the layout in doc.go, not produced by any code:
//
//	u8 version ‖ u8 suite ‖ u16 kind ‖ msg_id ‖ i64 timestamp_ms ‖
//	bytes(sender) ‖ bytes(sender_key) ‖ bytes(recipient) ‖ bytes(recipient_key) ‖
//	bytes(sender_device) ‖ u64 prekey_id ‖ bytes(ephemeral) ‖ bytes(wrapped_key)
func TestGoldenCanonicalHeaderSpec(t *testing.T) {
	rep := func(b string, n int) string { return strings.Repeat(b, n) }
	fill := func(b byte) (id ID) {
		for i := range id {
			id[i] = b
		}
		return id
	}
	cases := []struct {
		name string
		h    Header
		want string
	}{{
		name: "suite 2, every field set",
		h: Header{
			Version:      1,
			Suite:        SuiteRSAX25519,
			Kind:         KindContactRequest,
			MsgID:        MsgID{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f},
			Timestamp:    0x0000019012345678,
			Sender:       fill(0x11),
			SenderKey:    fill(0x22),
			Recipient:    fill(0x33),
			RecipientKey: fill(0x44),
			SenderDevice: []byte("dev"),
			PrekeyID:     0x0a0b0c0d0e0f1011,
			Ephemeral:    bytes.Repeat([]byte{0x55}, 32),
			WrappedKey:   []byte{0xde, 0xad, 0xbe, 0xef, 0x01},
		},
		want: "01" + // u8 version
			"02" + // u8 suite
			"0003" + // u16 kind
			"000102030405060708090a0b0c0d0e0f" + // msg_id, raw 16 bytes
			"0000019012345678" + // i64 timestamp_ms
			"00000020" + rep("11", 32) + // bytes(sender)
			"00000020" + rep("22", 32) + // bytes(sender_key)
			"00000020" + rep("33", 32) + // bytes(recipient)
			"00000020" + rep("44", 32) + // bytes(recipient_key)
			"00000003" + "646576" + // bytes(sender_device) = "dev"
			"0a0b0c0d0e0f1011" + // u64 prekey_id
			"00000020" + rep("55", 32) + // bytes(ephemeral)
			"00000005" + "deadbeef01", // bytes(wrapped_key)
	}, {
		name: "suite 1, empty fields, negative timestamp, large kind",
		h: Header{
			Version:      1,
			Suite:        SuiteRSA,
			Kind:         0xfedc,
			MsgID:        MsgID{0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00},
			Timestamp:    -2,
			Sender:       fill(0xa1),
			SenderKey:    fill(0xb2),
			Recipient:    fill(0xc3),
			RecipientKey: fill(0xd4),
		},
		want: "01" + "01" + "fedc" +
			"ffeeddccbbaa99887766554433221100" +
			"fffffffffffffffe" + // i64 -2, two's complement
			"00000020" + rep("a1", 32) +
			"00000020" + rep("b2", 32) +
			"00000020" + rep("c3", 32) +
			"00000020" + rep("d4", 32) +
			"00000000" + // empty sender_device
			"0000000000000000" + // prekey_id 0
			"00000000" + // empty ephemeral
			"00000000", // empty wrapped_key
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := hex.EncodeToString(c.h.Canonical()); got != c.want {
				t.Errorf("Canonical:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}
func TestGoldenSafetyNumbers(t *testing.T) {
	goldenSetup(t)
	var manifest []goldenSafety
	goldenReadJSON(t, &manifest, "safety.json")
	if len(manifest) < 2 {
		t.Fatalf("%d golden safety numbers, want 2", len(manifest))
	}
	for _, m := range manifest {
		t.Run(m.A+"+"+m.B, func(t *testing.T) {
			t.Parallel()
			a, b := testKey(t, m.A), testKey(t, m.B)
			got := SafetyNumber(a.ID(), a.Public(), b.ID(), b.Public())
			if got != m.Number {
				t.Errorf("SafetyNumber = %s, golden %s", got, m.Number)
			}
			if rev := SafetyNumber(b.ID(), b.Public(), a.ID(), a.Public()); rev != got {
				t.Errorf("SafetyNumber is not symmetric: %s vs %s", got, rev)
			}
			if spec := goldenSpecSafetyNumber(a.ID(), a.Public().Bytes(), b.ID(), b.Public().Bytes()); spec != got {
				t.Errorf("SafetyNumber = %s, the documented algorithm gives %s", got, spec)
			}
			if len(got) != SafetyNumberDigits || strings.Trim(got, "0123456789") != "" {
				t.Errorf("SafetyNumber %q is not %d digits", got, SafetyNumberDigits)
			}
		})
	}
}

// goldenSpecSafetyNumber reimplements the algorithm documented in safety.go
// with crypto/sha512 alone.
func goldenSpecSafetyNumber(aID ID, aDER []byte, bID ID, bDER []byte) string {
	x, y := goldenSpecSafetyHalf("parley/v1/safety", aID, aDER), goldenSpecSafetyHalf("parley/v1/safety", bID, bDER)
	if y < x {
		x, y = y, x
	}
	return x + y
}
