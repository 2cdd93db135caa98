// Package storetest holds store settings for tests: a passphrase KDF that
// makes a new store cheap. It imports no test framework, so the parley
// binary built with -tags parleytest (for the end-to-end tests) can use it.
package storetest

import "github.com/parley-chat/parley/store"

// CheapKDF are passphrase KDF parameters that make a new store cheap to
// create (Argon2id t=1, m=1 MiB, p=1): for tests only, never for a real
// identity. PARLEY_TEST_KDF=cheap selects them in a parleytest build.
var CheapKDF = store.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}
