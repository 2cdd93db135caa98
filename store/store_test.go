package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// snapshot returns, for every file and directory under dir: name, size,
// mode, mtime and the SHA-256 of the contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		sum := ""
		if fi.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			sum = string(h.Sum(nil))
		}
		out[rel] = fi.Mode().String() + "|" + fi.ModTime().String() + "|" + fmt.Sprint(fi.Size()) + "|" + sum
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCreateOpenIdentity(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	if s.UserID() != testKey.ID() {
		t.Fatalf("UserID = %s, want %s", s.UserID(), testKey.ID())
	}
	if !Exists(dir) {
		t.Fatal("Exists = false after Create")
	}
	info, err := ReadInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.UserID != testKey.ID() || !info.PublicKey.Equal(testKey.Public()) || info.KDF != cheapKDF || info.Version != 1 {
		t.Fatalf("ReadInfo = %+v", info)
	}
	s = reopen(t, s, c)
	id, err := s.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id.Bytes(), testKey.Bytes()) {
		t.Fatal("identity changed across reopen")
	}
	fi, err := os.Stat(filepath.Join(dir, MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("metadata mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenTwiceIsLocked(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	if _, err := Open(dir, testPass, testOptions(c)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if _, err := s.Friends(t.Context()); err != nil {
		t.Fatalf("first store after a refused Open: %v", err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	t.Parallel()
	_, dir, _ := newTestStore(t)
	if _, err := Create(dir, testPass, testKey, testOptions(nil)); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	// A database left by an interrupted Create.
	dir2 := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir2, DBDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir2, testPass, testKey, testOptions(nil)); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over leftover db: %v, want ErrExists", err)
	}
}

func TestOpenNoStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if Exists(dir) {
		t.Fatal("Exists on an empty dir")
	}
	if _, err := Open(dir, testPass, testOptions(nil)); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Open: %v, want ErrNoStore", err)
	}
	if _, err := ReadInfo(dir); !errors.Is(err, ErrNoStore) {
		t.Fatalf("ReadInfo: %v, want ErrNoStore", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Open left files behind: %v", entries)
	}
}

func TestCreateRejectsBadArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		name string
		pass []byte
		key  *protocol.PrivateKey
		opts Options
		want error
	}{
		{"empty passphrase", nil, testKey, testOptions(nil), ErrInvalid},
		{"no key", testPass, nil, testOptions(nil), ErrInvalid},
		{"memory over 4 GiB", testPass, testKey, Options{KDF: KDFParams{Time: 1, MemoryKiB: MaxKDFMemoryKiB + 1, Threads: 1}}, ErrBadParams},
		{"no threads", testPass, testKey, Options{KDF: KDFParams{Time: 1, MemoryKiB: 8 << 10}}, ErrBadParams},
		{"too many passes", testPass, testKey, Options{KDF: KDFParams{Time: 1000, MemoryKiB: 8 << 10, Threads: 1}}, ErrBadParams},
		{"negative cache", testPass, testKey, Options{KDF: cheapKDF, BlockCacheSize: -1}, ErrInvalid},
	}
	for _, tc := range cases {
		if _, err := Create(dir, tc.pass, tc.key, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if Exists(dir) {
		t.Fatal("a rejected Create left a store")
	}
}

func TestWrongPassphraseChangesNothing(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	f := randUser()
	if _, err := s.StoreReceived(t.Context(), incoming(f, "hello")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	for _, pass := range [][]byte{[]byte("wrong"), nil, append(append([]byte{}, testPass...), 'x')} {
		if _, err := Open(dir, pass, testOptions(c)); !errors.Is(err, ErrBadPassphrase) {
			t.Fatalf("Open(%q): %v, want ErrBadPassphrase", pass, err)
		}
	}
	after := snapshot(t, dir)
	if !reflect.DeepEqual(before, after) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("%s changed or appeared", k)
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				t.Errorf("%s disappeared", k)
			}
		}
		t.Fatal("wrong passphrase changed the data directory")
	}
	s = openTest(t, dir, c)
	if n := len(mustPage(t, s, DirectConversation(f))); n != 1 {
		t.Fatalf("%d messages after reopen, want 1", n)
	}
}

// editMeta rewrites fields of a store's metadata file.
func editMeta(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, MetaFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTamperedMetadata(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	kdf := func(field string, v any) func(map[string]any) {
		return func(m map[string]any) { m["kdf"].(map[string]any)[field] = v }
	}
	cases := []struct {
		name string
		edit func(map[string]any)
		want error
	}{
		{"memory 8 GiB", kdf("memory_kib", 8<<20), ErrBadParams},
		{"zero passes", kdf("time", 0), ErrBadParams},
		{"255 threads", kdf("threads", 255), ErrBadParams},
		{"short salt", kdf("salt", "AAAA"), ErrBadParams},
		{"other KDF", kdf("algorithm", "scrypt"), ErrBadParams},
		{"cheaper memory", kdf("memory_kib", 4<<10), ErrBadPassphrase},
		{"future version", func(m map[string]any) { m["version"] = 2 }, ErrCorrupt},
		{"unknown field", func(m map[string]any) { m["extra"] = true }, ErrCorrupt},
		{"bad user ID", func(m map[string]any) { m["user_id"] = "nope" }, ErrCorrupt},
		{"other identity", func(m map[string]any) {
			m["user_id"] = otherKey.ID().String()
			m["public_key"] = otherKey.Public().Bytes()
		}, ErrTampered},
	}
	for _, tc := range cases {
		editMeta(t, dir, tc.edit)
		s, err := Open(dir, testPass, testOptions(c))
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Open: %v, want %v", tc.name, err, tc.want)
		}
		if err := os.WriteFile(filepath.Join(dir, MetaFile), orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	openTest(t, dir, c)
}

func TestDefaultKDFParams(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("Argon2id with 64 MiB")
	}
	dir := t.TempDir()
	o := testOptions(nil)
	o.KDF = KDFParams{}
	s, err := Create(dir, testPass, testKey, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	info, err := ReadInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.KDF != DefaultKDF || DefaultKDF != (KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}) {
		t.Fatalf("KDF = %+v, want t=3 m=64MiB p=4", info.KDF)
	}
	o.KDF = cheapKDF // ignored by Open
	s, err = Open(dir, testPass, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s, _, _ := newTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := t.Context()
	if _, err := s.Identity(); !errors.Is(err, ErrClosed) {
		t.Errorf("Identity: %v", err)
	}
	if _, err := s.StoreReceived(ctx, incoming(randUser(), "x")); !errors.Is(err, ErrClosed) {
		t.Errorf("StoreReceived: %v", err)
	}
	if _, err := s.Friends(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Friends: %v", err)
	}
}

// TestReopenKeepsEverything fills every kind of row, reopens the store
// and reads it all back.
func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	s, _, c := newTestStore(t)
	ctx := t.Context()
	friend := randUser()
	if _, err := s.PutFriend(ctx, Friend{UserID: friend, Name: "Bob", PublicKey: otherKey.Public().Bytes(),
		Card: "parley:card", Status: FriendAccepted, Verified: true}); err != nil {
		t.Fatal(err)
	}
	conv := DirectConversation(friend)
	if _, err := s.StoreReceived(ctx, incoming(friend, "hi there")); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Second)
	out := Message{ID: randMsgID(), Conversation: conv, From: testKey.ID(), To: friend, Kind: "text", Body: []byte("hello back")}
	if _, err := s.AddOutgoing(ctx, out, OutboxEntry{Recipient: friend, Envelope: []byte("envelope")}); err != nil {
		t.Fatal(err)
	}
	pk, err := protocol.GeneratePrekey(testKey, c.Now(), 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutPrekey(ctx, pk); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHostKey(ctx, []byte("host key bytes")); err != nil {
		t.Fatal(err)
	}

	type state struct {
		Friends  []Friend
		Convs    []Conversation
		Page     []Message
		Queue    []OutboxEntry
		Prekeys  [][]byte
		HostKey  []byte
		Identity []byte
		Seen     bool
	}
	read := func(s *Store) state {
		t.Helper()
		var st state
		var err error
		if st.Friends, err = s.Friends(ctx); err != nil {
			t.Fatal(err)
		}
		if st.Convs, err = s.Conversations(ctx); err != nil {
			t.Fatal(err)
		}
		st.Page = mustPage(t, s, conv)
		if st.Queue, err = s.OutboxQueue(ctx, friend, 0, 10); err != nil {
			t.Fatal(err)
		}
		pks, err := s.Prekeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pks {
			st.Prekeys = append(st.Prekeys, p.Prekey.Marshal())
		}
		if st.HostKey, err = s.HostKey(ctx); err != nil {
			t.Fatal(err)
		}
		id, err := s.Identity()
		if err != nil {
			t.Fatal(err)
		}
		st.Identity = id.Bytes()
		if st.Seen, err = s.Seen(ctx, st.Page[1].ID); err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := read(s)
	if len(before.Friends) != 1 || len(before.Convs) != 1 || len(before.Page) != 2 || len(before.Queue) != 1 ||
		len(before.Prekeys) != 1 || !before.Seen || before.Convs[0].Unread != 1 {
		t.Fatalf("unexpected state before reopen: %+v", before)
	}
	after := read(reopen(t, s, c))
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("state changed across reopen:\nbefore %+v\nafter  %+v", before, after)
	}
}

// mustPage returns the newest page (up to 100) of a conversation.
func mustPage(t testing.TB, s *Store, conv ConversationID) []Message {
	t.Helper()
	msgs, _, err := s.Messages(t.Context(), conv, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
