//go:build race

package intent

// raceEnabled: sync.Pool drops items at random under the race detector,
// so allocation counts do not hold.
const raceEnabled = true
