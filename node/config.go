package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/node/groupguard"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Defaults.
const (
	DefaultPort        = 7734
	DefaultKeyBits     = 3072
	minPassphrase      = 10 // characters
	DefaultRetryMin    = time.Second
	DefaultRetryMax    = 5 * time.Minute
	DefaultPrekeyLife  = 7 * 24 * time.Hour // rotation period
	DefaultDialTimeout = 10 * time.Second
	DefaultAckTimeout  = 10 * time.Second
	// DefaultLoginBackoff is the wait after the first throttled wrong
	// passphrase; it doubles with each further one.
	DefaultLoginBackoff = 2 * time.Second
)

// DefaultListen are the listen addresses of a node without --listen.
var DefaultListen = []string{
	fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", DefaultPort),
	fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", DefaultPort),
}

// Config configures a node. The zero value of every field but DataDir
// means its default.
type Config struct {
	// DataDir holds the store and the node's small state file.
	DataDir string
	// Listen are the libp2p listen multiaddrs (DefaultListen if empty).
	Listen []string
	// Bootstrap are multiaddrs (with /p2p/) the node dials when it starts.
	// Empty by default: the node dials nobody it was not told about.
	Bootstrap []string
	// MailboxRelays are the relays (multiaddrs with /p2p/) whose
	// mailboxes hold this node's mail while it is offline (parley run
	// --mailbox-relay); the own directory record lists them. The first two
	// are used (maxMailboxRelays). Empty: the first two bootstrap peers.
	MailboxRelays []string
	// Logger receives the node's logs; never content, keys or passphrases.
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
	// KDF are the passphrase KDF parameters for a new store
	// (store.DefaultKDF); tests make them cheap.
	KDF store.KDFParams
	// KeyBits is the size of a new RSA identity key (3072).
	KeyBits int
	// NewKey makes the RSA identity key at registration
	// (protocol.GenerateKey); tests hand in fixture keys.
	NewKey func(bits int) (*protocol.PrivateKey, error)
	// RetryMin and RetryMax bound the delivery backoff (1 s, 5 min).
	RetryMin, RetryMax time.Duration
	// PrekeyRotation is how often the signed prekey is replaced (7 days).
	PrekeyRotation time.Duration
	// MaxAge is how old an envelope may be when it arrives
	// (protocol.DefaultMaxAge); retired prekeys are kept this long.
	MaxAge time.Duration
	// DialTimeout bounds one attempt to reach a device (10 s).
	DialTimeout time.Duration
	// AckTimeout is how long a stream may owe an acknowledgement before
	// the sender takes it for dead and sends what is unacknowledged again
	// on a new one (10 s).
	AckTimeout time.Duration
	// LoginBackoff is the first wait once wrong passphrases are throttled
	// (DefaultLoginBackoff); each further wrong one doubles it, up to 15
	// minutes.
	LoginBackoff time.Duration
	// MaxPendingRequests caps the contact requests from strangers that
	// wait for the user's answer (200); more are deferred, so a flood of
	// requests cannot fill the store.
	MaxPendingRequests int
	// ConnLow and ConnHigh are the connection manager's watermarks
	// (64 and 128).
	ConnLow, ConnHigh int
	// Metrics, if set, receives libp2p's Prometheus metrics, the
	// directory's (records stored, lookups served) and the outbox's
	// (frames sent, frames sent again after a broken stream).
	Metrics prometheus.Registerer
	// DHTServer runs the DHT as a server from the start (tests and nodes
	// known to be reachable). Otherwise it runs ModeAutoServer: a server
	// until AutoNAT says the node is behind NAT (LIBP2P.md §2).
	DHTServer bool
	// ManualDHTRefresh turns off the DHT's periodic routing-table refresh
	// (deterministic tests).
	ManualDHTRefresh bool
	// Republish is how often the own directory record is signed and
	// published again (12 hours; records live RecordLifetime).
	Republish time.Duration
	// RecordLifetime is how long a published record is valid (7 days,
	// the most the validator accepts).
	RecordLifetime time.Duration
	// Reprovide is how often the name claim is provided again (22 hours;
	// provider records live 48 hours).
	Reprovide time.Duration
	// FriendRecheck is how often friends' records are looked up for new
	// devices, prekeys and keys (10 minutes).
	FriendRecheck time.Duration
	// StrictRSASignatures signs every session message with the identity
	// key (RSA-PSS) instead of the session's certified Ed25519 key.
	StrictRSASignatures bool
	// DisableSessions sends every message as a single RSA envelope, as
	// before sessions (benchmarks compare the two).
	DisableSessions bool
	// KeyGrace is how long an old identity key still opens envelopes
	// after a rotation (14 days); then it is deleted.
	KeyGrace time.Duration
	// BackupWorkFactor is the scrypt log2(N) of backup files (0: age's
	// default, 18); tests lower it.
	BackupWorkFactor int
	// GroupLimits are the rate limits of group traffic this node
	// carries: per sender chain and per forwarding peer (zero fields:
	// groupguard's defaults).
	GroupLimits groupguard.Config

	// extraParts run beside the node's own parts (tests: a part that
	// fails).
	extraParts []part
}

func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		return c, fail(ErrInvalid, "no data directory")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return c, fmt.Errorf("node: data directory: %w", err)
	}
	c.DataDir = abs
	if len(c.Listen) == 0 {
		c.Listen = DefaultListen
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.KDF == (store.KDFParams{}) {
		c.KDF = store.DefaultKDF
	}
	if err := c.KDF.Validate(); err != nil {
		return c, err
	}
	if c.KeyBits == 0 {
		c.KeyBits = DefaultKeyBits
	}
	if c.NewKey == nil {
		c.NewKey = protocol.GenerateKey
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.RetryMax < c.RetryMin {
		return c, fail(ErrInvalid, "RetryMax %v below RetryMin %v", c.RetryMax, c.RetryMin)
	}
	if c.PrekeyRotation <= 0 {
		c.PrekeyRotation = DefaultPrekeyLife
	}
	if c.MaxAge <= 0 {
		c.MaxAge = protocol.DefaultMaxAge
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.LoginBackoff <= 0 {
		c.LoginBackoff = DefaultLoginBackoff
	}
	if c.LoginBackoff > throttleMax {
		return c, fail(ErrInvalid, "LoginBackoff %v over %v", c.LoginBackoff, throttleMax)
	}
	if c.MaxPendingRequests <= 0 {
		c.MaxPendingRequests = 200
	}
	if c.Republish <= 0 {
		c.Republish = 12 * time.Hour
	}
	if c.RecordLifetime <= 0 || c.RecordLifetime > 7*24*time.Hour {
		c.RecordLifetime = 7 * 24 * time.Hour
	}
	if c.Reprovide <= 0 {
		c.Reprovide = 22 * time.Hour
	}
	if c.FriendRecheck <= 0 {
		c.FriendRecheck = 10 * time.Minute
	}
	if _, err := addrInfos(c.MailboxRelays); err != nil {
		return c, fmt.Errorf("node: mailbox relays: %w", err)
	}
	if c.KeyGrace <= 0 {
		c.KeyGrace = 14 * 24 * time.Hour
	}
	if _, err := groupguard.New(c.GroupLimits); err != nil {
		return c, fail(ErrInvalid, "group limits: %v", err)
	}
	if c.ConnLow <= 0 {
		c.ConnLow = 64
	}
	if c.ConnHigh <= c.ConnLow {
		c.ConnHigh = 2 * c.ConnLow
	}
	return c, nil
}

// prepareDir creates the data directory (mode 0700) if it is missing and
// refuses one that others can read.
func prepareDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("node: create data directory: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: data directory: %w", err)
	}
	if !fi.IsDir() {
		return fail(ErrInvalid, "data directory %s is not a directory", dir)
	}
	return nil
}
