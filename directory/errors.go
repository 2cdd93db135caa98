package directory

import (
	"errors"
	"fmt"

	"github.com/parley-chat/parley/protocol"
)

// Sentinel errors. Where protocol already has the sentinel, directory uses
// the same value, so callers can branch with either name; the others wrap
// the protocol sentinel they refine, so errors.Is(err, protocol.ErrAuth)
// holds for every signature failure.
var (
	// ErrTooLarge is a record over MaxRecordSize, or a list over its cap.
	ErrTooLarge = protocol.ErrTooLarge
	// ErrMalformed is a record that does not parse, is not in canonical
	// form (it does not re-encode to the same bytes), or has a field of the
	// wrong form: bad name, bad peer ID or multiaddr, unknown version.
	ErrMalformed = protocol.ErrMalformed
	// ErrKeySize is an RSA key outside 2048–8192 bits (or exponent ≠ 65537).
	ErrKeySize = protocol.ErrKeySize
	// ErrExpired is a record at or past its expiry.
	ErrExpired = protocol.ErrExpired
	// ErrBadChain is a record whose current key does not follow from the
	// user ID: with no chain, the key does not hash to the user ID; with a
	// chain, the genesis key does not, or a link is broken. A bad signature
	// in the chain also wraps protocol.ErrAuth.
	ErrBadChain = protocol.ErrBadChain

	// ErrFuture is a record issued more than MaxFutureSkew after now. It
	// wraps protocol.ErrExpired (outside its validity period).
	ErrFuture = fmt.Errorf("directory: record issued in the future: %w", protocol.ErrExpired)
	// ErrLifetime is a record whose expiry is not after its issue time or
	// more than MaxLifetime after it. It wraps protocol.ErrMalformed.
	ErrLifetime = fmt.Errorf("directory: record lifetime out of range: %w", protocol.ErrMalformed)
	// ErrBadSignature is a record signature that does not verify with the
	// record's current key. It wraps protocol.ErrAuth.
	ErrBadSignature = fmt.Errorf("directory: bad record signature: %w", protocol.ErrAuth)
	// ErrBadDevice is a device whose host-key signature over the user ID
	// does not verify, or whose peer ID carries no Ed25519 key. It wraps
	// protocol.ErrAuth.
	ErrBadDevice = fmt.Errorf("directory: bad device signature: %w", protocol.ErrAuth)
	// ErrBadPrekey is a prekey not signed by the record's current key. It
	// wraps protocol.ErrAuth.
	ErrBadPrekey = fmt.Errorf("directory: bad prekey signature: %w", protocol.ErrAuth)
	// ErrKeyMismatch is a record stored under the DHT key of another user,
	// or a DHT key that is not /parley-user/<user-id>.
	ErrKeyMismatch = errors.New("directory: DHT key does not name the record's user")
	// ErrNoValidRecord is Select given no valid record.
	ErrNoValidRecord = errors.New("directory: no valid record")
)
