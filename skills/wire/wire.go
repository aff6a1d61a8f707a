// Package wire is the protocol between a node (package skills) and its
// skills worker (cmd/moltbot-skills): JSON lines, one Request or Response
// each, written once for both sides.
//
// The node sends load (Dir, MaxFile), match (Input), run (Skill, Input,
// Matches, DeadlineMS) and, while a skill runs, reply (Seq, Text or Error:
// the answer to a model call the worker asked for). The worker answers
// each request by its ID: a Response with Done (or, for load, Skills),
// and during a run zero or more Responses with Call, a model call it
// waits on.
package wire

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
}
