// Package testutil holds what the tests of cmd/parley and its test-only
// build (the parleytest tag) share. It imports no test framework, so the
// binary built with -tags parleytest links nothing of package testing.
package testutil

import "github.com/parley-chat/parley/store"

// CheapKDF are passphrase KDF parameters that make a new store cheap to
// create (Argon2id t=1, m=1 MiB, p=1): for tests only, never for a real
// identity. PARLEY_TEST_KDF=cheap selects them in a parleytest build.
var CheapKDF = store.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}
