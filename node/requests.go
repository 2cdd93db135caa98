package node

import (
	"errors"
	"sync"
	"time"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Contact requests from strangers cannot make the node do work over and
// over: a request from someone whose request already waits for the user
// (pending_in) is a duplicate, answered as a replay once its signature is
// checked, before it is decrypted (the messaging service's Seen hook), and
// neither stored nor shown again; and each sender gets at most
// requestBurst requests per requestWindow acted on, duplicates not
// counted (more are deferred: the sender retries later). Duplicates are
// never stored, so Config.MaxPendingRequests (checked when a new
// stranger's request is opened) covers repeats.

// requestBurst requests per requestWindow per sender are acted on: room
// for someone declined or removed to ask again a few times, not for a
// flood of requests (or of friend_request events).
const (
	requestBurst  = 8
	requestWindow = 10 * time.Minute
	// requestSenders bounds the limiter's memory: past it, windows that
	// ended are forgotten, and if none had, all are. Only senders who
	// reached receiveContact are counted (friends, and at most
	// Config.MaxPendingRequests strangers), so in practice it is not
	// reached.
	requestSenders = 1024
)

// errDuplicateRequest marks a repeated request from a pending stranger.
var errDuplicateRequest = errors.New("node: duplicate contact request")

// windowLimit counts events per key in fixed windows: at most burst per
// window (requestBurst per requestWindow when they are zero). Its lock
// guards its map only; past requestSenders keys, windows that ended are
// forgotten, and if none had, all are.
type windowLimit[K comparable] struct {
	burst  int
	window time.Duration

	mu   sync.Mutex
	seen map[K]*requestCount
}

// requestLimit counts contact requests per sender.
type requestLimit = windowLimit[protocol.ID]

type requestCount struct {
	start time.Time
	n     int
}

// admit records an event for id at now and reports whether it is within
// id's limit.
func (l *windowLimit[K]) admit(id K, now time.Time) bool {
	burst, window := l.burst, l.window
	if burst == 0 {
		burst, window = requestBurst, requestWindow
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = make(map[K]*requestCount)
	}
	c := l.seen[id]
	if c == nil || now.Sub(c.start) >= window || now.Before(c.start) {
		if c == nil && len(l.seen) >= requestSenders {
			for k, v := range l.seen {
				if now.Sub(v.start) >= window {
					delete(l.seen, k)
				}
			}
			if len(l.seen) >= requestSenders {
				clear(l.seen)
			}
		}
		c = &requestCount{start: now}
		l.seen[id] = c
	}
	c.n++
	return c.n <= burst
}

// pendingRequest reports whether sender's request already waits for the
// user: another request from them is a duplicate.
func (fr *friendBook) pendingRequest(sender protocol.ID) bool {
	fe := fr.friend(sender)
	return fe != nil && fe.f.Status == store.FriendPendingIn
}
