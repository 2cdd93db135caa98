package store

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// TestNoPlaintextOnDisk writes unique markers into a message body, a
// friend's name and an outbox envelope, then reads every file under the
// data directory and looks for them, for the passphrase, and for the
// private keys (raw, hex and base64).
func TestNoPlaintextOnDisk(t *testing.T) {
	t.Parallel()
	s, dir, c := newTestStore(t)
	ctx := t.Context()
	marker := randBytes(24)
	markerHex := hex.EncodeToString(marker)
	friend := randUser()
	if _, err := s.PutFriend(ctx, Friend{UserID: friend, Name: "name-" + markerHex, Status: FriendAccepted}); err != nil {
		t.Fatal(err)
	}
	in := incoming(friend, "body-"+markerHex)
	in.Body = append(in.Body, marker...)
	if _, err := s.StoreReceived(ctx, in); err != nil {
		t.Fatal(err)
	}
	out := Message{ID: randMsgID(), Conversation: DirectConversation(friend), From: testKey.ID(), To: friend,
		Body: []byte("out-" + markerHex)}
	env := append([]byte("envelope-"+markerHex), marker...)
	if _, err := s.AddOutgoing(ctx, out, OutboxEntry{Recipient: friend, Envelope: env}); err != nil {
		t.Fatal(err)
	}
	pk, err := protocol.GeneratePrekey(testKey, c.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutPrekey(ctx, pk); err != nil {
		t.Fatal(err)
	}
	hostKey := randBytes(64)
	if err := s.PutHostKey(ctx, hostKey); err != nil {
		t.Fatal(err)
	}
	// Some volume, so that badger has more than one kind of file to write.
	var batch []Message
	for range 200 {
		batch = append(batch, incoming(friend, "filler "+markerHex))
	}
	if _, err := s.StoreReceivedBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	idDER := testKey.Bytes()
	secrets := map[string][]byte{
		"marker":             marker,
		"marker hex":         []byte(markerHex),
		"marker base64":      []byte(base64.StdEncoding.EncodeToString(marker)),
		"passphrase":         testPass,
		"identity key":       idDER,
		"identity key tail":  idDER[len(idDER)-64:],
		"identity key b64":   []byte(base64.StdEncoding.EncodeToString(idDER)[:64]),
		"prekey":             pk.Marshal(),
		"host key":           hostKey,
		"host key hex":       []byte(hex.EncodeToString(hostKey)),
		"friend name prefix": []byte("name-" + markerHex[:16]),
	}
	// Scan while open (write-ahead log, memtable) and after Close (tables).
	scanFiles(t, dir, secrets)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	scanFiles(t, dir, secrets)
}

// scanFiles fails the test if any file under dir contains a secret. As a
// check on the scan itself, the user ID (which the metadata file holds in
// clear, on purpose) must be found.
func scanFiles(t *testing.T, dir string, secrets map[string][]byte) {
	t.Helper()
	files := 0
	control := []byte(testKey.ID().String())
	sawControl := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		files++
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		data, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		for name, secret := range secrets {
			if bytes.Contains(data, secret) {
				t.Errorf("%s appears in %s", name, path)
			}
		}
		sawControl = sawControl || bytes.Contains(data, control)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 || !sawControl {
		t.Fatalf("scanned %d files and did not find the user ID: the scan is broken", files)
	}
}
