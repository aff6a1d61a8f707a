package configs

import (
	"strings"
	"testing"
)

const botsBase = `providers:
  - {name: local, type: ollama, url: "http://127.0.0.1:11434", models: [llama3.2]}
  - {name: cloud, type: openai, url: "https://api.example.com/v1", models: [gpt-4o-mini]}
models: {primary: local/llama3.2}
tenants: [{id: acme, models: [local/llama3.2]}]
`

// bots: is checked key by key: each error names its key and line.
func TestBotsValidation(t *testing.T) {
	for _, tc := range []struct {
		name, bots string
		want       string // "" = valid
	}{
		{"valid", "bots:\n  - name: support\n    tenant: acme\n    system: be kind\n    models: {primary: llama3.2}\n    skills: [faq]\n    knowledge_bases: [manual]\n    guards: [pii]\n", ""},
		{"default tenant, node's chain", "bots:\n  - {name: plain}\n", ""},
		{"no name", "bots:\n  - {tenant: acme}\n", "m.yaml:7: bots[0].name: is required"},
		{"bad name", "bots:\n  - {name: \"a b\"}\n", `m.yaml:7: bots[0].name: use 1-64 letters, digits, '-', '_' or '.', got "a b"`},
		{"twice", "bots:\n  - {name: x}\n  - {name: x, tenant: acme}\n", `m.yaml:8: bots[1].name: bot "x" is defined twice`},
		{"bad tenant", "bots:\n  - {name: x, tenant: \"a/b\"}\n", `m.yaml:7: bots[0].tenant: use 1-64`},
		{"unknown key", "bots:\n  - {name: x, persona: hi}\n", `bots[0].persona`},
		{"fallback without primary", "bots:\n  - {name: x, models: {fallback: [cloud/gpt-4o-mini]}}\n", "m.yaml:7: bots[0].models.primary: is required with models.fallback"},
		{"unknown provider", "bots:\n  - name: x\n    models:\n      primary: nope/m\n", `m.yaml:9: bots[0].models.primary: provider "nope" is not defined`},
		{"unknown bare model", "bots:\n  - name: x\n    models: {primary: local/llama3.2, fallback: [mistral]}\n", `m.yaml:8: bots[0].models.fallback[0]: model "mistral": no provider lists it`},
		{"twice in the chain", "bots:\n  - name: x\n    models: {primary: llama3.2, fallback: [local/llama3.2]}\n", `bots[0].models.fallback[0]: "local/llama3.2" is already in the bot's chain`},
		{"outside the tenant's allow-list", "bots:\n  - name: x\n    tenant: acme\n    models: {primary: cloud/gpt-4o-mini}\n", `bots[0].models.primary: tenant "acme" may not use cloud/gpt-4o-mini`},
		{"empty skill", "bots:\n  - name: x\n    skills: [faq, \"\"]\n", `m.yaml:8: bots[0].skills[1]: want a name of 1 to 64 bytes`},
		{"skill twice", "bots:\n  - name: x\n    skills: [faq, faq]\n", `bots[0].skills[1]: "faq" is listed twice`},
		{"guard twice", "bots:\n  - name: x\n    guards: [pii, pii]\n", `bots[0].guards[1]: "pii" is listed twice`},
		{"intent twice", "bots:\n  - name: x\n    intents: [refund, refund]\n", `m.yaml:8: bots[0].intents[1]: "refund" is listed twice`},
		{"knowledge base too long", "bots:\n  - name: x\n    knowledge_bases: [" + strings.Repeat("k", 65) + "]\n", `bots[0].knowledge_bases[0]: want a name of 1 to 64 bytes`},
		{"not a list", "bots: {name: x}\n", "bots"},
		{"persona too large", "conversations: {max_message_bytes: 1024}\nbots:\n  - name: x\n    system: \"" + strings.Repeat("a", 1025) + "\"\n", "bots[0].system: is 1025 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("m.yaml", []byte(botsBase+tc.bots), env(nil))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
}

// A bot's chain resolves as models: does (bare names to the provider that
// lists them); no primary is the node's chain (nil); the tenant defaults
// to default.
func TestBotProfiles(t *testing.T) {
	c, err := Parse("m.yaml", []byte(botsBase+`bots:
  - name: support
    tenant: acme
    system: be kind
    models: {primary: llama3.2}
    skills: [faq]
    knowledge_bases: [manual]
    guards: [pii]
    intents: [refund, human]
  - name: plain
    models: {primary: gpt-4o-mini, fallback: [local/llama3.2]}
  - {name: bare}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	bots := c.BotProfiles()
	if len(bots) != 3 {
		t.Fatalf("%d bots", len(bots))
	}
	s, p, b := bots[0], bots[1], bots[2]
	if s.Name != "support" || s.Tenant != "acme" || s.System != "be kind" || s.ChainString() != "local/llama3.2" ||
		strings.Join(s.Skills, ",") != "faq" || strings.Join(s.KnowledgeBases, ",") != "manual" || strings.Join(s.Guards, ",") != "pii" || strings.Join(s.Intents, ",") != "refund,human" {
		t.Errorf("support: %+v", s)
	}
	if p.Tenant != "default" || p.ChainString() != "cloud/gpt-4o-mini, local/llama3.2" {
		t.Errorf("plain: %+v", p)
	}
	if b.Chain != nil || b.ChainString() != "moltbot" || b.HasSkill("faq") {
		t.Errorf("bare: %+v", b)
	}
}
