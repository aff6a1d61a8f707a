package configs

import (
	"fmt"
	"strings"

	"github.com/moltbot/moltbot"
)

// KBConfig is skills.kb: the knowledge-base stage (package skills/kb).
// Documents are added with `moltbot kb add` (the admin API), per tenant;
// a bot searches the knowledge bases its knowledge_bases: names. Every
// field may be left out.
type KBConfig struct {
	// Default names the knowledge bases a turn of no bot searches, in the
	// turn's tenant (none, the default: such turns search none).
	Default []string `yaml:"default"`
	// TopK is how many chunks go into the model's context (default 4, at
	// most 16).
	TopK int `yaml:"top_k"`
	// Threshold is the share of the question the best chunk must match
	// (BM25 coverage, 0 to 1) for a hit (default 0.15); below it the
	// search is a miss ("no answer"), which counts toward a hand-off.
	Threshold float64 `yaml:"threshold"`
	// OnMiss is what a miss does: "answer" (the default) replies NoAnswer
	// without the model; "model" lets the model answer without sources.
	OnMiss string `yaml:"on_miss"`
	// NoAnswer is the reply of a miss (default: a short apology, in
	// English and Chinese).
	NoAnswer string `yaml:"no_answer"`
	// MinCosine, when over 0 and the node embeds (models.embeddings),
	// makes a search a hit on its vectors alone: the best chunk's cosine
	// with the question at or over it (default 0: BM25's coverage
	// decides; vectors still rank).
	MinCosine float64 `yaml:"min_cosine"`
	// ChunkRunes is the chunk size in characters (default 1200; a change
	// reindexes every knowledge base when the node starts).
	ChunkRunes int `yaml:"chunk_runes"`
}

// validateKB checks skills.kb.
func (c *Config) validateKB() []error {
	k := &c.Skills.KB
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, c.errAt("skills.kb."+key, format, args...))
	}
	for i, name := range k.Default {
		if !moltbot.ValidTenantID(name) {
			add(fmt.Sprintf("default[%d]", i), "%q: a knowledge base's name must %s", name, strings.TrimPrefix(moltbot.TenantIDRule, "use "))
		}
	}
	if k.TopK < 0 || k.TopK > moltbot.MaxCitations {
		add("top_k", "must be 0 to %d, got %d", moltbot.MaxCitations, k.TopK)
	}
	if k.Threshold < 0 || k.Threshold > 1 {
		add("threshold", "must be 0 to 1 (the share of the question the best chunk matches), got %v", k.Threshold)
	}
	if k.MinCosine < 0 || k.MinCosine > 1 {
		add("min_cosine", "must be 0 to 1, got %v", k.MinCosine)
	}
	if k.OnMiss != "" && k.OnMiss != "answer" && k.OnMiss != "model" {
		add("on_miss", `must be "answer" or "model", got %q`, k.OnMiss)
	}
	if len(k.NoAnswer) > 4096 {
		add("no_answer", "is %d bytes; at most 4096", len(k.NoAnswer))
	}
	if k.ChunkRunes != 0 && (k.ChunkRunes < 100 || k.ChunkRunes > 8000) {
		add("chunk_runes", "must be 100 to 8000, got %d", k.ChunkRunes)
	}
	return errs
}
