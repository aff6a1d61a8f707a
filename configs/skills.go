package configs

import (
	"net/url"
	"strconv"
)

// ToolsConfig bounds the server-side tool loop (skills.ToolConfig): the
// tools of the JavaScript skills that say tool: and of the MCP servers,
// offered to the model in every turn when there are some. Zero values
// take the defaults.
type ToolsConfig struct {
	// MaxSteps is the most rounds of tool calls in a turn (default 4);
	// then the model is asked for an answer without the server's tools.
	MaxSteps int `yaml:"max_steps"`
	// MaxTokens ends the rounds the same way once the turn's model calls
	// have used as many tokens, prompt and completion (0: no bound).
	MaxTokens int `yaml:"max_tokens"`
	// Timeout bounds the wall time of a turn's tool rounds (default 60s).
	Timeout Duration `yaml:"timeout"`
	// CallTimeout bounds one tool call (default 10s): a server that does
	// not answer gives the model an error result.
	CallTimeout Duration `yaml:"call_timeout"`
	// MaxResult bounds a tool's result given to the model (default
	// 64KiB); a longer one is cut and says so.
	MaxResult ByteSize `yaml:"max_result"`
}

// MCPServerConfig is an MCP server: a command the skills worker starts
// (stdio) or a URL (streamable HTTP).
type MCPServerConfig struct {
	// Name prefixes its tools' names: name__tool.
	Name string `yaml:"name"`
	// Command is the server's argv (stdio); a bare command is looked up in
	// the node's PATH when the skills load. It runs with Env alone for its
	// environment.
	Command []string          `yaml:"command"`
	Env     map[string]Secret `yaml:"env"`
	// URL is a streamable HTTP endpoint, with Headers on every request.
	URL     string            `yaml:"url"`
	Headers map[string]Secret `yaml:"headers"`
	// Timeout bounds connecting and listing its tools (default 10s).
	Timeout Duration `yaml:"timeout"`
}

// mcpName: a server's name, short enough to leave its tools room in the
// 64 characters of a tool's name.
// (A loop, not a regexp: ^[a-zA-Z0-9_-]{1,32}$ compiled at every start
// was 443 allocations.)
func mcpName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func (c *Config) validateSkills(add func(path, format string, args ...any)) {
	t := c.Skills.Tools
	if t.MaxSteps < 0 || t.MaxSteps > 64 {
		add("skills.tools.max_steps", "must be between 0 (the default, 4) and 64, got %d", t.MaxSteps)
	}
	if t.MaxTokens < 0 {
		add("skills.tools.max_tokens", "must not be negative, got %d", t.MaxTokens)
	}
	if t.Timeout < 0 {
		add("skills.tools.timeout", "must not be negative, got %s", t.Timeout)
	}
	if t.CallTimeout < 0 || (t.CallTimeout != 0 && t.CallTimeout.D() < 1e8) {
		add("skills.tools.call_timeout", "must be 0 (the default, 10s) or at least 100ms, got %s", t.CallTimeout)
	}
	if t.MaxResult < 0 || t.MaxResult > 1<<20 {
		add("skills.tools.max_result", "must be between 0 (the default, 64KiB) and 1MiB, got %s", t.MaxResult)
	}
	seen := map[string]bool{}
	for i, m := range c.Skills.MCP {
		at := func(k string) string { return "skills.mcp[" + strconv.Itoa(i) + "]." + k }
		if !mcpName(m.Name) {
			add(at("name"), "must be 1 to 32 letters, digits, _ or -, got %q", m.Name)
		} else if seen[m.Name] {
			add(at("name"), "%q names two servers", m.Name)
		}
		seen[m.Name] = true
		switch {
		case len(m.Command) > 0 && m.URL != "":
			add(at("url"), "a server has a command or a url, not both")
		case len(m.Command) == 0 && m.URL == "":
			add(at("command"), "a server needs a command (stdio) or a url (streamable HTTP)")
		case len(m.Command) > 0 && m.Command[0] == "":
			add(at("command"), "the command's first word is empty")
		case m.URL != "":
			if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(at("url"), "must be an http or https URL, got %q", m.URL)
			}
		}
		if len(m.Env) > 0 && m.URL != "" {
			add(at("env"), "is for a command's server, not a url's")
		}
		if len(m.Headers) > 0 && len(m.Command) > 0 {
			add(at("headers"), "are for a url's server, not a command's")
		}
		if m.Timeout < 0 {
			add(at("timeout"), "must not be negative, got %s", m.Timeout)
		}
	}
}
