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
//	  h = SHA-512("parley/v1/safety" ‖ public key DER ‖ user ID)
//	  repeat 5200 times: h = SHA-512(h ‖ public key DER)
//	  take the first 30 bytes of h as six 5-byte big-endian numbers;
//	  each number mod 100000, written as 5 decimal digits → 30 digits
//	the safety number is the two 30-digit strings, the smaller one first
//	(string order), 60 digits in all.
//
// Both users compute the same number. Keys and user IDs are the whole input,
// so a changed key changes the number.
const (
	LabelSafety      = "parley/v1/safety"
	safetyIterations = 5200
	// SafetyNumberDigits is the length of a safety number.
	SafetyNumberDigits = 60
)

// SafetyNumber returns the 60-digit safety number of users a and b.
func SafetyNumber(aID ID, aKey *PublicKey, bID ID, bKey *PublicKey) string {
	a, b := safetyHalf(aID, aKey), safetyHalf(bID, bKey)
	if b < a {
		a, b = b, a
	}
	return a + b
}

func safetyHalf(id ID, key *PublicKey) string {
	h := sha512.New()
	h.Write([]byte(LabelSafety))
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
