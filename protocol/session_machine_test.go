package protocol

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"testing/cryptotest"
	"time"
)

// The interaction state-machine test, in the style of libsignal's
// interaction fuzzing: two users send to each other at random, and the
// network drops, duplicates and reorders (inside a window far below
// MaxSkippedKeys); users restart from their stored state, lose it, re-key
// and start sessions that cross. Whatever happens, every message that is
// delivered opens exactly once, and every message that is not dropped is
// delivered in the end. The node's part is modelled as the issue states
// it: a start is an envelope, so it is delivered in order and never lost
// (the outbox retries it) and its replay is caught by the msg_id check; a
// message whose session the receiver lacks (ErrSessionUnknown) makes the
// receiver send a reset, and the sender sends it again in a new session.
//
//	go test ./protocol/ -run TestSessionStateMachine -machine.steps=100000 -machine.seeds=20
var (
	machineSteps = flag.Int("machine.steps", 2500, "steps per seed of TestSessionStateMachine")
	machineSeeds = flag.Int("machine.seeds", 4, "seeds of TestSessionStateMachine")
)

// machineWindow is how far the network reorders a queue.
const machineWindow = 24

type machineMsg struct {
	raw     []byte
	start   bool
	payload int
	msgID   MsgID
	session SessionID
}

type machineUser struct {
	*sessSide
	in       []*machineMsg // in flight to this user
	got      []*machineMsg // delivered to this user, for duplicates
	opened   map[int]int   // payload → times opened
	seen     map[MsgID]bool
	resets   int
	sessions int
}

type machine struct {
	t       *testing.T
	rng     *rand.Rand
	now     time.Time
	users   [2]*machineUser
	next    int
	dropped map[int]bool
	stats   map[string]int
}

func TestSessionStateMachine(t *testing.T) {
	for seed := range uint64(*machineSeeds) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, seed)
			m := newMachine(t, seed)
			burstAt := *machineSteps/4 + m.rng.IntN(*machineSteps/2+1)
			for i := range *machineSteps {
				if i == burstAt {
					m.burst()
				}
				m.step()
			}
			m.drain()
			m.check()
			t.Logf("%v", m.stats)
		})
	}
}

func newMachine(t *testing.T, seed uint64) *machine {
	alice, bob := sessPair(t, "alice-2048", "bob-2048")
	m := &machine{t: t, rng: rand.New(rand.NewPCG(seed, 0x5e55)), now: sessT0, dropped: map[int]bool{}, stats: map[string]int{}}
	for i, s := range []*sessSide{alice, bob} {
		m.users[i] = &machineUser{sessSide: s, opened: map[int]int{}, seen: map[MsgID]bool{}}
	}
	return m
}

func (m *machine) step() {
	i := m.rng.IntN(2)
	from, to := m.users[i], m.users[1-i]
	switch r := m.rng.IntN(100); {
	case r < 32:
		m.send(from, to, m.next)
		m.next++
	case r < 80:
		m.deliver(to, from, m.rng.IntN(machineWindow))
	case r < 85:
		m.duplicate(to, from)
	case r < 89:
		m.drop(to)
	case r < 93:
		from.restart(m.t)
		m.stats["restart"]++
	case r < 94:
		// The user loses every session (restored without them).
		from.ps = NewPeerSessions(from.ps.me, from.ps.peer)
		m.stats["lose state"]++
	case r < 99:
		m.now = m.now.Add(time.Duration(m.rng.IntN(600)) * time.Second)
	default:
		// Days pass: sessions are re-keyed and superseded ones expire.
		// (The fixture prekeys last 30 days; the default run spans ~15.)
		m.now = m.now.Add(time.Duration(m.rng.IntN(26)) * time.Hour)
	}
}

// send seals payload from from to to: in the current session, or in a
// new one when none is usable.
func (m *machine) send(from, to *machineUser, payload int) {
	body := []byte(strconv.Itoa(payload))
	if m.now.After(to.prekey.Signed.NotAfter.Add(-48 * time.Hour)) {
		// The recipient's node has rotated its prekey (and its card).
		to.retired = append(to.retired, to.prekey)
		to.prekey = advPrekey(m.t, to.key, m.now)
		m.stats["prekey"]++
	}
	if from.ps.NeedsStart(m.now) {
		had := map[SessionID]bool{}
		for _, s := range from.ps.sessions {
			had[s.id] = true
		}
		env, err := from.ps.Start(testSender(from.key), testRecipient(to.key, to.prekey), KindText, body, m.now)
		if err != nil {
			m.t.Fatalf("Start: %v", err)
		}
		msg := &machineMsg{raw: env.Marshal(), start: true, payload: payload, msgID: env.MsgID}
		for _, s := range from.ps.sessions {
			if !had[s.id] {
				msg.session = s.id
			}
		}
		to.in = append(to.in, msg)
		m.stats["start"]++
		return
	}
	var strict Signer
	if m.rng.IntN(20) == 0 {
		strict = from.key // --strict-rsa-signatures
	}
	sm, err := from.ps.Seal(KindText, body, m.now, strict)
	if err != nil {
		m.t.Fatalf("Seal: %v", err)
	}
	to.in = append(to.in, &machineMsg{raw: sm.Marshal(), payload: payload, msgID: sm.MsgID, session: sm.Session})
	m.stats["seal"]++
}

// window returns how many of to's first messages the network may pick
// from: at most n+1, and never past a start.
func (to *machineUser) window(n int) int {
	w := min(n+1, len(to.in))
	for j := range w {
		if to.in[j].start {
			return j + 1
		}
	}
	return w
}

func (m *machine) deliver(to, from *machineUser, n int) {
	if len(to.in) == 0 {
		return
	}
	j := m.rng.IntN(to.window(n))
	msg := to.in[j]
	to.in = append(to.in[:j:j], to.in[j+1:]...)
	to.got = append(to.got, msg)
	opened, err := m.open(to, from, msg)
	switch {
	case err == nil:
		if opened == nil {
			m.t.Fatalf("a start without its first message")
		}
		p, _ := strconv.Atoi(string(opened.Body))
		if p != msg.payload {
			m.t.Fatalf("opened payload %d, sent %d", p, msg.payload)
		}
		if to.opened[p]++; to.opened[p] > 1 {
			m.t.Fatalf("payload %d opened twice", p)
		}
		m.stats["opened"]++
	case errors.Is(err, ErrSessionUnknown) || errors.Is(err, ErrSkipLimit) && !msg.start:
		// The receiver answers with a reset; the sender drops the session
		// and sends the message again, in a new session if need be. (A
		// start is refused when its session was refused already: the
		// burst below delivers a message ahead of its start.)
		to.ps.Refuse(msg.session, m.now)
		from.ps.Reset(msg.session, m.now)
		m.send(from, to, msg.payload)
		m.stats["reset"]++
		for _, s := range to.ps.sessions {
			if s.id == msg.session {
				m.stats["reset after grace"]++
			}
		}
	default:
		m.t.Fatalf("delivering payload %d (start %v): %v", msg.payload, msg.start, err)
	}
}

func (m *machine) open(to, from *machineUser, msg *machineMsg) (*Message, error) {
	if msg.start {
		if to.seen[msg.msgID] {
			return nil, ErrMessageKeyGone // the node's msg_id check
		}
		// The start's own time: the window is the node's business.
		env, err := ParseEnvelope(msg.raw)
		if err != nil {
			return nil, err
		}
		first, err := to.accept(msg.raw, from.sessSide, env.Time())
		if err == nil {
			to.seen[msg.msgID] = true
		}
		return first, err
	}
	return to.open(msg.raw, from.sessSide, m.now)
}

// burst has a user seal more than MaxSkipJump messages of which only the
// last arrives (the network lost the rest): beyond the window, it is
// ErrSkipLimit (or ErrSessionUnknown, if the receiver lost the session),
// and the sender sends it again in a new session.
func (m *machine) burst() {
	i := m.rng.IntN(2)
	from, to := m.users[i], m.users[1-i]
	if from.ps.NeedsStart(m.now) {
		m.stats["burst skipped"]++
		return
	}
	var last *SessionMessage
	for range MaxSkipJump + 2 {
		if last != nil {
			m.dropped[m.next-1] = true
		}
		var err error
		if last, err = from.ps.Seal(KindText, []byte(strconv.Itoa(m.next)), m.now, nil); err != nil {
			m.t.Fatalf("Seal: %v", err)
		}
		m.next++
	}
	msg := &machineMsg{raw: last.Marshal(), payload: m.next - 1, msgID: last.MsgID, session: last.Session}
	before := to.ps.Marshal()
	_, err := m.open(to, from, msg)
	switch {
	case errors.Is(err, ErrSkipLimit):
		if string(before) != string(to.ps.Marshal()) {
			m.t.Fatal("ErrSkipLimit changed the state")
		}
		m.stats["skip limit"]++
	case errors.Is(err, ErrSessionUnknown):
		m.stats["burst to a lost session"]++
	default:
		m.t.Fatalf("a message beyond the skip window: %v", err)
	}
	to.ps.Refuse(msg.session, m.now)
	from.ps.Reset(msg.session, m.now)
	m.send(from, to, msg.payload)
}

// duplicate delivers again a message that was delivered: it must not open.
func (m *machine) duplicate(to, from *machineUser) {
	if len(to.got) == 0 {
		return
	}
	msg := to.got[m.rng.IntN(len(to.got))]
	before := to.ps.Marshal()
	_, err := m.open(to, from, msg)
	switch {
	case errors.Is(err, ErrMessageKeyGone), errors.Is(err, ErrSessionUnknown):
	default:
		m.t.Fatalf("a duplicate of payload %d: %v", msg.payload, err)
	}
	if string(before) != string(to.ps.Marshal()) {
		m.t.Fatal("a refused duplicate changed the state")
	}
	m.stats["duplicate"]++
}

// drop loses a session message in flight (starts are envelopes the
// outbox sends until they are acknowledged).
func (m *machine) drop(to *machineUser) {
	if len(to.in) == 0 {
		return
	}
	j := m.rng.IntN(min(machineWindow, len(to.in)))
	if to.in[j].start {
		return
	}
	m.dropped[to.in[j].payload] = true
	to.in = append(to.in[:j:j], to.in[j+1:]...)
	m.stats["drop"]++
}

// drain delivers everything still in flight, in order.
func (m *machine) drain() {
	for range 100000 {
		busy := false
		for i, to := range m.users {
			if len(to.in) > 0 {
				m.deliver(to, m.users[1-i], 0)
				busy = true
			}
		}
		if !busy {
			return
		}
	}
	m.t.Fatal("the network does not drain")
}

func (m *machine) check() {
	for p := range m.next {
		n := m.users[0].opened[p] + m.users[1].opened[p]
		switch {
		case n > 1:
			m.t.Errorf("payload %d opened %d times", p, n)
		case n == 0 && !m.dropped[p]:
			m.t.Errorf("payload %d was never dropped and never opened", p)
		}
	}
	if m.stats["opened"] < *machineSteps/5 {
		m.t.Errorf("only %d messages opened in %d steps", m.stats["opened"], *machineSteps)
	}
}
