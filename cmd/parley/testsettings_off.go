//go:build !parleytest

package main

import "log/slog"

// readTestSettings, in a build without the parleytest tag, reads no
// environment variable: a release binary has no test-only settings, and
// a PARLEY_TEST_* variable in its environment changes nothing (see
// testsettings_on.go).
func readTestSettings(func(string) string) (testSettings, error) {
	return testSettings{}, nil
}

// warn has nothing to warn about: the settings are always zero here.
func (testSettings) warn(*slog.Logger) {}
