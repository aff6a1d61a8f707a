// Package wire is the protocol between a node (package skills) and its
// skills worker (cmd/moltbot-skills): JSON lines, one Request or Response
// each, written once for both sides.
//
// The node sends load (Dir, MaxFile, MCP), match (Input), run (Skill,
// Input, Matches, DeadlineMS), tool (Tool, Args, Input, DeadlineMS: a
// call of a server-side tool, a JavaScript skill's or an MCP server's)
// and, while a skill runs, reply (Seq, Text or Error: the answer to a
// model call the worker asked for). The worker answers each request by
// its ID: a Response with Done (or, for load, Skills, Tools and
// Warnings), and during a run or a JavaScript tool's call zero or more
// Responses with Call, a model call it waits on.
package wire

import "encoding/json"

// Request is a line from the node to the worker.
type Request struct {
	ID         int64     `json:"id"`
	Op         string    `json:"op"`
	Dir        string    `json:"dir,omitempty"`
	MaxFile    int64     `json:"max_file,omitempty"`
	Input      string    `json:"input,omitempty"`
	Skill      string    `json:"skill,omitempty"`
	Matches    []*string `json:"matches,omitempty"`
	DeadlineMS int64     `json:"deadline_ms,omitempty"`
	Seq        int       `json:"seq,omitempty"`
	Text       string    `json:"text,omitempty"`
	Error      string    `json:"error,omitempty"`
	// MCP (load) are the MCP servers whose tools the worker lists and calls.
	MCP []MCPServer `json:"mcp,omitempty"`
	// Tool and Args (tool) name a tool of load's Tools and give its
	// arguments, a JSON object.
	Tool string          `json:"tool,omitempty"`
	Args json.RawMessage `json:"args,omitempty"`
	// MaxResult (load) bounds a tool's result, in bytes: a longer one is
	// cut and says so.
	MaxResult int `json:"max_result,omitempty"`
}

// MCPServer is an MCP server the worker connects to: a command it starts
// (stdio; Command[0] an absolute path, Env the whole environment) or a
// URL (streamable HTTP, with Headers on every request).
type MCPServer struct {
	Name    string            `json:"name"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// TimeoutMS bounds connecting and listing its tools at load.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// ToolInfo is a server-side tool the model may be offered: a JavaScript
// skill's (Skill set) or an MCP server's (Server set; Name is
// server__tool).
type ToolInfo struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Skill       string          `json:"skill,omitempty"`
	Server      string          `json:"server,omitempty"`
}

// SkillInfo is a loaded skill as the worker describes it.
type SkillInfo struct {
	Name     string   `json:"name"`
	File     string   `json:"file"`
	Patterns []string `json:"patterns"`
	// RE2 are the patterns in Go's syntax (flags as a (?ims) prefix): the
	// node matches with them itself, so a turn no skill matches never
	// waits behind a running skill.
	RE2 []string `json:"re2"`
	// Tool, when set, offers the skill to the model as a tool (its
	// exports' tool: {description, parameters}).
	Tool *ToolInfo `json:"tool,omitempty"`
}

// Call is a model call a running skill asks the node for.
type Call struct {
	Seq    int    `json:"seq"`
	Alias  string `json:"alias"`
	Prompt string `json:"prompt"`
}

// Response is a line from the worker to the node.
type Response struct {
	ID      int64       `json:"id"`
	Skills  []SkillInfo `json:"skills,omitempty"`
	Skill   string      `json:"skill,omitempty"`
	Matches []*string   `json:"matches,omitempty"`
	Call    *Call       `json:"call,omitempty"`
	Done    bool        `json:"done,omitempty"`
	Reply   string      `json:"reply,omitempty"`
	Error   string      `json:"error,omitempty"`
	// Tools (load) are the server-side tools: the JavaScript skills'
	// and the MCP servers'.
	Tools []ToolInfo `json:"tools,omitempty"`
	// Warnings (load) say what did not load without failing the load:
	// an MCP server that did not answer, a tool whose name cannot be
	// offered.
	Warnings []string `json:"warnings,omitempty"`
}
