package actors

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/inference/failover"
)

// SummaryConfig shapes the summaries of conversations' oldest turns when
// they no longer fit max_context_tokens (conversations.summary): Off, the
// Model that writes them ("": the turn's own), their MaxTokens and the
// Prompt. See actors/conv/summary.go.
type SummaryConfig = conv.SummaryConfig

// DefaultSummaryPrompt is what the summarizing model is told by default.
const DefaultSummaryPrompt = conv.DefaultSummaryPrompt

// DefaultConfig is every default of Config, in one place, sized for a
// small device; configs fills the YAML over it. New gives a zero field
// its value here, except where zero is a setting of its own:
// MaxQueuedTurns (no turn waits), HedgeAfter (no hedging) and
// StreamContinue (a broken stream ends).
func DefaultConfig() Config {
	return Config{
		IdleTimeout:      5 * time.Minute,
		MaxContextTokens: 4096,
		Summary:          SummaryConfig{MaxTokens: 256, Prompt: DefaultSummaryPrompt},
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

// summaryModel is the model Summary names when it names one of a
// provider ("provider/model"), which must be configured; a bare name is
// looked up at each summary, as a request's is.
func summaryModel(cfg *Config) (moltbot.ModelRef, error) {
	name := cfg.Summary.Model
	if cfg.Summary.Off || name == "" || name == ChainModel || !strings.Contains(name, "/") {
		return moltbot.ModelRef{}, nil
	}
	ref, err := moltbot.ParseModelRef(name)
	if err != nil {
		return ref, fmt.Errorf("actors: summary model %q: %w", name, err)
	}
	if !slices.ContainsFunc(cfg.Providers, func(p ProviderSpec) bool { return p.Name == ref.Provider }) {
		return ref, fmt.Errorf("actors: summary model %q: no provider %q is configured", name, ref.Provider)
	}
	return ref, nil
}

// DefaultProviderSpec is a provider's admission defaults. New gives a
// zero MaxInFlight or Timeout its value here; a zero MaxQueue is a setting
// (no call waits: past MaxInFlight, busy).
func DefaultProviderSpec() ProviderSpec {
	return ProviderSpec{MaxInFlight: 64, MaxQueue: 256, Timeout: 2 * time.Minute}
}
