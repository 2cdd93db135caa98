package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/internal/relaydb"
	"github.com/parley-chat/parley/protocol"
)

// Key layout of the relay's database. IDs and times are big-endian, so a
// prefix scan runs in deposit (or expiry) order.
//
//	'm' ‖ recipient(32) ‖ id(8)                 → deposited(8) ‖ expires(8) ‖ u8 n ‖ depositor(n) ‖ envelope
//	't' ‖ expires(8) ‖ recipient(32) ‖ id(8)    → size(4) ‖ depositor
//	'r' ‖ recipient(32)                         → registration expiry(8)
const (
	prefixMsg      = 'm'
	prefixExpiry   = 't'
	prefixRegister = 'r'
	idLen          = 32
	msgKeyLen      = 1 + idLen + 8
	expiryKeyLen   = 1 + 8 + idLen + 8
	msgHeaderLen   = 8 + 8 + 1
)

// usage is what one recipient's mailbox holds.
type usage struct {
	n     int
	bytes int64
}

// pair is a depositor and a recipient. The counts are flat maps of values,
// so a relay holding one envelope for each of 100,000 users keeps them in
// a few tens of MiB (BenchmarkHold100k).
type pair struct {
	user protocol.ID
	dep  peer.ID
}

// db is the relay's store of held envelopes, with the counts the limits
// need kept in memory (rebuilt from the expiry index at open).
type db struct {
	bdb *badger.DB

	mu     sync.Mutex // guards the fields below
	usage  map[protocol.ID]usage
	perDep map[pair]int
	regs   map[protocol.ID]time.Time
	held   int
	bytes  int64
	nextID uint64

	delMu sync.Mutex // serialises deletions (acks and sweeps)
}

// heldItem is one envelope read back.
type heldItem struct {
	id        uint64
	deposited time.Time
	envelope  []byte
}

func msgKey(user protocol.ID, id uint64) []byte {
	k := make([]byte, 0, msgKeyLen)
	k = append(append(k, prefixMsg), user[:]...)
	return binary.BigEndian.AppendUint64(k, id)
}

func expiryKey(exp int64, user protocol.ID, id uint64) []byte {
	k := binary.BigEndian.AppendUint64(append(make([]byte, 0, expiryKeyLen), prefixExpiry), uint64(exp))
	k = append(k, user[:]...)
	return binary.BigEndian.AppendUint64(k, id)
}

func regKey(user protocol.ID) []byte { return append([]byte{prefixRegister}, user[:]...) }

func openDB(dir string, log *slog.Logger, now time.Time) (*db, error) {
	bo := relaydb.Options(dir, log).WithSyncWrites(true)
	b, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("mailbox: opening database: %w", err)
	}
	d := &db{bdb: b, usage: map[protocol.ID]usage{}, perDep: map[pair]int{}, regs: map[protocol.ID]time.Time{}, nextID: uint64(now.UnixNano())}
	if err := errors.Join(d.load(), d.loadRegistrations()); err != nil {
		b.Close()
		return nil, err
	}
	return d, nil
}

// load rebuilds the counts from the expiry index.
func (d *db) load() error {
	deps := map[string]peer.ID{}
	return d.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixExpiry}, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("mailbox: reading index: %w", err)
			}
			if len(k) != expiryKeyLen || len(v) < 4 {
				return fmt.Errorf("mailbox: corrupt index row %x", k)
			}
			user := protocol.ID(k[9 : 9+idLen])
			id := binary.BigEndian.Uint64(k[9+idLen:])
			dep, ok := deps[string(v[4:])] // one string per depositor, not per row
			if !ok {
				dep = peer.ID(v[4:])
				deps[string(dep)] = dep
			}
			d.add(user, dep, int64(binary.BigEndian.Uint32(v)))
			d.nextID = max(d.nextID, id+1)
		}
		return nil
	})
}

// loadRegistrations reads the registrations.
func (d *db) loadRegistrations() error {
	return d.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRegister}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			v, err := it.Item().ValueCopy(nil)
			if err != nil || len(k) != 1+idLen || len(v) != 8 {
				return fmt.Errorf("mailbox: corrupt registration %x: %v", k, err)
			}
			d.regs[protocol.ID(k[1:])] = time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
		}
		return nil
	})
}

// add counts one envelope in; d.mu is held (or d is not shared yet).
func (d *db) add(user protocol.ID, dep peer.ID, size int64) {
	u := d.usage[user]
	u.n++
	u.bytes += size
	d.usage[user] = u
	d.perDep[pair{user, dep}]++
	d.held++
	d.bytes += size
}

// sub counts one envelope out; d.mu is held.
func (d *db) sub(user protocol.ID, dep peer.ID, size int64) {
	u, ok := d.usage[user]
	if !ok {
		return
	}
	u.n--
	u.bytes -= size
	if u.n <= 0 {
		delete(d.usage, user)
	} else {
		d.usage[user] = u
	}
	k := pair{user, dep}
	if d.perDep[k]--; d.perDep[k] <= 0 {
		delete(d.perDep, k)
	}
	d.held--
	d.bytes -= size
}

// registered reports whether user's registration is current at now.
func (d *db) registered(user protocol.ID, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	exp, ok := d.regs[user]
	return ok && now.Before(exp)
}

// register records that user may receive deposits until exp. It writes
// only when the stored expiry is more than refresh older, so a fetch does
// not cost a write each time.
func (d *db) register(user protocol.ID, exp time.Time, refresh time.Duration) error {
	d.mu.Lock()
	old, ok := d.regs[user]
	d.mu.Unlock()
	if ok && exp.Sub(old) < refresh {
		return nil
	}
	err := d.bdb.Update(func(txn *badger.Txn) error {
		return txn.Set(regKey(user), binary.BigEndian.AppendUint64(nil, uint64(exp.Unix())))
	})
	if err != nil {
		return fmt.Errorf("mailbox: storing registration: %w", err)
	}
	d.mu.Lock()
	d.regs[user] = exp
	d.mu.Unlock()
	return nil
}

// reserve counts an envelope of size from dep in for user if lim allows,
// and returns its ID.
func (d *db) reserve(user protocol.ID, dep peer.ID, size int64, lim Limits) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u, ok := d.usage[user]; ok {
		switch {
		case u.n >= lim.MaxEnvelopes:
			return 0, &RefusedError{Code: CodeFull, Detail: fmt.Sprintf("%d envelopes held", u.n)}
		case u.bytes+size > lim.MaxBytes:
			return 0, &RefusedError{Code: CodeFull, Detail: fmt.Sprintf("%d bytes held", u.bytes)}
		case d.perDep[pair{user, dep}] >= lim.MaxPerDepositor:
			return 0, &RefusedError{Code: CodeSenderQuota, Detail: fmt.Sprintf("%d envelopes from this peer held", d.perDep[pair{user, dep}])}
		}
	}
	if size > lim.MaxBytes {
		return 0, &RefusedError{Code: CodeFull, Detail: "envelope larger than the mailbox"}
	}
	id := d.nextID
	d.nextID++
	d.add(user, dep, size)
	return id, nil
}

// rows returns the message row and the expiry index row of an envelope.
func rows(user protocol.ID, dep peer.ID, envelope []byte, id uint64, now time.Time, ttl time.Duration) (mk, mv, ek, ev []byte) {
	exp := now.Add(ttl).Unix()
	depb := []byte(dep)
	mv = make([]byte, 0, msgHeaderLen+len(depb)+len(envelope))
	mv = binary.BigEndian.AppendUint64(mv, uint64(now.Unix()))
	mv = binary.BigEndian.AppendUint64(mv, uint64(exp))
	mv = append(append(append(mv, byte(len(depb))), depb...), envelope...)
	ev = append(binary.BigEndian.AppendUint32(nil, uint32(len(envelope))), depb...)
	return msgKey(user, id), mv, expiryKey(exp, user, id), ev
}

// parseMsg splits a message row's value.
func parseMsg(v []byte) (deposited, expires int64, dep peer.ID, envelope []byte, err error) {
	if len(v) < msgHeaderLen {
		return 0, 0, "", nil, errors.New("mailbox: corrupt message row")
	}
	n := int(v[16])
	if len(v) < msgHeaderLen+n {
		return 0, 0, "", nil, errors.New("mailbox: corrupt message row")
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), peer.ID(v[msgHeaderLen : msgHeaderLen+n]), v[msgHeaderLen+n:], nil
}

// scan returns up to limit of user's held envelopes with IDs from from
// on, in ID order, skipping those skip reports true for (without reading
// their values).
func (d *db) scan(user protocol.ID, from uint64, limit int, skip func(uint64) bool) ([]heldItem, error) {
	prefix := append([]byte{prefixMsg}, user[:]...)
	var out []heldItem
	err := d.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(msgKey(user, from)); it.Valid() && len(out) < limit; it.Next() {
			k := it.Item().Key()
			if len(k) != msgKeyLen {
				continue
			}
			id := binary.BigEndian.Uint64(k[1+idLen:])
			if skip(id) {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("mailbox: reading envelope: %w", err)
			}
			dep, _, _, env, err := parseMsg(v)
			if err != nil {
				return err
			}
			out = append(out, heldItem{id: id, deposited: time.Unix(dep, 0), envelope: env})
		}
		return nil
	})
	return out, err
}

// remove deletes user's envelopes ids (acknowledged); IDs not held are
// ignored. It returns how many it deleted.
func (d *db) remove(user protocol.ID, ids []uint64) (int, error) {
	d.delMu.Lock()
	defer d.delMu.Unlock()
	type gone struct {
		dep  peer.ID
		size int64
	}
	var out []gone
	err := d.bdb.Update(func(txn *badger.Txn) error {
		out = out[:0]
		for _, id := range ids {
			item, err := txn.Get(msgKey(user, id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			// Only the header is needed: the envelope is not copied.
			var exp, size int64
			var dep peer.ID
			err = item.Value(func(v []byte) error {
				_, e, d, env, err := parseMsg(v)
				exp, dep, size = e, peer.ID(strings.Clone(string(d))), int64(len(env))
				return err
			})
			if err != nil {
				return err
			}
			if err := txn.Delete(msgKey(user, id)); err != nil {
				return err
			}
			if err := txn.Delete(expiryKey(exp, user, id)); err != nil {
				return err
			}
			out = append(out, gone{dep, size})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("mailbox: deleting envelopes: %w", err)
	}
	d.mu.Lock()
	for _, g := range out {
		d.sub(user, g.dep, g.size)
	}
	d.mu.Unlock()
	return len(out), nil
}

// sweep deletes the envelopes and registrations expired at now, at most
// batch envelopes per transaction, and returns how many envelopes.
func (d *db) sweep(now time.Time, batch int) (int, error) {
	d.delMu.Lock()
	defer d.delMu.Unlock()
	total := 0
	for {
		type gone struct {
			user protocol.ID
			dep  peer.ID
			size int64
		}
		var out []gone
		err := d.bdb.Update(func(txn *badger.Txn) error {
			out = out[:0]
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixExpiry}, PrefetchValues: true, PrefetchSize: 64})
			defer it.Close()
			var keys [][]byte
			for it.Rewind(); it.Valid() && len(keys) < batch; it.Next() {
				k := it.Item().KeyCopy(nil)
				if len(k) != expiryKeyLen || int64(binary.BigEndian.Uint64(k[1:])) > now.Unix() {
					break
				}
				v, err := it.Item().ValueCopy(nil)
				if err != nil || len(v) < 4 {
					return fmt.Errorf("mailbox: corrupt index row %x: %v", k, err)
				}
				user := protocol.ID(k[9 : 9+idLen])
				out = append(out, gone{user, peer.ID(v[4:]), int64(binary.BigEndian.Uint32(v))})
				keys = append(keys, k, msgKey(user, binary.BigEndian.Uint64(k[9+idLen:])))
			}
			it.Close()
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("mailbox: sweeping: %w", err)
		}
		d.mu.Lock()
		for _, g := range out {
			d.sub(g.user, g.dep, g.size)
		}
		d.mu.Unlock()
		total += len(out)
		if len(out) < batch {
			break
		}
	}
	return total, d.sweepRegistrations(now)
}

func (d *db) sweepRegistrations(now time.Time) error {
	d.mu.Lock()
	var old []protocol.ID
	for u, exp := range d.regs {
		if !now.Before(exp) {
			old = append(old, u)
		}
	}
	d.mu.Unlock()
	if len(old) == 0 {
		return nil
	}
	err := d.bdb.Update(func(txn *badger.Txn) error {
		for _, u := range old {
			if err := txn.Delete(regKey(u)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailbox: sweeping registrations: %w", err)
	}
	d.mu.Lock()
	for _, u := range old {
		if exp, ok := d.regs[u]; ok && !now.Before(exp) {
			delete(d.regs, u)
		}
	}
	d.mu.Unlock()
	return nil
}

// gc reclaims value-log space that deleted envelopes left behind.
func (d *db) gc() {
	for d.bdb.RunValueLogGC(0.5) == nil {
	}
}

// totals returns the envelopes and bytes held.
func (d *db) totals() (int, int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.held, d.bytes
}

func (d *db) close() error {
	if err := d.bdb.Close(); err != nil {
		return fmt.Errorf("mailbox: closing database: %w", err)
	}
	return nil
}
