package protocol

import (
	"crypto/sha512"
	"fmt"
	"strings"
)

// Safety numbers let two users check, out of band, that each has the other's
// real key. The algorithm follows Signal's numeric fingerprints:
//
//	for each user:
//	  h = SHA-512(label ‖ public key DER ‖ user ID)
//	  repeat 5200 times: h = SHA-512(h ‖ public key DER)
//	  take the first 30 bytes of h as six 5-byte big-endian numbers;
//	  each number mod 100000, written as 5 decimal digits → 30 digits
//	the safety number is the two 30-digit strings, the smaller one first
//	(string order), 60 digits in all.
//
// Both users compute the same number. Keys and user IDs are the whole input,
// so a changed key changes the number.
//
// Which key goes into a user's half (see "Safety numbers" in doc.go): the
// user's genesis key under "parley/v1/safety" (SafetyNumber) while the key
// in use follows from it by a verified rotation chain, so that rotations
// keep the number; the new key under "parley/v1/key-safety"
// (ChangedKeySafetyNumber) when a friend's key changed without such a
// chain, so that accepting it means comparing a number that changed —
// even when the new key is the genesis key itself.
const (
	// LabelSafety is the label of a user's half over their genesis key.
	LabelSafety = "parley/v1/safety"
	// LabelKeySafety is the label of the half of a user whose key changed
	// without a rotation chain (ChangedKeySafetyNumber).
	LabelKeySafety   = "parley/v1/key-safety"
	safetyIterations = 5200
	// SafetyNumberDigits is the length of a safety number.
	SafetyNumberDigits = 60
)

// SafetyNumber returns the 60-digit safety number of users a and b.
// Each key is the user's genesis key (the one whose ID is the user ID),
// which stays the same through chained rotations.
func SafetyNumber(aID ID, aKey *PublicKey, bID ID, bKey *PublicKey) string {
	return joinSafetyHalves(safetyHalf(aID, aKey), safetyHalf(bID, bKey))
}

// ChangedKeySafetyNumber returns the safety number that a shows for friend
// b whose key changed to bNewKey without a rotation chain from the key a
// had pinned: a's half is over a's genesis key, as in SafetyNumber, and b's
// half is over bNewKey under LabelKeySafety instead of LabelSafety. So it
// differs from SafetyNumber of the same users even when bNewKey is b's
// genesis key: the number a user compares before accepting such a key is
// always a new one. The owner of bNewKey gets the same number with the
// same arguments (the halves are sorted, as in SafetyNumber).
func ChangedKeySafetyNumber(aID ID, aGenesis *PublicKey, bID ID, bNewKey *PublicKey) string {
	return joinSafetyHalves(safetyHalf(aID, aGenesis), safetyHalfLabel(LabelKeySafety, bID, bNewKey))
}

func joinSafetyHalves(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + b
}

func safetyHalf(id ID, key *PublicKey) string { return safetyHalfLabel(LabelSafety, id, key) }

func safetyHalfLabel(label string, id ID, key *PublicKey) string {
	h := sha512.New()
	h.Write([]byte(label))
	h.Write(key.der)
	h.Write(id[:])
	sum := h.Sum(nil)
	for range safetyIterations {
		h.Reset()
		h.Write(sum)
		h.Write(key.der)
		sum = h.Sum(sum[:0])
	}
	var sb strings.Builder
	for i := range 6 {
		c := sum[i*5 : i*5+5]
		v := uint64(c[0])<<32 | uint64(c[1])<<24 | uint64(c[2])<<16 | uint64(c[3])<<8 | uint64(c[4])
		fmt.Fprintf(&sb, "%05d", v%100000)
	}
	return sb.String()
}

// FormatSafetyNumber splits a safety number into groups of five digits
// separated by spaces, as people read it aloud.
func FormatSafetyNumber(n string) string {
	var groups []string
	for len(n) > 5 {
		groups = append(groups, n[:5])
		n = n[5:]
	}
	return strings.Join(append(groups, n), " ")
}
