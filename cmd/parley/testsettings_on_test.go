//go:build parleytest

package main

// Tests of the test-only settings, compiled in with the parleytest tag
// alone (as testsettings_on.go is); make test runs them with
// -tags noassets,parleytest. The end-to-end tests use the settings
// through a binary built with that tag.

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/parley-chat/parley/store/storetest"
)

func TestTestSettingsParse(t *testing.T) {
	clearParleyEnv(t)
	got, err := readTestSettings(envMap(nil))
	if err != nil || got != (testSettings{}) {
		t.Errorf("no variables: %+v, %v; want zero settings", got, err)
	}
	got, err = readTestSettings(envMap(map[string]string{
		envTestKDF:          "cheap",
		envTestKeyBits:      "2048",
		envTestLoginBackoff: "10s",
	}))
	want := testSettings{kdf: storetest.CheapKDF, backupWork: 10, keyBits: 2048, loginBackoff: 10 * time.Second}
	if err != nil || got != want {
		t.Errorf("readTestSettings = %+v, %v; want %+v", got, err, want)
	}
	// parseRunConfig reads them too.
	c, err := parseRunConfig(nil, envMap(map[string]string{envTestLoginBackoff: "1500ms", envTestKeyBits: "4096"}), io.Discard)
	if err != nil || c.test != (testSettings{keyBits: 4096, loginBackoff: 1500 * time.Millisecond}) {
		t.Errorf("parseRunConfig: test settings %+v, %v", c.test, err)
	}
}

func TestTestSettingsErrors(t *testing.T) {
	clearParleyEnv(t)
	for _, env := range []map[string]string{
		{envTestKDF: "yes"},
		{envTestKDF: "Cheap"},
		{envTestKeyBits: "1024"},
		{envTestKeyBits: "two thousand"},
		{envTestLoginBackoff: "10"},
		{envTestLoginBackoff: "0s"},
		{envTestLoginBackoff: "-1s"},
		{envTestLoginBackoff: "soon"},
	} {
		if _, err := readTestSettings(envMap(env)); err == nil {
			t.Errorf("readTestSettings(%v) succeeded", env)
		}
		_, err := parseRunConfig(nil, envMap(env), io.Discard)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("parseRunConfig with %v: err = %v (exit %d), want a usage error", env, err, exitCode(err))
		}
	}
}
