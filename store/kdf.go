package store

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// HKDF info labels, one per derived key (see the package documentation).
const (
	labelBadger  = "parley/v1/store-badger"
	labelRows    = "parley/v1/store-rows"
	labelSecrets = "parley/v1/store-secrets"
	labelCheck   = "parley/v1/store-check"
	labelJournal = "parley/v1/store-journal"

	// verifierMessage is what the check key authenticates.
	verifierMessage = "parley/v1/store-check/verifier"

	saltSize = 16
	keySize  = 32
)

// derivedKeys are the keys an unlocked store works with.
type derivedKeys struct {
	badger   []byte
	rows     []byte
	secrets  []byte
	journal  []byte
	verifier []byte
}

// wipe overwrites the key bytes. Best effort: Go may have copied them.
func (k *derivedKeys) wipe() {
	clear(k.badger)
	clear(k.rows)
	clear(k.secrets)
	clear(k.journal)
	clear(k.verifier)
}

// masterKey runs Argon2id. p must have been validated.
func masterKey(passphrase, salt []byte, p KDFParams) []byte {
	return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, keySize)
}

// deriveKeys expands the master key with HKDF-SHA256 and computes the
// passphrase verifier.
func deriveKeys(master []byte) (*derivedKeys, error) {
	expand := func(label string) ([]byte, error) {
		k, err := hkdf.Key(sha256.New, master, nil, label, keySize)
		if err != nil {
			return nil, fmt.Errorf("deriving %s: %w", label, err)
		}
		return k, nil
	}
	var k derivedKeys
	var err error
	if k.badger, err = expand(labelBadger); err != nil {
		return nil, err
	}
	if k.rows, err = expand(labelRows); err != nil {
		return nil, err
	}
	if k.secrets, err = expand(labelSecrets); err != nil {
		return nil, err
	}
	if k.journal, err = expand(labelJournal); err != nil {
		return nil, err
	}
	check, err := expand(labelCheck)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, check)
	mac.Write([]byte(verifierMessage))
	k.verifier = mac.Sum(nil)
	clear(check)
	return &k, nil
}

// unlock derives the keys for passphrase and checks them against the
// stored verifier, in constant time.
func unlock(passphrase []byte, m *metadata) (*derivedKeys, error) {
	master := masterKey(passphrase, m.salt, m.kdf)
	defer clear(master)
	k, err := deriveKeys(master)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(k.verifier, m.verifier) != 1 {
		k.wipe()
		return nil, ErrBadPassphrase
	}
	return k, nil
}
