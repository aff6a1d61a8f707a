package chat

import (
	"context"
	"fmt"

	"github.com/moltbot/moltbot"
)

// Embedder embeds text through the node's embedding chain
// (actors.Embeddings).
type Embedder interface {
	// ResolveModel checks that model can embed: "" or "moltbot" for the
	// embedding chain, or one model whose provider can.
	ResolveModel(model string) error
	Embed(ctx context.Context, req *moltbot.EmbedRequest) (*moltbot.Embeddings, error)
}

// Bounds of an embedding request: OpenAI's on the number of texts, and a
// vector no model gives.
const (
	MaxEmbedInputs     = 2048
	MaxEmbedDimensions = 65536
)

// Embed embeds req.Input for p. It passes what a stateless completion
// passes: validation (each text non-empty and within
// conversations.max_message_bytes, at most MaxEmbedInputs of them), the
// model resolved and on the tenant's allow-list ("" is the chain,
// "moltbot" to the allow-list), one call of p's rate limits, and the
// input's tokens charged to p when the vectors come back.
func (s *Service) Embed(ctx context.Context, p *moltbot.Principal, req moltbot.EmbedRequest) (*moltbot.Embeddings, error) {
	if err := notAgent(p); err != nil {
		return nil, err
	}
	if err := s.validEmbed(&req); err != nil {
		return nil, err
	}
	em := s.cfg.Embedder
	if em == nil {
		return nil, &moltbot.Error{Code: moltbot.ENotFound, Param: "model", Message: "this node serves no embeddings"}
	}
	if err := em.ResolveModel(req.Model); err != nil {
		return nil, err
	}
	if s.pol != nil && !s.pol.ModelAllowed(p.Tenant, req.Model) {
		return nil, notAllowed(p, req.Model, "")
	}
	if err := s.allow(p); err != nil {
		return nil, err
	}
	out, err := em.Embed(ctx, &req)
	if err != nil {
		return nil, err
	}
	if s.pol != nil {
		s.pol.Charge(p, out.Usage.Total())
	}
	return out, nil
}

func (s *Service) validEmbed(req *moltbot.EmbedRequest) error {
	switch n := len(req.Input); {
	case n == 0:
		return invalid("input", "input must be a non-empty string or a non-empty array of strings")
	case n > MaxEmbedInputs:
		return &moltbot.Error{Code: moltbot.ETooLarge, Param: "input",
			Message: fmt.Sprintf("input holds %d texts; at most %d are allowed", n, MaxEmbedInputs)}
	}
	for i, text := range req.Input {
		if text == "" {
			return invalid(fmt.Sprintf("input[%d]", i), "input[%d] must not be empty", i)
		}
		if len(text) > s.cfg.MaxMessageBytes {
			return &moltbot.Error{Code: moltbot.ETooLarge, Param: fmt.Sprintf("input[%d]", i),
				Message: fmt.Sprintf("input[%d] is %d bytes; at most %d are allowed (conversations.max_message_bytes)", i, len(text), s.cfg.MaxMessageBytes)}
		}
	}
	if req.Dimensions < 0 || req.Dimensions > MaxEmbedDimensions {
		return invalid("dimensions", "dimensions must be between 1 and %d, got %d", MaxEmbedDimensions, req.Dimensions)
	}
	return nil
}
