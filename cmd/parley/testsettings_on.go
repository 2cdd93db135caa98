//go:build parleytest

package main

// Test-only settings, compiled in only with the parleytest build tag (the
// end-to-end tests build the binary with -tags parleytest); a release
// build has testsettings_off.go instead and reads none of these variables.

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/parley-chat/parley/store"
	"github.com/parley-chat/parley/store/storetest"
)

// Test-only environment variables, read by `parley run` alone. They make
// a new identity cheap to create and the login throttle quick to test,
// and weaken the node: never set them for a real one. Unset, they change
// nothing; an unknown value is an error rather than a silent default.
const (
	// envTestKDF=cheap creates a new store with storetest.CheapKDF
	// (Argon2id t=1, m=1 MiB, p=1) instead of store.DefaultKDF, and
	// writes backup files with scrypt 2^10 instead of 2^18. An existing
	// store keeps the parameters it was created with.
	envTestKDF = "PARLEY_TEST_KDF"
	// envTestKeyBits=2048 (or 3072, 4096) sets the size of a new RSA
	// identity key instead of node.DefaultKeyBits.
	envTestKeyBits = "PARLEY_TEST_KEY_BITS"
	// envTestLoginBackoff, a Go duration such as 10s, sets
	// node.Config.LoginBackoff: the first wait once wrong passphrases are
	// throttled (node.DefaultLoginBackoff).
	envTestLoginBackoff = "PARLEY_TEST_LOGIN_BACKOFF"
)

// readTestSettings reads the test-only variables through getenv.
func readTestSettings(getenv func(string) string) (testSettings, error) {
	var t testSettings
	switch v := getenv(envTestKDF); v {
	case "":
	case "cheap":
		t.kdf = storetest.CheapKDF
		t.backupWork = 10 // backup files too: scrypt 2^10
	default:
		return testSettings{}, fmt.Errorf("%s=%q: the only value is cheap", envTestKDF, v)
	}
	switch v := getenv(envTestKeyBits); v {
	case "":
	case "2048", "3072", "4096":
		t.keyBits, _ = strconv.Atoi(v)
	default:
		return testSettings{}, fmt.Errorf("%s=%q: want 2048, 3072 or 4096", envTestKeyBits, v)
	}
	if v := getenv(envTestLoginBackoff); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return testSettings{}, fmt.Errorf("%s=%q: want a positive duration such as 10s", envTestLoginBackoff, v)
		}
		t.loginBackoff = d
	}
	return t, nil
}

// warn logs each test-only setting in effect.
func (t testSettings) warn(log *slog.Logger) {
	if t.kdf != (store.KDFParams{}) {
		log.Warn("test-only setting: a new identity gets a weak passphrase KDF", "env", envTestKDF)
	}
	if t.keyBits != 0 {
		log.Warn("test-only setting: a new identity key has a non-default size", "env", envTestKeyBits, "bits", t.keyBits)
	}
	if t.loginBackoff != 0 {
		log.Warn("test-only setting: the login throttle's first wait is not the default",
			"env", envTestLoginBackoff, "backoff", t.loginBackoff)
	}
}
