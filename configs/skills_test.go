package configs

import (
	"strings"
	"testing"
)

// skills.tools and skills.mcp as written, and what they refuse, by key
// and line.
func TestSkillsToolsConfig(t *testing.T) {
	c := parse(t, twoProviders+`skills:
  tools: {max_steps: 2, max_tokens: 5000, timeout: 30s, call_timeout: 2s, max_result: 8KiB}
  mcp:
    - {name: files, command: [mcp-files, --root, /srv], env: {TOKEN: "${T:-}"}}
    - {name: web, url: "http://127.0.0.1:9/mcp", headers: {Authorization: Bearer x}}
`)
	tl := c.Skills.Tools
	if tl.MaxSteps != 2 || tl.MaxTokens != 5000 || tl.Timeout.D().String() != "30s" || tl.CallTimeout.D().String() != "2s" || tl.MaxResult != 8<<10 {
		t.Errorf("tools %+v", tl)
	}
	if m := c.Skills.MCP; len(m) != 2 || m[0].Command[2] != "/srv" || m[1].Headers["Authorization"].Value() != "Bearer x" {
		t.Errorf("mcp %+v", m)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"skills:\n  tools: {max_steps: 100}\n", "s.yaml:4: skills.tools.max_steps: must be between 0"},
		{"skills:\n  tools: {call_timeout: 1ms}\n", "s.yaml:4: skills.tools.call_timeout: must be 0"},
		{"skills:\n  mcp:\n    - {name: a.b, url: 'http://x'}\n", `s.yaml:5: skills.mcp[0].name: must be 1 to 32 letters`},
		{"skills:\n  mcp:\n    - {name: a}\n", "skills.mcp[0].command: a server needs a command (stdio) or a url"},
		{"skills:\n  mcp:\n    - {name: a, command: [x], url: 'http://x'}\n", "skills.mcp[0].url: a server has a command or a url, not both"},
		{"skills:\n  mcp:\n    - {name: a, url: 'file:///x'}\n", "skills.mcp[0].url: must be an http or https URL"},
		{"skills:\n  mcp:\n    - {name: a, url: 'http://x'}\n    - {name: a, url: 'http://y'}\n", `skills.mcp[1].name: "a" names two servers`},
		{"skills:\n  mcp:\n    - {name: a, url: 'http://x', env: {A: b}}\n", "skills.mcp[0].env: is for a command's server"},
	} {
		_, err := Parse("s.yaml", []byte(twoProviders+tc.yaml), env(map[string]string{"T": "t"}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v\nlacks %q", tc.yaml, err, tc.want)
		}
	}
}
