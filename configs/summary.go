package configs

import (
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
)

// SummaryConfig is conversations.summary: when a conversation's history
// no longer fits conversations.max_context_tokens, its oldest turns are
// summarized by a model, and the summary kept with the conversation,
// instead of being dropped. On by default: a summary is one model call
// now and then (only when a turn does not fit, and then for several turns
// to come), and a conversation that forgets its beginning silently is
// worse on any device; a device whose only model is slow turns it off, or
// names a quicker model.
type SummaryConfig struct {
	// Enabled summarizes (default true); false drops the oldest turns.
	Enabled bool `yaml:"enabled"`
	// Model writes the summaries: "" is the model of the turn (the
	// conversation's, or the chain); else provider/model, or a model name
	// as models.primary takes one.
	Model string `yaml:"model"`
	// MaxTokens bounds a summary, and is the room a summary takes in the
	// context: at most a quarter of max_context_tokens (the default, 256,
	// is cut to that).
	MaxTokens int `yaml:"max_tokens"`
	// Prompt is what the summarizing model is told ("": the built-in one).
	Prompt string `yaml:"prompt"`
}

// maxSummaryPrompt bounds conversations.summary.prompt: it takes room from
// the messages a summary call reads.
const maxSummaryPrompt = 4096

// summaryDefaults fills conversations.summary; max_context_tokens must be
// filled first.
func (c *Config) summaryDefaults(written func(string) bool) {
	s, ad := &c.Conversations.Summary, actors.DefaultConfig()
	if !written("conversations.summary.enabled") {
		s.Enabled = !ad.Summary.Off
	}
	if s.MaxTokens == 0 && !written("conversations.summary.max_tokens") {
		s.MaxTokens = min(ad.Summary.MaxTokens, c.Conversations.MaxContextTokens/4)
	}
}

// validateSummary checks conversations.summary; checkRef checks a model
// name at a key, add reports a problem.
func (c *Config) validateSummary(checkRef func(path, s string), add func(path, format string, args ...any)) {
	s := c.Conversations.Summary
	if s.Model != "" && s.Model != moltbot.ChainModel {
		checkRef("conversations.summary.model", s.Model)
	}
	switch limit := c.Conversations.MaxContextTokens / 4; {
	case s.MaxTokens < 16:
		add("conversations.summary.max_tokens", "must be at least 16, got %d", s.MaxTokens)
	case s.MaxTokens > limit && s.Enabled:
		add("conversations.summary.max_tokens", "must be at most a quarter of conversations.max_context_tokens (%d), "+
			"so that the recent turns have room beside the summary; got %d (or turn summaries off: enabled: false)", limit, s.MaxTokens)
	}
	if len(s.Prompt) > maxSummaryPrompt {
		add("conversations.summary.prompt", "must be at most %d bytes, got %d", maxSummaryPrompt, len(s.Prompt))
	}
}

// SummaryModel is the model conversations.summary.model names, as the
// runtime takes it ("provider/model", bare names resolved as the chain's
// are); "" for the turn's own model.
func (c *Config) SummaryModel() string {
	m := c.Conversations.Summary.Model
	if m == "" || m == moltbot.ChainModel {
		return ""
	}
	if r, err := c.ResolveModel(m); err == nil {
		return r.String()
	}
	return m
}
