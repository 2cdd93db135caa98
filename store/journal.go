package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// The journal makes the store's writes durable; badger runs without
// SyncWrites. badger's own sync (SyncWrites) msyncs its memory-mapped
// write-ahead log, and on this kind of machine that cost about 0.2 ms of
// CPU a message in the two-node throughput benchmark (2,274 msgs/s with
// it, 4,426 without, same run conditions): every sync cleans the mapped
// pages, and the next write to each faults to dirty it again. The
// journal writes each group commit's writes to a plain file with
// write(2) before the same writes are committed to badger; the
// durability stage (durable.go) fdatasyncs it beside that commit, and a
// write is acknowledged only once the journal holds it durably.
//
// Files: <store>/journal/<n>.log, a segment each, numbered from 1. A
// segment starts with journalMagic and a random 16-byte generation; each
// record is a 4-byte big-endian length and the record sealed with the
// journal key (AES-256-GCM, random nonce), the generation and the
// record's sequence number in the segment as associated data. A record
// holds a transaction's writes: sets (with their expiry and user meta)
// and deletes, in order. A segment is made full of zeros (segmentLimit)
// and synced before it is used, and records are written over the zeros:
// an fdatasync then writes data blocks only, where an append that grows
// the file also commits the file system's journal (here 0.3–0.9 ms
// against 1.8–2.0 ms for 13 KiB). A zero length ends the records.
//
// Recovery (Open): every segment is replayed into badger in order, each
// record as one transaction. Replaying a record badger already has
// writes the same values again, so replaying from the start of a segment
// over any later state ends in the state after the last record. A record
// cut short at the end of the last segment (a crash in mid-append) was
// never acknowledged and is dropped; a record that fails its check with
// a valid record after it is ErrTampered.
//
// Checkpoints: when a record does not fit in what is left of a segment
// the journal starts the next one (from a spare segment zeroed in the
// background, when one is ready) and the committer, in the background,
// fdatasyncs badger's memtable logs and value logs (through their own
// descriptors: the pages badger dirtied through its mappings are the
// same pages) and then removes the older segments; flushed memtables are
// already synced tables. Close removes every segment after badger's own
// clean close, keeping the last one, zeroed again, as the next Open's
// spare, so that Open does not zero a segment each time.

const (
	journalDir   = "journal"
	journalMagic = "PARLEYJ1"
	genSize      = 16
	// segmentLimit is a segment's size: a record that does not fit in
	// what is left starts the next segment, and the older ones are
	// checkpointed.
	segmentLimit = 4 << 20
	// maxJournalRecord bounds a record's length as read back (badger
	// refuses bigger transactions long before this).
	maxJournalRecord = 256 << 20
)

// spareName is the zeroed segment made ahead of need.
const spareName = "spare"

const (
	jSet byte = iota + 1
	jDelete
)

// journal is the open journal: the segment being appended to. It is
// written by the committer's goroutine only; the durability stage syncs
// it (fmu keeps the current segment from being closed under a sync), and
// the checkpoint works on older segments and badger's files.
type journal struct {
	fmu   sync.RWMutex // held for writing while f changes, for reading by sync
	dir   string
	dbDir string
	seal  *sealer
	spare chan *os.File // a zeroed segment made ahead of need (at most one)
	seg   int           // number of the current segment
	f     *os.File      // the current segment, written in place
	gen   [genSize]byte
	seq   uint64 // records in the current segment
	size  int64  // bytes in the current segment
	prev  int64  // its size before the last record (undo)
	total uint64 // records written since Open: the last one's generation
}

// batch is the writes of one transaction, encoded as they are made.
type batch struct{ buf []byte }

func (b *batch) set(key, val []byte, expiresAt uint64, meta byte) {
	b.buf = append(b.buf, jSet, meta)
	b.buf = binary.BigEndian.AppendUint64(b.buf, expiresAt)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(key)))
	b.buf = append(b.buf, key...)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(val)))
	b.buf = append(b.buf, val...)
}

func (b *batch) del(key []byte) {
	b.buf = append(b.buf, jDelete)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(key)))
	b.buf = append(b.buf, key...)
}

// applyRecord replays a decoded record into txn; rec is a fresh
// plaintext the transaction may keep slices of.
func applyRecord(txn *badger.Txn, rec []byte) error {
	for len(rec) > 0 {
		op := rec[0]
		rec = rec[1:]
		switch op {
		case jSet:
			if len(rec) < 9 {
				return errors.New("short set")
			}
			meta, expires := rec[0], binary.BigEndian.Uint64(rec[1:9])
			rec = rec[9:]
			key, rest, err := uvarintBytes(rec)
			if err != nil {
				return err
			}
			val, rest, err := uvarintBytes(rest)
			if err != nil {
				return err
			}
			rec = rest
			e := badger.NewEntry(key, val).WithMeta(meta)
			e.ExpiresAt = expires
			if err := txn.SetEntry(e); err != nil {
				return err
			}
		case jDelete:
			key, rest, err := uvarintBytes(rec)
			if err != nil {
				return err
			}
			rec = rest
			if err := txn.Delete(key); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown operation %d", op)
		}
	}
	return nil
}

func uvarintBytes(b []byte) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, errors.New("bad length")
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// openJournal replays the segments in <dir>/journal into db, makes what
// they held durable in badger's own files, removes them and starts a new
// segment.
func openJournal(dir string, db *badger.DB, key []byte) (*journal, error) {
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	j := &journal{dir: filepath.Join(dir, journalDir), dbDir: filepath.Join(dir, DBDir), seal: sl, spare: make(chan *os.File, 1)}
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: journal: %w", err)
	}
	// A half-made segment left by a crash holds nothing; a spare is whole
	// (it is renamed into place only once zeroed and synced), and is used.
	if tmps, err := filepath.Glob(filepath.Join(j.dir, "*.tmp")); err == nil {
		for _, t := range tmps {
			if err := os.Remove(t); err != nil {
				return nil, fmt.Errorf("store: journal: %w", err)
			}
		}
	}
	if f, err := os.OpenFile(filepath.Join(j.dir, spareName), os.O_RDWR, 0); err == nil {
		j.spare <- f
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: journal: %w", err)
	}
	segs, err := j.segments()
	if err != nil {
		return nil, err
	}
	for i, n := range segs {
		if err := j.replay(db, n, i == len(segs)-1); err != nil {
			return nil, err
		}
	}
	if len(segs) > 0 {
		if err := j.checkpoint(segs[len(segs)-1]); err != nil {
			return nil, err
		}
		j.seg = segs[len(segs)-1]
	}
	if err := j.start(j.seg + 1); err != nil {
		return nil, err
	}
	return j, nil
}

// segments lists the segment numbers in order.
func (j *journal) segments() ([]int, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("store: journal: %w", err)
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".log")); err == nil && strings.HasSuffix(e.Name(), ".log") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (j *journal) path(n int) string { return filepath.Join(j.dir, fmt.Sprintf("%08d.log", n)) }

// ad is the associated data of record seq of the segment with gen.
func ad(gen []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(journalMagic), gen...), seq)
}

// replay applies segment n to db. last says it is the newest segment,
// the only one whose end may be cut short.
func (j *journal) replay(db *badger.DB, n int, last bool) error {
	data, err := os.ReadFile(j.path(n))
	if err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	hdr := len(journalMagic) + genSize
	if len(data) < hdr || string(data[:len(journalMagic)]) != journalMagic {
		if last && len(data) < hdr {
			return nil // a segment whose header was never synced holds nothing acknowledged
		}
		return fmt.Errorf("%w: journal segment %d has no header", ErrCorrupt, n)
	}
	gen := data[len(journalMagic):hdr]
	rest := data[hdr:]
	for seq := uint64(0); len(rest) >= 4 && binary.BigEndian.Uint32(rest) != 0; seq++ {
		rec, next, ok := j.read(rest, gen, seq)
		if !ok {
			// Cut short at the end (a crash mid-append, never
			// acknowledged), or damaged with a good record after it.
			if last && !j.anyValidAfter(rest, gen, seq+1) {
				return nil
			}
			return fmt.Errorf("%w: journal segment %d record %d", ErrTampered, n, seq)
		}
		if err := db.Update(func(txn *badger.Txn) error { return applyRecord(txn, rec) }); err != nil {
			return fmt.Errorf("store: replaying journal segment %d record %d: %w", n, seq, err)
		}
		rest = next
	}
	return nil
}

// read opens the record at the start of b.
func (j *journal) read(b, gen []byte, seq uint64) (rec, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > maxJournalRecord || int(n) > len(b)-4 {
		return nil, nil, false
	}
	rec, err := j.seal.open("journal", ad(gen, seq), b[4:4+n])
	if err != nil {
		return nil, nil, false
	}
	return rec, b[4+n:], true
}

// anyValidAfter reports whether a valid record numbered seq starts
// anywhere after the damaged record at the start of b.
func (j *journal) anyValidAfter(b, gen []byte, seq uint64) bool {
	for i := 1; i+4 < len(b); i++ {
		if _, _, ok := j.read(b[i:], gen, seq); ok {
			return true
		}
	}
	return false
}

// start makes segment n, full of zeros and synced, the current one.
func (j *journal) start(n int) error {
	var f *os.File
	select {
	case f = <-j.spare:
		if err := os.Rename(filepath.Join(j.dir, spareName), j.path(n)); err != nil {
			f.Close()
			return fmt.Errorf("store: journal: %w", err)
		}
		if err := syncDir(j.dir); err != nil {
			f.Close()
			return fmt.Errorf("store: journal: %w", err)
		}
	default:
		var err error
		if f, err = zeroedSegment(j.dir, j.path(n)); err != nil {
			return fmt.Errorf("store: journal: %w", err)
		}
	}
	var gen [genSize]byte
	_, _ = rand.Read(gen[:])
	hdr := append([]byte(journalMagic), gen[:]...)
	if _, err := f.WriteAt(hdr, 0); err != nil {
		f.Close()
		return fmt.Errorf("store: journal: %w", err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		f.Close()
		return fmt.Errorf("store: journal: %w", err)
	}
	j.fmu.Lock()
	defer j.fmu.Unlock()
	if j.f != nil {
		// The records of the segment left behind are durable before
		// any of the next: a sync running on it ends first (fmu).
		if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
			f.Close()
			return fmt.Errorf("store: journal: %w", err)
		}
		j.f.Close()
	}
	j.f, j.seg, j.gen, j.seq, j.size = f, n, gen, 0, int64(len(hdr))
	return nil
}

// zeroedSegment creates path with segmentLimit zero bytes, synced, under
// a temporary name first, so that a segment on disk is never short.
func zeroedSegment(dir, path string) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 256<<10)
	for off := 0; off < segmentLimit; off += len(zeros) {
		if _, err := f.Write(zeros); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// prepare makes the spare segment if there is none; it runs beside the
// committer (in the checkpoint's goroutine), one at a time.
func (j *journal) prepare() error {
	if len(j.spare) > 0 {
		return nil
	}
	f, err := zeroedSegment(j.dir, filepath.Join(j.dir, spareName))
	if err != nil {
		return fmt.Errorf("store: journal spare: %w", err)
	}
	j.spare <- f
	return nil
}

// fits reports whether a record of n sealed bytes fits in the segment
// (a first record always goes in, however big).
func (j *journal) fits(n int) bool {
	return j.seq == 0 || j.size+4+int64(n) <= segmentLimit
}

// write writes b as the next record, without syncing it (sync does,
// beside the committer's badger commit), and returns its generation: the
// number of records written since Open. A record that does not fit
// starts the next segment first, after syncing the one it leaves; the
// number of that segment is returned as left (0 if none), for the caller
// to checkpoint. The committer writes a record only once the ones before
// it are durable, so that at most the last record of the journal can be
// cut short by a crash (replay).
func (j *journal) write(b *batch) (gen uint64, left int, err error) {
	n := sealOverhead + len(b.buf) // the sealed record's length
	if !j.fits(n) {
		left = j.seg
		if err := j.start(j.seg + 1); err != nil {
			return 0, 0, err
		}
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+n), uint32(n))
	out = j.seal.sealTo(out, ad(j.gen[:], j.seq), b.buf)
	if _, err := j.f.WriteAt(out, j.size); err != nil {
		j.zero(j.size, len(out))
		return 0, left, fmt.Errorf("store: journal: %w", err)
	}
	j.prev = j.size
	j.size += int64(len(out))
	j.seq++
	j.total++
	return j.total, left, nil
}

// sync makes every record written so far durable. It runs beside write
// (in the durability stage's goroutine); a new segment waits for it.
func (j *journal) sync() error {
	j.fmu.RLock()
	defer j.fmu.RUnlock()
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	return nil
}

// zero overwrites n bytes at off with zeros (a record taken back).
func (j *journal) zero(off int64, n int) error {
	_, err := j.f.WriteAt(make([]byte, n), off)
	return err
}

// undo takes back the last record (its transaction did not commit).
func (j *journal) undo() error {
	if err := j.zero(j.prev, int(j.size-j.prev)); err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	j.size = j.prev
	j.seq--
	return unix.Fdatasync(int(j.f.Fd()))
}

// checkpoint makes everything badger holds durable in its own files and
// removes the segments numbered up to upTo.
func (j *journal) checkpoint(upTo int) error {
	if err := syncBadgerFiles(j.dbDir); err != nil {
		return err
	}
	segs, err := j.segments()
	if err != nil {
		return err
	}
	for _, n := range segs {
		if n <= upTo {
			if err := os.Remove(j.path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("store: checkpoint: %w", err)
			}
		}
	}
	return syncDir(j.dir)
}

// syncBadgerFiles fdatasyncs badger's memtable and value logs in dbDir.
func syncBadgerFiles(dbDir string) error {
	ents, err := os.ReadDir(dbDir)
	if err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext != ".mem" && ext != ".vlog" {
			continue
		}
		f, err := os.Open(filepath.Join(dbDir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // flushed into a (synced) table and removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("store: checkpoint: %w", err)
		}
		err = unix.Fdatasync(int(f.Fd()))
		f.Close()
		if err != nil {
			return fmt.Errorf("store: checkpoint %s: %w", e.Name(), err)
		}
	}
	return nil
}

// close closes the current segment. clean (badger was closed cleanly,
// so its files hold everything) removes every segment, keeping the
// current one, its written part zeroed again, as the next Open's spare
// when there is none: an Open then starts without zeroing a segment.
func (j *journal) close(clean bool) error {
	var spare *os.File
	select {
	case spare = <-j.spare:
	default:
	}
	if clean && spare == nil {
		if err := j.recycle(); err != nil {
			j.f.Close()
			return err
		}
	} else if spare != nil {
		spare.Close()
	}
	err := j.f.Close()
	if clean {
		segs, serr := j.segments()
		if serr != nil {
			return serr
		}
		for _, n := range segs {
			if err := os.Remove(j.path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("store: journal: %w", err)
			}
		}
		if err := syncDir(j.dir); err != nil {
			return fmt.Errorf("store: journal: %w", err)
		}
	}
	return err
}

// recycle zeroes what the current segment holds, syncs it and renames it
// to the spare.
func (j *journal) recycle() error {
	if err := j.zero(0, int(j.size)); err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	if err := os.Rename(j.path(j.seg), filepath.Join(j.dir, spareName)); err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	return nil
}
