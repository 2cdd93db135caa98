//go:build !race

package node

// raceDetector reports a test binary built with -race.
const raceDetector = false
