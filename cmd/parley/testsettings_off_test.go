//go:build !parleytest

package main

import (
	"io"
	"testing"
)

// TestTestSettingsOff checks that a build without the parleytest tag, a
// release build, has no test-only settings: whatever the PARLEY_TEST_*
// variables say, they are ignored, and none is an error.
func TestTestSettingsOff(t *testing.T) {
	clearParleyEnv(t)
	env := envMap(map[string]string{
		"PARLEY_TEST_KDF":           "cheap",
		"PARLEY_TEST_KEY_BITS":      "1024",
		"PARLEY_TEST_LOGIN_BACKOFF": "not a duration",
	})
	got, err := readTestSettings(env)
	if err != nil || got != (testSettings{}) {
		t.Errorf("readTestSettings = %+v, %v; want zero settings and no error", got, err)
	}
	c, err := parseRunConfig(nil, env, io.Discard)
	if err != nil || c.test != (testSettings{}) {
		t.Errorf("parseRunConfig: test settings %+v, %v; want zero settings and no error", c.test, err)
	}
}
