package configs

import (
	"strings"
	"testing"
)

func TestKBConfig(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"skills:\n  kb:\n    default: [support, 'bad/name']\n", `m.yaml:3: skills.kb.default[1]: "bad/name": a knowledge base's name must`},
		{"skills:\n  kb:\n    top_k: 40\n", "m.yaml:3: skills.kb.top_k: must be 0 to 16, got 40"},
		{"skills:\n  kb:\n    threshold: 1.5\n", "m.yaml:3: skills.kb.threshold: must be 0 to 1"},
		{"skills:\n  kb:\n    on_miss: human\n", `m.yaml:3: skills.kb.on_miss: must be "answer" or "model", got "human"`},
		{"skills:\n  kb:\n    chunk_runes: 5\n", "m.yaml:3: skills.kb.chunk_runes: must be 100 to 8000, got 5"},
		{"skills:\n  kb:\n    treshold: 0.2\n", `m.yaml:3: skills.kb.treshold: unknown key (did you mean "threshold"?)`},
	} {
		_, err := Parse("m.yaml", []byte(tc.yaml+minimalSim), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
	cfg, err := Parse("m.yaml", []byte("skills:\n  kb:\n    default: [support]\n    top_k: 3\n    threshold: 0.2\n    on_miss: model\n    no_answer: none\n    chunk_runes: 800\n"+minimalSim), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Skills.KB; strings.Join(k.Default, ",") != "support" || k.TopK != 3 || k.Threshold != 0.2 || k.OnMiss != "model" || k.NoAnswer != "none" || k.ChunkRunes != 800 {
		t.Fatalf("%+v", k)
	}
}
