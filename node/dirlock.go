package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// lockFile is the file a running node holds an exclusive lock on, so that
// a second process on the same data directory stops at once instead of
// starting and failing at login.
const lockFile = "node.lock"

// ErrInUse is a data directory another running parley holds, or a listen
// address something else holds.
var ErrInUse = errors.New("node: in use")

// lockDir takes the data directory's lock; the file's closing releases it
// (also when the process dies).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: data directory %s is used by another running parley; stop it or choose another --data-dir", ErrInUse, dir)
		}
		return nil, fmt.Errorf("node: lock data directory: %w", err)
	}
	return f, nil
}

// checkListen fails when a listen address with a fixed port is taken, so
// that a busy port is an error at start, not at the first login.
func checkListen(addrs []string) error {
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("%w: listen address %q: %v", ErrInvalid, s, err)
		}
		network, host, err := manet.DialArgs(a)
		if err != nil {
			continue // a transport the probe does not know; libp2p will say
		}
		if _, port, err := net.SplitHostPort(host); err != nil || port == "0" {
			continue
		}
		switch network {
		case "tcp", "tcp4", "tcp6":
			l, err := net.Listen(network, host)
			if err != nil {
				return fmt.Errorf("%w: listen address %s: %v", ErrInUse, s, err)
			}
			l.Close()
		case "udp", "udp4", "udp6":
			c, err := net.ListenPacket(network, host)
			if err != nil {
				return fmt.Errorf("%w: listen address %s: %v", ErrInUse, s, err)
			}
			c.Close()
		}
	}
	return nil
}
