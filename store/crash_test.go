package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/protocol"
)

// crashEnv, when set, makes this test binary the crash child: it names the
// data directory the child writes to.
const crashEnv = "PARLEY_STORE_CRASH_DIR"

// crashSender is the fixed sender of the child's messages.
var crashSender = [32]byte{'c', 'r', 'a', 's', 'h'}

// TestCrashChild is the child half of TestCrash: it opens the store and
// stores messages in a loop, printing each ID only after StoreReceived
// has returned, until it is killed (or gives up after a while, should the
// parent have died).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("the child half of TestCrash")
	}
	s, err := Open(dir, testPass, testOptions(nil))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child: Open:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		m := Message{
			ID:           randMsgID(),
			Conversation: ConversationID(crashSender),
			From:         crashSender,
			Kind:         "text",
			Body:         []byte(fmt.Sprint("crash message ", i)),
			SentAt:       time.Now(),
		}
		if _, err := s.StoreReceived(context.Background(), m); err != nil {
			fmt.Fprintln(os.Stderr, "crash child: StoreReceived:", err)
			os.Exit(3)
		}
		// One write per line, after the store call returned.
		fmt.Fprintf(out, "stored %s\n", m.ID)
		if err := out.Flush(); err != nil {
			os.Exit(4)
		}
	}
	s.Close()
	os.Exit(0)
}

// lockedBuffer collects the child's stderr for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCrash kills a child process (SIGKILL) in the middle of a stream of
// StoreReceived calls, then checks that every write the child reported as
// done survived and that the database opens.
func TestCrash(t *testing.T) {
	t.Parallel()
	if os.Getenv(crashEnv) != "" {
		t.Skip("inside the crash child")
	}
	s, dir, _ := newTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})

	// Only complete lines count: a line cut short by the kill is dropped.
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	var ids []MsgID
	take := func(line string) {
		hexID, ok := strings.CutPrefix(line, "stored ")
		if !ok {
			return // test framework output
		}
		id, err := protocol.ParseMsgID(hexID)
		if err != nil {
			t.Errorf("bad line from child: %q", line)
			return
		}
		ids = append(ids, id)
	}
	timeout := time.NewTimer(90 * time.Second)
	defer timeout.Stop()
	for len(ids) < 50 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("child exited after %d writes: %s", len(ids), stderr.String())
			}
			take(line)
		case <-timeout.C:
			t.Fatalf("child wrote %d messages in 90 s: %s", len(ids), stderr.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for draining := true; draining; {
		select {
		case line, ok := <-lines:
			if !ok {
				draining = false
				break
			}
			take(line)
		case <-timeout.C:
			t.Fatal("child's stdout did not close after SIGKILL")
		}
	}
	err = cmd.Wait()
	waited = true
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child exit: %v, want killed; stderr: %s", err, stderr.String())
	}
	t.Logf("child reported %d writes before SIGKILL", len(ids))

	s = openTest(t, dir, nil)
	for _, id := range ids {
		if _, err := s.Message(t.Context(), id); err != nil {
			t.Fatalf("message %s reported stored but lost: %v", id, err)
		}
		if seen, err := s.Seen(t.Context(), id); err != nil || !seen {
			t.Fatalf("message %s: seen = %v, %v", id, seen, err)
		}
	}
	conv, err := s.Conversation(t.Context(), ConversationID(crashSender))
	if err != nil {
		t.Fatal(err)
	}
	if conv.Unread < len(ids) {
		t.Fatalf("unread %d < %d reported writes", conv.Unread, len(ids))
	}
}
