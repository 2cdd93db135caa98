package node

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestErrorCodes holds each failure to its code, its sentinel (errors.Is)
// and a clean one-line message without the package prefix.
func TestErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind *Error
		code Code
	}{
		{ErrWrongState, ErrWrongState, CodeWrongState},
		{fail(ErrWrongState, "node is locked"), ErrWrongState, CodeWrongState},
		{ErrExists, ErrExists, CodeConflict},
		{ErrBadPassphrase, ErrBadPassphrase, CodeBadPassphrase},
		{ErrWeakPassphrase, ErrWeakPassphrase, CodeBadRequest},
		{fail(ErrInvalid, "invite: bad"), ErrInvalid, CodeBadRequest},
		{ErrNotFound, ErrNotFound, CodeNotFound},
		{fail(ErrNotMember, "group x"), ErrNotMember, CodeNotMember},
		{fail(ErrNotAdmin, "group x"), ErrNotAdmin, CodeNotAdmin},
		{fail(ErrNotFriend, "someone"), ErrNotFriend, CodeNotFound},
		{ErrTooLarge, ErrTooLarge, CodeTooLarge},
		{failWith(ErrUnavailable, errors.New("dial failed"), "dial failed"), ErrUnavailable, CodeUnavailable},
		{fail(ErrKeyChanged, "x"), ErrKeyChanged, CodeKeyChanged},
		{fail(ErrKeyFork, "x"), ErrKeyFork, CodeKeyChanged},
		{fail(ErrSafetyNumber, "x"), ErrSafetyNumber, CodeConflict},
		{ErrClosed, ErrClosed, CodeUnavailable},
		{errors.Join(ErrClosed, errors.New("x")), ErrClosed, CodeUnavailable},
		{throttledError(1500 * time.Millisecond), ErrThrottled, CodeThrottled},
		{fmt.Errorf("wrapped: %w", throttledError(time.Second)), ErrThrottled, CodeThrottled},
	} {
		var e *Error
		if !errors.As(tc.err, &e) {
			t.Errorf("%v: not a *node.Error", tc.err)
			continue
		}
		if e.Code != tc.code || !errors.Is(tc.err, tc.kind) {
			t.Errorf("%v: code %s, want %s, is %v: %v", tc.err, e.Code, tc.code, tc.kind, errors.Is(tc.err, tc.kind))
		}
		if e.Message == "" || strings.Contains(e.Message, "node: ") || strings.Contains(e.Message, "\n") {
			t.Errorf("%v: message %q, want a clean one-line message", tc.err, e.Message)
		}
		if tc.code == CodeThrottled && e.RetryAfter <= 0 {
			t.Errorf("%v: no RetryAfter", tc.err)
		}
	}
	// The wait in the message is rounded up, as the Retry-After header is.
	var e *Error
	if errors.As(throttledError(1500*time.Millisecond), &e); !strings.HasSuffix(e.Message, "try again in 2 s") {
		t.Errorf("throttled message %q, want it to end in \"try again in 2 s\"", e.Message)
	}
	long := fail(ErrUnavailable, "%s", strings.Repeat("dial é\n", 200))
	if errors.As(long, &e); len(e.Message) > maxMessage+len("…") || !strings.HasSuffix(e.Message, "…") || strings.Contains(e.Message, "\n") {
		t.Errorf("long message not cut to one line: %d bytes", len(e.Message))
	}
	if _, err := ParseUserID("to", "nope"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "to is not a user ID") {
		t.Errorf("ParseUserID(nope) = %v", err)
	}
	if id, err := ParseMsgID("up_to", ""); err != nil || !id.IsZero() {
		t.Errorf("ParseMsgID(\"\") = %v, %v", id, err)
	}
	if _, err := ParseMsgID("up_to", "zz"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseMsgID(zz) = %v", err)
	}
}

func TestShownStatus(t *testing.T) {
	var f Friend
	f.Status = "accepted"
	if got := f.ShownStatus(); got != "accepted" {
		t.Errorf("ShownStatus = %s, want accepted", got)
	}
	f.ChangedKey = []byte{1}
	if got := f.ShownStatus(); got != StatusKeyChanged {
		t.Errorf("ShownStatus with a changed key = %s, want key_changed", got)
	}
}
