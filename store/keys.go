package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// Row kind prefixes; the layout is documented in doc.go.
const (
	kIdentity     byte = 'I'
	kHostKey      byte = 'H'
	kPrekey       byte = 'P'
	kFriend       byte = 'F'
	kConversation byte = 'C'
	kMessage      byte = 'M'
	kMessageIndex byte = 'X'
	kOutbox       byte = 'O'
	kOutboxDue    byte = 'D' // retired (the old due index); Open deletes any left
	kOutboxQueue  byte = 'T'
	kSeen         byte = 'S'
	kProfile      byte = 'U'
	kKeyChain     byte = 'K'
	kRetired      byte = 'Q'
	kSessions     byte = 'R'
	kKeyFork      byte = 'V'
)

// Row kind names, for errors.
const (
	rowIdentity     = "identity"
	rowHostKey      = "host key"
	rowPrekey       = "prekey"
	rowFriend       = "friend"
	rowConversation = "conversation"
	rowMessage      = "message"
	rowMessageIndex = "message index"
	rowOutbox       = "outbox"
	rowOutboxQueue  = "outbox queue index"
	rowSeen         = "seen"
	rowProfile      = "profile"
	rowKeyChain     = "key chain"
	rowRetired      = "retired key"
	rowSessions     = "sessions"
	rowKeyFork      = "key fork"
)

const (
	timeSize    = 8
	convSize    = 32
	msgKeySize  = 1 + convSize + timeSize + MsgIDSize
	sortKeySize = timeSize + MsgIDSize // a message's position within its conversation
)

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// checkTime rejects times that unix nanoseconds cannot hold (before 1678 or
// after 2262), and the zero time.
func checkTime(what string, t time.Time) error {
	if t.IsZero() || t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%w: %s %v out of range", ErrInvalid, what, t)
	}
	return nil
}

// putTime writes t as an order-preserving 8-byte key part.
func putTime(b []byte, t time.Time) {
	binary.BigEndian.PutUint64(b, uint64(t.UnixNano())^(1<<63))
}

func getTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63)))
}

func identityKey() []byte { return []byte{kIdentity} }
func hostKeyKey() []byte  { return []byte{kHostKey} }
func profileKey() []byte  { return []byte{kProfile} }
func keyChainKey() []byte { return []byte{kKeyChain} }

func retiredKey(id protocol.ID) []byte  { return append([]byte{kRetired}, id[:]...) }
func sessionsKey(id protocol.ID) []byte { return append([]byte{kSessions}, id[:]...) }

func keyForkPrefix(id protocol.ID) []byte { return append([]byte{kKeyFork}, id[:]...) }
func keyForkKey(id protocol.ID, digest [32]byte) []byte {
	return append(keyForkPrefix(id), digest[:]...)
}

func prekeyKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{kPrekey}, id)
}

func friendKey(id protocol.ID) []byte { return append([]byte{kFriend}, id[:]...) }

func conversationKey(c ConversationID) []byte { return append([]byte{kConversation}, c[:]...) }

// messagePrefix is the prefix of all messages of a conversation.
func messagePrefix(c ConversationID) []byte { return append([]byte{kMessage}, c[:]...) }

// sortKey is a message's position: sort time ‖ msg ID.
func sortKey(t time.Time, id MsgID) []byte {
	b := make([]byte, sortKeySize)
	putTime(b, t)
	copy(b[timeSize:], id[:])
	return b
}

func messageKey(c ConversationID, sk []byte) []byte {
	return append(messagePrefix(c), sk...)
}

func messageIndexKey(id MsgID) []byte { return append([]byte{kMessageIndex}, id[:]...) }
func outboxKey(id MsgID) []byte       { return append([]byte{kOutbox}, id[:]...) }
func seenKey(id MsgID) []byte         { return append([]byte{kSeen}, id[:]...) }

// outboxQueueKey is an entry's place in its recipient's queue.
func outboxQueueKey(to protocol.ID, seq uint64, id MsgID) []byte {
	k := make([]byte, 0, 1+protocol.IDSize+8+MsgIDSize)
	k = append(append(k, kOutboxQueue), to[:]...)
	k = binary.BigEndian.AppendUint64(k, seq)
	return append(k, id[:]...)
}

// parseOutboxQueueKey reads what outboxQueueKey wrote; a key of another
// size is ErrCorrupt.
func parseOutboxQueueKey(key []byte) (to protocol.ID, seq uint64, id MsgID, err error) {
	if len(key) != 1+protocol.IDSize+8+MsgIDSize {
		return to, 0, id, corrupt(rowOutboxQueue, "key size")
	}
	to = protocol.ID(key[1 : 1+protocol.IDSize])
	seq = getUint64(key[1+protocol.IDSize:])
	id = MsgID(key[1+protocol.IDSize+8:])
	return to, seq, id, nil
}

// nanos and fromNanos encode times in rows; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func getUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
