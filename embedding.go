package moltbot

import "context"

// EmbedRequest asks for one vector per input text.
type EmbedRequest struct {
	// Model is "" or "moltbot" for the configured embedding chain
	// (models.embeddings), "provider/model" or a bare name for one model.
	Model string
	Input []string
	// Dimensions, when not 0, asks for vectors of this length; only models
	// that can give it are asked.
	Dimensions int
}

// Embeddings is the answer to an EmbedRequest: Vectors[i] embeds Input[i],
// every vector of the same length.
type Embeddings struct {
	Vectors [][]float32
	// Usage counts the input's tokens (PromptTokens), as the server
	// reported them or, when it did not, estimated.
	Usage  Usage
	Served ModelRef
	// Failovers counts the models tried or skipped before Served.
	Failovers int
}

// EmbedFunc embeds through the embedding chain (models.embeddings), as
// POST /v1/embeddings does, for a stage that needs vectors (a skill's
// context.embed).
type EmbedFunc func(ctx context.Context, req *EmbedRequest) (*Embeddings, error)
