package grouprelay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/internal/relaydb"
	"github.com/parley-chat/parley/protocol"
)

// Key layout of the relay's group database. IDs are big-endian and grow
// with arrival, so a topic's messages scan oldest first.
//
//	'k' ‖ topic(32)                   → u8 anchored ‖ i64 superseded_ms ‖ i64 taken_ms ‖ ticket
//	'h' ‖ ticket hash(32)             → topic(32) ‖ ticket (every version taken, for lineage)
//	'm' ‖ topic(32) ‖ id(8)           → i64 arrived_ms ‖ chain(32) ‖ u32 iteration ‖ message
//	'i' ‖ topic(32) ‖ chain(32) ‖ u32 → id(8) ‖ u32 size of the 'm' value
//
// topic is SHA-256 of the topic's name.
const (
	prefixTicket = 'k'
	prefixHash   = 'h'
	prefixMsg    = 'm'
	prefixIndex  = 'i'
	msgHeaderLen = 8 + 32 + 4
)

type topicKey [32]byte

func keyOf(topic string) topicKey { return sha256.Sum256([]byte(topic)) }

func ticketKey(t topicKey) []byte { return append([]byte{prefixTicket}, t[:]...) }
func hashKey(h [32]byte) []byte   { return append([]byte{prefixHash}, h[:]...) }
func msgPrefix(t topicKey) []byte { return append([]byte{prefixMsg}, t[:]...) }
func msgKey(t topicKey, id uint64) []byte {
	return binary.BigEndian.AppendUint64(msgPrefix(t), id)
}
func indexKey(t topicKey, c protocol.ChainID, it uint32) []byte {
	k := append(append([]byte{prefixIndex}, t[:]...), c[:]...)
	return binary.BigEndian.AppendUint32(k, it)
}

// held is a ticket the relay holds for a topic.
type held struct {
	ticket     *protocol.RelayTicket
	anchored   bool
	superseded time.Time // zero while the topic is current
	taken      time.Time // when the relay took the ticket
}

func (h *held) encode() []byte {
	b := []byte{0}
	if h.anchored {
		b[0] = 1
	}
	var ms int64
	if !h.superseded.IsZero() {
		ms = h.superseded.UnixMilli()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	b = binary.BigEndian.AppendUint64(b, uint64(h.taken.UnixMilli()))
	return append(b, h.ticket.Marshal()...)
}

func decodeHeld(b []byte) (*held, error) {
	if len(b) < 17 {
		return nil, fmt.Errorf("%w: stored ticket", protocol.ErrMalformed)
	}
	t, err := protocol.ParseRelayTicket(b[17:])
	if err != nil {
		return nil, err
	}
	h := &held{ticket: t, anchored: b[0] == 1, taken: time.UnixMilli(int64(binary.BigEndian.Uint64(b[9:17])))}
	if ms := int64(binary.BigEndian.Uint64(b[1:9])); ms != 0 {
		h.superseded = time.UnixMilli(ms)
	}
	return h, nil
}

// usage is what the relay holds of one topic.
type usage struct {
	n     int
	bytes int64
	first uint64 // the ID of its oldest message (IDs grow with arrival)
}

// db is the relay's store of tickets and messages, with the counts the
// limits need kept in memory (rebuilt at open).
type db struct {
	bdb *badger.DB

	mu     sync.Mutex // guards the fields below and serialises writes
	usage  map[topicKey]usage
	n      int
	bytes  int64
	nextID uint64
}

func openDB(dir string, log *slog.Logger, now time.Time) (*db, error) {
	bo := relaydb.Options(dir, log)
	b, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("grouprelay: opening database: %w", err)
	}
	d := &db{bdb: b, usage: map[topicKey]usage{}, nextID: uint64(now.UnixNano())}
	if err := d.load(); err != nil {
		b.Close()
		return nil, err
	}
	return d, nil
}

// load rebuilds the counts from the index (small values, in the LSM
// tree, so this reads no message).
func (d *db) load() error {
	return d.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixIndex}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("grouprelay: reading the index: %w", err)
			}
			if len(k) != 1+32+32+4 || len(v) != 12 {
				continue
			}
			t, size, id := topicKey(k[1:33]), int64(binary.BigEndian.Uint32(v[8:])), binary.BigEndian.Uint64(v)
			u := d.usage[t]
			if u.n == 0 || id < u.first {
				u.first = id
			}
			u.n++
			u.bytes += size
			d.usage[t] = u
			d.n++
			d.bytes += size
			d.nextID = max(d.nextID, binary.BigEndian.Uint64(v)+1)
		}
		return nil
	})
}

// tickets returns every held ticket.
func (d *db) tickets() (map[topicKey]*held, error) {
	out := map[topicKey]*held{}
	err := d.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixTicket}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 33 {
				continue
			}
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			h, err := decodeHeld(b)
			if err != nil {
				return fmt.Errorf("grouprelay: stored ticket: %w", err)
			}
			out[topicKey(k[1:])] = h
		}
		return nil
	})
	return out, err
}

// putTicket stores h as its topic's ticket, and its ticket by hash.
func (d *db) putTicket(h *held) error {
	t := keyOf(h.ticket.Topic())
	return d.bdb.Update(func(txn *badger.Txn) error {
		if err := txn.Set(ticketKey(t), h.encode()); err != nil {
			return err
		}
		return txn.Set(hashKey(h.ticket.Hash()), append(t[:], h.ticket.Marshal()...))
	})
}

// ticketByHash returns a ticket the relay took, by its hash.
func (d *db) ticketByHash(hash []byte) (*protocol.RelayTicket, error) {
	if len(hash) != 32 {
		return nil, badger.ErrKeyNotFound
	}
	var t *protocol.RelayTicket
	err := d.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(hashKey([32]byte(hash)))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) < 32 {
				return fmt.Errorf("%w: stored ticket", protocol.ErrMalformed)
			}
			t, err = protocol.ParseRelayTicket(v[32:])
			return err
		})
	})
	return t, err
}

// put stores one accepted message of topic t; false for a chain and
// iteration it holds already. It then drops the topic's oldest messages
// over maxN or maxBytes, and the oldest of all over totalBytes; it
// returns how many it dropped.
func (d *db) put(t topicKey, m *protocol.GroupMessage, raw []byte, now time.Time, lim Limits) (bool, int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ik := indexKey(t, m.Chain, m.Iteration)
	id := d.nextID
	v := binary.BigEndian.AppendUint64(make([]byte, 0, msgHeaderLen+len(raw)), uint64(now.UnixMilli()))
	v = binary.BigEndian.AppendUint32(append(v, m.Chain[:]...), m.Iteration)
	v = append(v, raw...)
	dup := false
	err := d.bdb.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get(ik); err == nil {
			dup = true
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := txn.Set(msgKey(t, id), v); err != nil {
			return err
		}
		return txn.Set(ik, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, id), uint32(len(v))))
	})
	if err != nil || dup {
		return false, 0, err
	}
	d.nextID++
	u := d.usage[t]
	if u.n == 0 {
		u.first = id
	}
	u.n++
	u.bytes += int64(len(v))
	d.usage[t] = u
	d.n++
	d.bytes += int64(len(v))
	dropped := 0
	for d.usage[t].n > lim.MaxTopicMessages || d.usage[t].bytes > lim.MaxTopicBytes {
		n, err := d.dropOldest(t, time.Time{})
		if err != nil || n == 0 {
			return true, dropped, err
		}
		dropped += n
	}
	for d.bytes > lim.MaxBytes {
		oldest, ok, err := d.oldestTopic()
		if err != nil || !ok {
			return true, dropped, err
		}
		n, err := d.dropOldest(oldest, time.Time{})
		if err != nil || n == 0 {
			return true, dropped, err
		}
		dropped += n
	}
	return true, dropped, nil
}

// oldestTopic returns the topic whose first message arrived first, from
// the counts in memory (no read per topic).
func (d *db) oldestTopic() (topicKey, bool, error) {
	var best topicKey
	var bestID uint64
	found := false
	for t, u := range d.usage {
		if u.n > 0 && (!found || u.first < bestID) {
			best, bestID, found = t, u.first, true
		}
	}
	return best, found, nil
}

// dropOldest deletes topic t's oldest message; with before set, only one
// that arrived before it. It returns how many it deleted (0 or 1).
func (d *db) dropOldest(t topicKey, before time.Time) (int, error) {
	var key, ik []byte
	var size int64
	var next uint64 // the ID of the message after it
	err := d.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: msgPrefix(t)})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			return nil
		}
		item := it.Item()
		err := item.Value(func(v []byte) error {
			if len(v) < msgHeaderLen {
				return fmt.Errorf("%w: stored message", protocol.ErrMalformed)
			}
			if !before.IsZero() && int64(binary.BigEndian.Uint64(v)) >= before.UnixMilli() {
				return nil
			}
			key, size = item.KeyCopy(nil), int64(len(v))
			ik = indexKey(t, protocol.ChainID(v[8:40]), binary.BigEndian.Uint32(v[40:44]))
			return nil
		})
		if err == nil && key != nil {
			if it.Next(); it.Valid() {
				next = binary.BigEndian.Uint64(it.Item().Key()[33:])
			}
		}
		return err
	})
	if err != nil || key == nil {
		return 0, err
	}
	err = d.bdb.Update(func(txn *badger.Txn) error {
		return errors.Join(txn.Delete(key), txn.Delete(ik))
	})
	if err != nil {
		return 0, err
	}
	u := d.usage[t]
	u.n--
	u.bytes -= size
	u.first = next
	if u.n <= 0 {
		delete(d.usage, t)
	} else {
		d.usage[t] = u
	}
	d.n--
	d.bytes -= size
	return 1, nil
}

// sweep deletes the messages that arrived before cutoff, topic by topic
// (each topic's scan stops at its first younger message).
func (d *db) sweep(cutoff time.Time) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	total := 0
	for t := range d.usage {
		for {
			n, err := d.dropOldest(t, cutoff)
			if err != nil {
				return total, err
			}
			if n == 0 {
				break
			}
			total += n
		}
	}
	return total, nil
}

// held reports how many messages topic t holds.
func (d *db) held(t topicKey) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage[t].n
}

// deleteTopic deletes a topic's ticket and the versions of it kept for
// lineage (its messages go with the sweep).
func (d *db) deleteTopic(t topicKey) error {
	return d.bdb.Update(func(txn *badger.Txn) error {
		var del [][]byte
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixHash}, PrefetchValues: false})
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			_ = item.Value(func(v []byte) error {
				if len(v) >= 32 && bytes.Equal(v[:32], t[:]) {
					del = append(del, item.KeyCopy(nil))
				}
				return nil
			})
		}
		it.Close()
		del = append(del, ticketKey(t))
		for _, k := range del {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// chainMessages returns the stored messages of one chain of topic t from
// iteration from on, at most limit, in iteration order.
func (d *db) chainMessages(t topicKey, c protocol.ChainID, from uint32, limit int) ([][]byte, error) {
	var out [][]byte
	err := d.bdb.View(func(txn *badger.Txn) error {
		prefix := append(append([]byte{prefixIndex}, t[:]...), c[:]...)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Seek(binary.BigEndian.AppendUint32(bytes.Clone(prefix), from)); it.Valid() && len(out) < limit; it.Next() {
			idb, err := it.Item().ValueCopy(nil)
			if err != nil || len(idb) != 12 {
				return fmt.Errorf("grouprelay: message index: %w", errors.Join(err, protocol.ErrMalformed))
			}
			item, err := txn.Get(msgKey(t, binary.BigEndian.Uint64(idb[:8])))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) > msgHeaderLen {
				out = append(out, v[msgHeaderLen:])
			}
		}
		return nil
	})
	return out, err
}

// totals returns the messages and bytes held.
func (d *db) totals() (int, int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n, d.bytes
}

// gc reclaims value log space after deletions.
func (d *db) gc() {
	for d.bdb.RunValueLogGC(0.5) == nil {
	}
}

func (d *db) close() error {
	if err := d.bdb.Close(); err != nil {
		return fmt.Errorf("grouprelay: closing database: %w", err)
	}
	return nil
}

// firstMissing returns the first iteration of chain c of topic t that the
// relay lacks after the first it holds (0 when it holds none): what it
// asks members for after being away. What went before the first it holds
// (expired, dropped for room, or posted before the relay carried the
// topic) is not asked for again.
func (d *db) firstMissing(t topicKey, c protocol.ChainID) (uint32, error) {
	prefix := append(append([]byte{prefixIndex}, t[:]...), c[:]...)
	var next uint32
	err := d.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		first := true
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+4 {
				continue
			}
			n := binary.BigEndian.Uint32(k[len(prefix):])
			if !first && n != next {
				return nil
			}
			first, next = false, n+1
		}
		return nil
	})
	return next, err
}
