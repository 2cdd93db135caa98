package directory

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"golang.org/x/text/unicode/norm"
)

// namePrefix is hashed before a normalised name to make its content ID.
const namePrefix = "parley-name:"

// NormalizeName returns the form of a display name that the name index
// uses: Unicode NFKC, lower case, surrounding white space trimmed. "Alice",
// " ALICE " and "Ａｌｉｃｅ" (full-width) all normalise to "alice".
func NormalizeName(name string) string {
	s := norm.NFKC.String(name)
	s = strings.ToLower(s)
	// Lower-casing can leave a string that is no longer in NFKC.
	s = norm.NFKC.String(s)
	return strings.TrimSpace(s)
}

// NameCID returns the content ID a node provides in the DHT to claim name:
// CIDv1, raw codec, over the SHA-256 multihash of
// "parley-name:" ‖ NormalizeName(name). Provider records prove nothing: a
// searcher must fetch and verify each provider's user record.
func NameCID(name string) cid.Cid {
	d := sha256.Sum256([]byte(namePrefix + NormalizeName(name)))
	m, err := mh.Encode(d[:], mh.SHA2_256)
	if err != nil {
		// SHA2_256 with a 32-byte digest always encodes.
		panic(fmt.Sprintf("directory: encoding a multihash: %v", err))
	}
	return cid.NewCidV1(cid.Raw, m)
}
