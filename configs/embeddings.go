package configs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/moltbot/moltbot"
)

// EmbeddingsConfig is the embedding chain (POST /v1/embeddings): primary
// first, then the fallbacks in order, tried with the breakers and failover
// of the chat chain. Vectors of different lengths cannot be compared, so a
// fallback is used only while it gives the chain's dimension: Dimensions
// when set, else the length of the chain's first answer. None by default.
type EmbeddingsConfig struct {
	Primary  string   `yaml:"primary"`
	Fallback []string `yaml:"fallback"`
	// Dimensions is the length of every vector of the chain, known before
	// its first answer (0: learned from it).
	Dimensions int `yaml:"dimensions"`
}

// maxEmbedDimensions bounds models.embeddings.dimensions: no model gives
// longer vectors (chat.MaxEmbedDimensions).
const maxEmbedDimensions = 65536

// EmbedChain returns the embedding chain's primary then fallbacks, parsed,
// bare names resolved as the chat chain's are (ResolveModel); none when no
// primary is set.
func (c *Config) EmbedChain() []moltbot.ModelRef {
	e := c.Models.Embeddings
	if e.Primary == "" {
		return nil
	}
	var out []moltbot.ModelRef
	for _, s := range append([]string{e.Primary}, e.Fallback...) {
		if r, err := c.ResolveModel(s); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// validateEmbeddings checks models.embeddings against the providers
// defined (names); add reports a problem at a key.
func (c *Config) validateEmbeddings(names map[string]bool, add func(path, format string, args ...any)) {
	e := c.Models.Embeddings
	checkRef := func(path, s string) {
		r, err := c.ResolveModel(s)
		switch {
		case err != nil && !strings.Contains(s, "/"):
			add(path, "%v", err)
			return
		case err != nil:
			add(path, "want provider/model, got %q", s)
			return
		}
		if !names[r.Provider] {
			defined := make([]string, 0, len(names))
			for n := range names {
				defined = append(defined, n)
			}
			sort.Strings(defined)
			add(path, "provider %q is not defined (defined: %s)", r.Provider, strings.Join(defined, ", "))
		}
	}
	key := func(s string) string {
		if r, err := c.ResolveModel(s); err == nil {
			return r.String()
		}
		return s
	}
	if e.Primary == "" {
		if len(e.Fallback) > 0 || e.Dimensions != 0 {
			add("models.embeddings.primary", "is required with models.embeddings.fallback or dimensions (provider/model)")
		}
	} else {
		checkRef("models.embeddings.primary", e.Primary)
	}
	seen := map[string]bool{key(e.Primary): true}
	for i, f := range e.Fallback {
		path := fmt.Sprintf("models.embeddings.fallback[%d]", i)
		checkRef(path, f)
		if seen[key(f)] {
			add(path, "%q is already in the embedding chain", f)
		}
		seen[key(f)] = true
	}
	if e.Dimensions < 0 || e.Dimensions > maxEmbedDimensions {
		add("models.embeddings.dimensions", "must be between 0 (learned from the first answer) and %d, got %d", maxEmbedDimensions, e.Dimensions)
	}
}
