package configs

import (
	"fmt"
	"strings"
	"testing"
)

const withEmbeddings = `
providers:
  - name: local
    type: ollama
    url: http://127.0.0.1:11434
  - name: cloud
    type: openai
    url: https://api.openai.com/v1
models:
  primary: local/llama3.2
  embeddings:
    primary: local/nomic-embed-text
    fallback: [cloud/text-embedding-3-small]
    dimensions: 768
`

func TestEmbeddingsChain(t *testing.T) {
	c, err := Parse("e.yaml", []byte(withEmbeddings), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.EmbedChain()); got != "[local/nomic-embed-text cloud/text-embedding-3-small]" || c.Models.Embeddings.Dimensions != 768 {
		t.Errorf("chain %s, dimensions %d", got, c.Models.Embeddings.Dimensions)
	}
	// A bare name is the model of the one provider that lists it.
	bare := strings.Replace(withEmbeddings, "url: https://api.openai.com/v1", "url: https://api.openai.com/v1\n    models: [text-embedding-3-small]", 1)
	bare = strings.Replace(bare, "fallback: [cloud/text-embedding-3-small]", "fallback: [text-embedding-3-small]", 1)
	c, err = Parse("e.yaml", []byte(bare), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.EmbedChain()); got != "[local/nomic-embed-text cloud/text-embedding-3-small]" {
		t.Errorf("chain %s", got)
	}
	// The same model, bare and not, is one entry.
	_, err = Parse("e.yaml", []byte(strings.Replace(bare, "primary: local/nomic-embed-text", "primary: cloud/text-embedding-3-small", 1)), env(nil))
	if err == nil || !strings.Contains(err.Error(), `models.embeddings.fallback[0]: "text-embedding-3-small" is already in the embedding chain`) {
		t.Errorf("err = %v", err)
	}
	// None by default, and none in a dump of a config without one.
	c, err = Parse("m.yaml", []byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.EmbedChain() != nil || strings.Contains(c.Redacted(), "embeddings") {
		t.Errorf("an embedding chain by default: %v\n%s", c.EmbedChain(), c.Redacted())
	}
}

func TestEmbeddingsErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"  embeddings:\n    fallback: [local/a]\n", `e.yaml:11: models.embeddings.primary: is required`},
		{"  embeddings:\n    primary: nope/a\n", `e.yaml:12: models.embeddings.primary: provider "nope" is not defined (defined: cloud, local)`},
		{"  embeddings:\n    primary: a\n", `models.embeddings.primary: model "a": no provider lists it`},
		{"  embeddings:\n    primary: local/a\n    fallback: [local/a]\n", `e.yaml:13: models.embeddings.fallback[0]: "local/a" is already in the embedding chain`},
		{"  embeddings:\n    primary: local/a\n    dimensions: -1\n", `e.yaml:13: models.embeddings.dimensions: must be between 0`},
		{"  embeddings:\n    primary: local/a\n    dimension: 3\n", `dimension`},
	} {
		src := strings.Replace(withEmbeddings, withEmbeddings[strings.Index(withEmbeddings, "  embeddings:"):], tc.yaml, 1)
		_, err := Parse("e.yaml", []byte(src), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
