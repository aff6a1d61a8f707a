package sim

import (
	"context"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// DefaultDimensions is the length of an embedding model's vectors when its
// name does not end in a number.
const DefaultDimensions = 384

// maxDimensions bounds the length a model name may ask for.
const maxDimensions = 8192

// ModelDimensions is the length of model's vectors: the number its name
// ends in after a separator ("embed-768", "sim_embed:1024"), when it is 1
// to 8192, else DefaultDimensions.
func ModelDimensions(model string) int {
	i := len(model)
	for i > 0 && '0' <= model[i-1] && model[i-1] <= '9' {
		i--
	}
	if i == len(model) || i == 0 || !strings.ContainsRune("-_:/", rune(model[i-1])) {
		return DefaultDimensions
	}
	n, err := strconv.Atoi(model[i:])
	if err != nil || n < 1 || n > maxDimensions {
		return DefaultDimensions
	}
	return n
}

// Embed returns one unit vector per text, deterministic for (model,
// text). A vector is the normalized sum of one seeded vector per word
// (lowercased letters and digits), so texts that share words are close
// (a semantic cache can be tested with it) and a text is closest to
// itself. dims, when not 0, shortens the vectors as OpenAI's
// text-embedding-3 and Ollama do: the first dims values, normalized again.
func Embed(model string, texts []string, dims int) ([][]float32, error) {
	n := ModelDimensions(model)
	if dims < 0 || dims > n {
		return nil, reqErr("dimensions", "dimensions must be between 1 and %d for model %s, got %d", n, model, dims)
	}
	if dims == 0 {
		dims = n
	}
	base := hashString(14695981039346656037, model)
	acc := make([]float64, dims)
	out := make([][]float32, len(texts))
	for i, t := range texts {
		clear(acc)
		ws := strings.FieldsFunc(strings.ToLower(t), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		if len(ws) == 0 {
			ws = []string{t}
		}
		for _, w := range ws {
			h := hashString(base, w)
			for j := range acc {
				// A uniform value in [-1, 1) per (model, word, index).
				acc[j] += float64(int64(splitmix(h+uint64(j)))) / (1 << 63)
			}
		}
		var sum float64
		for _, v := range acc {
			sum += v * v
		}
		norm := 1 / math.Max(math.Sqrt(sum), 1e-12)
		vec := make([]float32, dims)
		for j, v := range acc {
			vec[j] = float32(v * norm)
		}
		out[i] = vec
	}
	return out, nil
}

// embedTokens estimates the prompt tokens of texts (four bytes a token, one
// at least each).
func embedTokens(texts []string) int {
	n := 0
	for _, t := range texts {
		n += max(1, (len(t)+3)/4)
	}
	return n
}

// Embed implements inference.Embedder: the fault options apply (error rate
// and status, then Latency+TTFT before the answer), then the vectors of
// the package's Embed.
func (p *Provider) Embed(ctx context.Context, req *inference.EmbedRequest) (inference.EmbedResult, error) {
	if err := p.fail(); err != nil {
		return inference.EmbedResult{}, err
	}
	o := p.Engine.opts.Load()
	pc := pacer{ctx: ctx, o: o}
	defer pc.stop()
	if err := pc.start(); err != nil {
		return inference.EmbedResult{}, inference.Classify(ctx, p.Name, err)
	}
	vecs, err := Embed(req.Model, req.Input, req.Dimensions)
	if err != nil {
		return inference.EmbedResult{}, p.badRequest(ctx, err)
	}
	return inference.EmbedResult{Vectors: vecs, Usage: moltbot.Usage{PromptTokens: embedTokens(req.Input)}, Model: req.Model}, nil
}
