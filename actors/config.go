package actors

import (
	"time"

	"github.com/moltbot/moltbot/inference/failover"
)

// DefaultConfig is every default of Config, in one place, sized for a
// small device; configs fills the YAML over it. New gives a zero field
// its value here, except where zero is a setting of its own:
// MaxQueuedTurns (no turn waits), HedgeAfter (no hedging) and
// StreamContinue (a broken stream ends).
func DefaultConfig() Config {
	return Config{
		IdleTimeout:      5 * time.Minute,
		MaxContextTokens: 4096,
		MaxQueuedTurns:   4,
		RequestTimeout:   5 * time.Minute,
		HealthInterval:   15 * time.Second,
		RestartBackoff:   100 * time.Millisecond,
		Failover:         failover.DefaultConfig(),
		Replicas:         2,
		SharedInterval:   30 * time.Second,
		RemoteWork:       DefaultRemoteWork(),
	}
}

// DefaultProviderSpec is a provider's admission defaults. New gives a
// zero MaxInFlight or Timeout its value here; a zero MaxQueue is a setting
// (no call waits: past MaxInFlight, busy).
func DefaultProviderSpec() ProviderSpec {
	return ProviderSpec{MaxInFlight: 64, MaxQueue: 256, Timeout: 2 * time.Minute}
}
