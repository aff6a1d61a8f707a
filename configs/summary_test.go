package configs

import (
	"strings"
	"testing"
)

const twoProviders = "providers: [{name: local, type: sim}, {name: cloud, type: sim, models: [big]}]\nmodels: {primary: local/small}\n"

// conversations.summary: on by default, its max_tokens a quarter of a
// small context at most; a model named as the chain's are; off when said.
func TestSummaryConfig(t *testing.T) {
	c := parse(t, twoProviders)
	if s := c.Conversations.Summary; !s.Enabled || s.MaxTokens != 256 || s.Prompt != "" || c.SummaryModel() != "" {
		t.Errorf("defaults %+v", s)
	}
	c = parse(t, twoProviders+"conversations: {max_context_tokens: 512}\n")
	if s := c.Conversations.Summary; s.MaxTokens != 128 {
		t.Errorf("in a context of 512: %+v", s)
	}
	c = parse(t, twoProviders+"conversations:\n  summary: {enabled: false, model: big, max_tokens: 100, prompt: be short}\n")
	if s := c.Conversations.Summary; s.Enabled || s.MaxTokens != 100 || s.Prompt != "be short" || c.SummaryModel() != "cloud/big" {
		t.Errorf("written %+v model %q", s, c.SummaryModel())
	}
	// Off, max_tokens may be what it likes (it is not used).
	parse(t, twoProviders+"conversations:\n  max_context_tokens: 256\n  summary: {enabled: false, max_tokens: 256}\n")
}

func TestSummaryErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"conversations:\n  summary:\n    model: nope/m\n", `s.yaml:5: conversations.summary.model: provider "nope" is not defined (defined: cloud, local)`},
		{"conversations:\n  summary:\n    model: unknown\n", `s.yaml:5: conversations.summary.model: model "unknown"`},
		{"conversations:\n  summary:\n    max_tokens: 8\n", "s.yaml:5: conversations.summary.max_tokens: must be at least 16, got 8"},
		{"conversations:\n  max_context_tokens: 1000\n  summary:\n    max_tokens: 300\n",
			"s.yaml:6: conversations.summary.max_tokens: must be at most a quarter of conversations.max_context_tokens (250)"},
		{"conversations:\n  summary:\n    prompt: " + strings.Repeat("x", 5000) + "\n", "s.yaml:5: conversations.summary.prompt: must be at most 4096 bytes, got 5000"},
	} {
		_, err := Parse("s.yaml", []byte(twoProviders+tc.yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v\nlacks %q", tc.yaml, err, tc.want)
		}
	}
}
