// Package wire is the protocol between a node (package skills) and its
// skills worker (cmd/moltbot-skills): JSON lines, one Request or Response
// each, written once for both sides.
//
// The node sends load (Dir, MaxFile, MCP; or Set and Files: a tenant's
// pushed skills), unload (Set), match (Input), run (Skill,
// Input, Matches, DeadlineMS), tool (Tool, Args, Input, DeadlineMS: a
// call of a server-side tool, a JavaScript skill's or an MCP server's)
// and, while a skill or a JavaScript tool runs, reply (Seq, Text or
// Error, Found, Vectors: the answer to a call the worker asked for). The
// worker answers each request by its ID: a Response with Done (or, for
// load, Skills, Tools and Warnings), and during a run or a JavaScript
// tool's call zero or more Responses with Call, a call of the skill's
// environment (a model, its key-value store, embeddings) it waits on.
//
// The node trusts nothing the worker writes (a skill's code runs there):
// it bounds each line and checks every field against the limits below
// before it acts on one (package skills, parseLine).
package wire

import "encoding/json"

// Limits both sides hold a line's fields to.
const (
	// MaxName bounds a skill's name; MaxModel a model alias or name (as
	// the router's MaxModelName does).
	MaxName  = 64
	MaxModel = 256
	// MaxModels bounds a skill's models: map.
	MaxModels = 64
	// MaxModelCalls bounds limits.model_calls (and is its ceiling);
	// DefaultModelCalls is a run's callModel calls when a skill says none.
	MaxModelCalls     = 64
	DefaultModelCalls = 8
	// MaxKey bounds a key of context.kv, MaxValue its value, MaxKeys the
	// keys a skill may hold per tenant, MaxKVCalls its kv calls a run.
	MaxKey     = 128
	MaxValue   = 4 << 10
	MaxKeys    = 256
	MaxKVCalls = 64
	// MaxEmbedTexts bounds the texts of a context.embed call,
	// MaxEmbedText one of them; MaxEmbedCalls a run's embed calls.
	MaxEmbedTexts = 16
	MaxEmbedText  = 8 << 10
	MaxEmbedCalls = 8
	// MaxSearchCalls bounds a run's context.search calls, MaxSearchQuery
	// a query, MaxSearchK the chunks one asks for.
	MaxSearchCalls = 8
	MaxSearchQuery = 4 << 10
	MaxSearchK     = 16
)

// The kinds of a Call: a model's answer, or context.kv.
const (
	CallModel    = "model"
	CallKVGet    = "kv.get"
	CallKVSet    = "kv.set"
	CallKVDelete = "kv.delete"
	CallEmbed    = "embed"
	CallSearch   = "search"
)

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
	// Found answers a kv.get (false: no such key; Text is the value)
	// and a kv.delete (whether there was one).
	Found bool `json:"found,omitempty"`
	// Vectors answer an embed call: one a text, in order.
	Vectors [][]float32 `json:"vectors,omitempty"`
	Error   string      `json:"error,omitempty"`
	// MCP (load) are the MCP servers whose tools the worker lists and calls.
	MCP []MCPServer `json:"mcp,omitempty"`
	// Tool and Args (tool) name a tool of load's Tools and give its
	// arguments, a JSON object.
	Tool string          `json:"tool,omitempty"`
	Args json.RawMessage `json:"args,omitempty"`
	// MaxResult (load) bounds a tool's result, in bytes: a longer one is
	// cut and says so.
	MaxResult int `json:"max_result,omitempty"`
	// Set names a tenant's set of skills (load, unload, run, tool,
	// match): load with Set loads Files (a tenant's pushed skills, not
	// Dir's, no MCP) under that name beside the workspace's skills (Set
	// empty); run and tool with Set run a skill of that set; unload
	// forgets it.
	Set string `json:"set,omitempty"`
	// Files (load with Set) are the set's JavaScript files.
	Files []File `json:"files,omitempty"`
}

// File is a skill file sent whole (a tenant's pushed skill): its name,
// NAME.js, and its source.
type File struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// MaxSets bounds the tenants' sets a worker holds at once (the node
// unloads the least recently used before it loads one more).
const MaxSets = 16

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
	// Intent, when set, selects the skill for a turn whose recognized
	// intent it is (its exports' intent: 'refund'; skills/intents.yaml),
	// as a pattern that matches does.
	Intent string `json:"intent,omitempty"`
	// Models is the skill's own alias -> model map (module.exports.models).
	Models map[string]string `json:"models,omitempty"`
	// ModelCalls is limits.model_calls: the callModel calls a run may
	// make (0: DefaultModelCalls; -1: none).
	ModelCalls int `json:"model_calls,omitempty"`
}

// Call is what a running skill asks the node for: a model's answer
// (Kind CallModel or empty: Alias, Prompt), a kv operation (Key, and
// Value for a set), vectors (CallEmbed: Texts) or a knowledge base's
// chunks (CallSearch: KB, Query, K).
type Call struct {
	Seq    int      `json:"seq"`
	Kind   string   `json:"kind,omitempty"`
	Alias  string   `json:"alias,omitempty"`
	Prompt string   `json:"prompt,omitempty"`
	Key    string   `json:"key,omitempty"`
	Value  string   `json:"value,omitempty"`
	Texts  []string `json:"texts,omitempty"`
	// KB, Query and K are a context.search call's (CallSearch): the
	// answer's Text is a JSON array of moltbot.Citation.
	KB    string `json:"kb,omitempty"`
	Query string `json:"query,omitempty"`
	K     int    `json:"k,omitempty"`
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

// ValidIntent reports whether s may name an intent: 1 to 64 of a-z, 0-9,
// '_', '-' and '.', starting with a letter or digit (it goes in a JSON
// enum, a turn's note, a flow's trigger, a JavaScript skill's intent:).
// skills/intents.yaml, the flows, the skills and the worker all check
// names with it.
func ValidIntent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}
