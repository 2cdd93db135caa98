package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tokenBytes is the size of a token's random part: 256 bits.
const tokenBytes = 32

// tokenHash is the SHA-256 of a token. The server keeps only hashes, so a
// memory dump does not hand out live tokens, and looking a token up by its
// hash in a map leaks nothing useful through timing (an attacker would
// have to find preimages), so no constant-time compare is needed.
type tokenHash [sha256.Size]byte

func hashToken(token string) tokenHash { return sha256.Sum256([]byte(token)) }

// login is the server side of one token.
type login struct {
	hash     tokenHash
	created  time.Time
	lastUsed time.Time
	// done is closed when the token is logged out or found expired; a
	// WebSocket opened with the token closes then.
	done chan struct{}
}

// tokenStore holds the logins, keyed by token hash. A token expires
// after idle time without use, and lifetime after it was issued however
// much it is used (a token in a forgotten tab does not live forever).
type tokenStore struct {
	now      func() time.Time
	idle     time.Duration
	lifetime time.Duration

	mu     sync.Mutex
	logins map[tokenHash]*login
}

func newTokenStore(now func() time.Time, idle, lifetime time.Duration) *tokenStore {
	return &tokenStore{now: now, idle: idle, lifetime: lifetime, logins: make(map[tokenHash]*login)}
}

// issue creates a token: 256 random bits, base64url without padding (43
// characters). Only its hash is kept.
func (ts *tokenStore) issue() (string, error) {
	var b [tokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	clear(b[:])
	h := hashToken(token)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.sweepLocked()
	now := ts.now()
	ts.logins[h] = &login{hash: h, created: now, lastUsed: now, done: make(chan struct{})}
	return token, nil
}

// use looks a token up and, when it is live, marks it used now.
func (ts *tokenStore) use(token string) (*login, bool) {
	h := hashToken(token)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	s, ok := ts.logins[h]
	if !ok {
		return nil, false
	}
	now := ts.now()
	if ts.expiredLocked(s, now) {
		ts.endLocked(s)
		return nil, false
	}
	s.lastUsed = now
	return s, true
}

// alive reports whether a login is still live, without marking it used
// (an open WebSocket does not keep its token alive), and ends it when it
// has expired.
func (ts *tokenStore) alive(s *login) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if _, ok := ts.logins[s.hash]; !ok {
		return false
	}
	if ts.expiredLocked(s, ts.now()) {
		ts.endLocked(s)
		return false
	}
	return true
}

// revoke ends a login (logout).
func (ts *tokenStore) revoke(s *login) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if _, ok := ts.logins[s.hash]; ok {
		ts.endLocked(s)
	}
}

// count returns the number of logins held, live or not yet swept.
func (ts *tokenStore) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.logins)
}

func (ts *tokenStore) expiredLocked(s *login, now time.Time) bool {
	return now.Sub(s.lastUsed) >= ts.idle || now.Sub(s.created) >= ts.lifetime
}

func (ts *tokenStore) endLocked(s *login) {
	delete(ts.logins, s.hash)
	close(s.done)
}

// sweepLocked ends every expired login, so that the map stays small.
func (ts *tokenStore) sweepLocked() {
	now := ts.now()
	for _, s := range ts.logins {
		if ts.expiredLocked(s, now) {
			ts.endLocked(s)
		}
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header, and whether the header was present at all.
func bearerToken(r *http.Request) (token string, present bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", false
	}
	if len(vals) > 1 {
		return "", true
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}

// authenticate checks a request's bearer token.
func (s *Server) authenticate(r *http.Request) (*login, error) {
	token, present := bearerToken(r)
	if !present {
		return nil, apiError(CodeUnauthorized, "missing bearer token")
	}
	if token == "" {
		return nil, apiError(CodeUnauthorized, "malformed Authorization header")
	}
	lg, ok := s.tokens.use(token)
	if !ok {
		return nil, apiError(CodeUnauthorized, "invalid or expired token")
	}
	return lg, nil
}
