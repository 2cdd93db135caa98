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

// requestLimit counts contact requests per sender in fixed windows. Its
// lock guards its map only.
type requestLimit struct {
	mu   sync.Mutex
	seen map[protocol.ID]*requestCount
}

type requestCount struct {
	start time.Time
	n     int
}

// admit records a request from id at now and reports whether it is
// within the sender's limit.
func (l *requestLimit) admit(id protocol.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = make(map[protocol.ID]*requestCount)
	}
	c := l.seen[id]
	if c == nil || now.Sub(c.start) >= requestWindow || now.Before(c.start) {
		if c == nil && len(l.seen) >= requestSenders {
			for k, v := range l.seen {
				if now.Sub(v.start) >= requestWindow {
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
	return c.n <= requestBurst
}

// pendingRequest reports whether sender's request already waits for the
// user: another request from them is a duplicate.
func (fr *friendBook) pendingRequest(sender protocol.ID) bool {
	fe := fr.friend(sender)
	return fe != nil && fe.f.Status == store.FriendPendingIn
}
