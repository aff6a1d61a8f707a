package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/moltbot/moltbot"
)

// ollamaEmbedRequest is the body of POST /api/embed (api.EmbedRequest).
// Options are taken and not used, as Ollama's embedding runner uses none
// a client would set but num_ctx, which is the providers' business.
type ollamaEmbedRequest struct {
	Model      string                     `json:"model"`
	Input      json.RawMessage            `json:"input"`
	KeepAlive  *ollamaDuration            `json:"keep_alive"`
	Truncate   *bool                      `json:"truncate"`
	Dimensions int                        `json:"dimensions"`
	Options    map[string]json.RawMessage `json:"options"`
}

// ollamaEmbeddingRequest is the body of the older POST /api/embeddings
// (api.EmbeddingRequest).
type ollamaEmbeddingRequest struct {
	Model     string                     `json:"model"`
	Prompt    string                     `json:"prompt"`
	KeepAlive *ollamaDuration            `json:"keep_alive"`
	Options   map[string]json.RawMessage `json:"options"`
}

// texts reads /api/embed's input: a string (an empty one is no text) or
// an array of strings, as Ollama reads it.
func (r *ollamaEmbedRequest) texts() ([]string, error) {
	switch {
	case r.Model == "":
		return nil, invalid("model", "model is required")
	case r.Truncate != nil && *r.Truncate:
		return nil, invalid("truncate", "truncate: true is not supported: moltbot does not cut an input to fit its model (a longer one fails); leave truncate out or false")
	case r.Dimensions < 0:
		return nil, invalid("dimensions", "dimensions must not be negative")
	}
	raw := bytes.TrimSpace(r.Input)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, invalid("input", "invalid input type: input is a string or an array of strings")
	}
	return many, nil
}

func (s *Server) ollamaEmbed(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	var req ollamaEmbedRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeOllamaError(w, err)
		return
	}
	input, err := req.texts()
	if err != nil {
		writeOllamaError(w, err)
		return
	}
	if len(input) == 0 {
		writeJSON(w, http.StatusOK, api.EmbedResponse{Model: req.Model, Embeddings: [][]float32{}})
		return
	}
	p := principal(r)
	_, model, _ := s.ollamaFind(p, req.Model)
	tCall := time.Now()
	out, err := s.embedFor(r.Context(), p, model, input, req.Dimensions)
	if err != nil {
		writeOllamaError(w, err)
		return
	}
	// Ollama's /api/embed gives unit vectors, whatever its model gives.
	for _, v := range out.Vectors {
		if err := normalize(v); err != nil {
			writeOllamaError(w, err)
			return
		}
	}
	served(w, out)
	writeJSON(w, http.StatusOK, api.EmbedResponse{Model: req.Model, Embeddings: out.Vectors, TotalDuration: time.Since(t0),
		LoadDuration: tCall.Sub(t0), PromptEvalCount: out.Usage.PromptTokens})
}

func (s *Server) ollamaEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req ollamaEmbeddingRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeOllamaError(w, err)
		return
	}
	if req.Model == "" {
		writeOllamaError(w, invalid("model", "model is required"))
		return
	}
	if req.Prompt == "" {
		writeJSON(w, http.StatusOK, api.EmbeddingResponse{Embedding: []float64{}})
		return
	}
	p := principal(r)
	_, model, _ := s.ollamaFind(p, req.Model)
	out, err := s.embedFor(r.Context(), p, model, []string{req.Prompt}, 0)
	if err != nil {
		writeOllamaError(w, err)
		return
	}
	// The older endpoint gives the model's vector as it is, in float64s.
	v := make([]float64, len(out.Vectors[0]))
	for i, f := range out.Vectors[0] {
		v[i] = float64(f)
	}
	served(w, out)
	writeJSON(w, http.StatusOK, api.EmbeddingResponse{Embedding: v})
}

// embedFor embeds input through the chat service (which checks the
// texts, the model and the tenant's limits) and checks that every text
// got its vector.
func (s *Server) embedFor(ctx context.Context, p *moltbot.Principal, model string, input []string, dims int) (*moltbot.Embeddings, error) {
	out, err := s.chat.Embed(ctx, p, moltbot.EmbedRequest{Model: model, Input: input, Dimensions: dims})
	if err != nil {
		return nil, err
	}
	if len(out.Vectors) != len(input) {
		return nil, moltbot.Errorf(moltbot.EUnavailable, "the embedding model gave %d vectors for %d texts", len(out.Vectors), len(input))
	}
	return out, nil
}

// served names the model that embedded, as every model response does.
func served(w http.ResponseWriter, out *moltbot.Embeddings) {
	w.Header().Set("X-Moltbot-Provider", out.Served.String())
	w.Header().Set("X-Moltbot-Failovers", strconv.Itoa(out.Failovers))
}

// normalize scales v to unit length, as Ollama's /api/embed does.
func normalize(v []float32) error {
	var sum float64
	for _, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return moltbot.Errorf(moltbot.EUnavailable, "embedding contains NaN or Inf values")
		}
		sum += float64(f) * float64(f)
	}
	norm := 1 / max(math.Sqrt(sum), 1e-12)
	for i := range v {
		v[i] = float32(float64(v[i]) * norm)
	}
	return nil
}
