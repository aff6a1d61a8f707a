package configs

import (
	"net/http"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/ollama"
	"github.com/moltbot/moltbot/inference/sim"

	// The provider types a config may name: each package registers its
	// type with inference when it is linked in. A new type is its package
	// and one line here (and, when it has settings of its own, a block in
	// ProviderConfig beside sim's).
	_ "github.com/moltbot/moltbot/inference/anthropic"
	_ "github.com/moltbot/moltbot/inference/openai"
)

// Spec is the provider p for inference.NewProvider, with its credentials
// and HTTP client.
func (p *ProviderConfig) Spec(creds *inference.Credentials, hc *http.Client) inference.Spec {
	s := inference.Spec{Name: p.Name, URL: p.URL, Models: p.Models, Creds: creds, HTTP: hc}
	if p.Type == ollama.TypeName && p.KeepAlive.Set {
		d := p.KeepAlive.D
		s.Options = ollama.Options{KeepAlive: &d}
	}
	if p.Type == sim.TypeName {
		s.Options = sim.Options{TTFT: p.Sim.TTFT.D(), ITL: p.Sim.ITL.D(), Tokens: p.Sim.Tokens, Seed: p.Sim.Seed}
	}
	return s
}
