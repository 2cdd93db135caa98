package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

const (
	sealVersion = 1
	nonceSize   = 12
	// sealOverhead is what seal adds to a plaintext.
	sealOverhead = 1 + nonceSize + 16
)

// sealer seals row values with AES-256-GCM, the row key as associated
// data, and a random nonce per write.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("store: sealing key of %d bytes", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("store: sealing key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns version ‖ nonce ‖ AES-GCM(plaintext, ad = rowKey).
func (s *sealer) seal(rowKey, plaintext []byte) []byte {
	return s.sealTo(make([]byte, 0, sealOverhead+len(plaintext)), rowKey, plaintext)
}

// sealTo appends seal's result to dst.
func (s *sealer) sealTo(dst, rowKey, plaintext []byte) []byte {
	start := len(dst)
	dst = append(dst, sealVersion)
	dst = append(dst, make([]byte, nonceSize)...)
	nonce := dst[start+1 : start+1+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		// crypto/rand never fails on supported platforms.
		panic(fmt.Sprintf("store: reading random nonce: %v", err))
	}
	return s.aead.Seal(dst, nonce, plaintext, rowKey)
}

// open undoes seal. Any failure (wrong key, altered value, value moved to
// another row key, unknown version) is ErrTampered for the given kind.
func (s *sealer) open(kind string, rowKey, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead || sealed[0] != sealVersion {
		return nil, tampered(kind)
	}
	pt, err := s.aead.Open(nil, sealed[1:1+nonceSize], sealed[1+nonceSize:], rowKey)
	if err != nil {
		return nil, tampered(kind)
	}
	return pt, nil
}
