package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// StateName is the name flows keep their state under, with the
// conversation (moltbot.Turn.SetState).
const StateName = "flow"

// HandoffState is the state a handoff node leaves with the conversation:
// {"flow", "node", "at"}, the mark that the next issue (the hand-off
// queue, skills/handoff) turns into a queued conversation.
const HandoffState = "handoff"

// maxSteps bounds the nodes one turn runs without waiting for the user (a
// graph that loops through branches, never through a collect).
const maxSteps = 64

// maxInput bounds the message a trigger or a collect reads: a longer one
// goes on to the model (a flow's slot is short).
const maxInput = 8 << 10

// Skills calls the workspace's JavaScript skills for skill nodes.
type Skills interface {
	// Call runs skill on input for turn t (its callModel goes through
	// t.Model) and returns its reply and what its model calls used.
	Call(ctx context.Context, t *moltbot.Turn, skill, input string) (string, moltbot.Usage, error)
}

// Stage runs flows as a turn-pipeline stage before the model: a
// conversation inside a flow has its message taken by the flow; one that
// is not starts the first flow whose trigger matches. Its methods are
// safe for concurrent use.
type Stage struct {
	set    atomic.Pointer[Set]
	skills Skills
	log    *slog.Logger

	mu    sync.Mutex
	older map[string]*Flow // versions read back from conversations' state, by version
	order []string         // older's versions, oldest first (bounded)

	// tenant gives a turn's tenant's own flows (SetTenants; nil: none),
	// anyTenant whether some tenant has any.
	tenant    func(t *moltbot.Turn) *Set
	anyTenant func() bool
}

// SetTenants gives the stage tenants' own flows (pushed ones): of turn t,
// tenant(t) (nil: none); any reports whether some tenant has flows (the
// stage idles while none has and the workspace has none). A tenant's
// flows start before the workspace's, and one of the same name takes the
// workspace's place for that tenant. Set before the stage serves.
func (s *Stage) SetTenants(tenant func(t *moltbot.Turn) *Set, any func() bool) {
	s.tenant, s.anyTenant = tenant, any
}

// tenantSet is t's tenant's own flows (nil: none).
func (s *Stage) tenantSet(t *moltbot.Turn) *Set {
	if s.tenant == nil {
		return nil
	}
	return s.tenant(t)
}

// maxOlder bounds the versions of flows kept parsed besides the loaded ones.
const maxOlder = 32

// NewStage returns a stage without flows (Swap gives it some). skills
// answers skill nodes (nil: a skill node fails its turn).
func NewStage(skills Skills, log *slog.Logger) *Stage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{skills: skills, log: log, older: map[string]*Flow{}}
	s.set.Store(&Set{})
	return s
}

// Swap puts set in place of the flows in use (a reload) and returns them.
// Conversations inside a flow of the old set finish it on its version.
func (s *Stage) Swap(set *Set) *Set {
	if set == nil {
		set = &Set{}
	}
	return s.set.Swap(set)
}

// Flows are the flows in use.
func (s *Stage) Flows() *Set { return s.set.Load() }

// Idle reports whether there are no flows: the pipeline passes the stage
// by then (actors.Idler), except for a conversation that holds a flow's
// state (StateName: it finishes the flow it began).
func (s *Stage) Idle() bool {
	return len(s.set.Load().Flows) == 0 && (s.anyTenant == nil || !s.anyTenant())
}

// StateName is the name of the state the stage keeps (actors.Stateful).
func (s *Stage) StateName() string { return StateName }

// state is a conversation's place in a flow.
type state struct {
	Flow    string            `json:"flow"`
	Version string            `json:"version"`
	File    string            `json:"file"`
	Node    string            `json:"node"` // the collect waiting for the user's answer
	Tries   int               `json:"tries,omitempty"`
	Vars    map[string]string `json:"vars,omitempty"`
	// Source is the flow's source: the conversation finishes on this
	// version after a reload, a restart, or on another node.
	Source string `json:"source"`
}

// Step is what a flow did with one message (Run's report).
type Step struct {
	Flow, Version string
	// Nodes are the nodes run, in order.
	Nodes []string
	// Waiting is the collect node the flow waits at for the next message;
	// empty when it ended.
	Waiting string
	// Vars are the variables after the turn.
	Vars map[string]string
	// Handoff: a handoff node asked for a person.
	Handoff bool
}

// BeforeModel answers the turn with a flow when the conversation is inside
// one, or the message starts one; nil, nil passes it on.
func (s *Stage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	c, _, err := s.Run(ctx, t)
	if err != nil || c == nil {
		return nil, err
	}
	if t.Visible && fn != nil && c.Content != "" {
		if err := fn(moltbot.Chunk{Content: c.Content, Served: c.Served}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run is BeforeModel without streaming, with a report of what the flow
// did (nil when no flow took the message).
func (s *Stage) Run(ctx context.Context, t *moltbot.Turn) (*moltbot.Completion, *Step, error) {
	text := lastUser(t.Messages)
	if text == "" {
		return nil, nil, nil
	}
	st, f := s.current(t)
	if f == nil {
		if len(text) > maxInput || !utf8.ValidString(text) {
			return nil, nil, nil
		}
		// A stateless completion (the OpenAI, Ollama or Anthropic API)
		// has no conversation to keep a flow's place in: its message goes
		// to the model as if no flow were there (docs/DESIGN.md, flows),
		// and no trigger is tried (nor the intent classified for one).
		if t.Conversation == "" {
			return nil, nil, nil
		}
		var trig *Node
		var vars map[string]string
		own := s.tenantSet(t)
		lists := [2][]*Flow{own.list(), s.set.Load().Flows}
	find:
		for i, list := range lists {
			for _, fl := range list {
				if !t.Bot.HasSkill(fl.Name) { // a bot's turns start only the flows it names
					continue
				}
				if i == 1 && own.Flow(fl.Name) != nil {
					continue // the tenant's flow of that name takes the workspace's place
				}
				if trig, vars = fl.match(ctx, text, t); trig != nil {
					f = fl
					break find
				}
			}
		}
		if f == nil {
			return nil, nil, nil
		}
		st = &state{Flow: f.Name, Version: f.Version, File: f.File, Vars: vars, Source: f.src}
		st.Node = trig.ID
	}
	r := runner{s: s, t: t, f: f, st: st, step: &Step{Flow: f.Name, Version: f.Version}}
	return r.turn(ctx, text)
}

// current is the conversation's flow state and its flow's version, or
// nils. A state that does not read (or whose source no longer parses) is
// dropped, logged: the conversation goes on without the flow.
func (s *Stage) current(t *moltbot.Turn) (*state, *Flow) {
	raw := t.StateOf(StateName)
	if raw == nil {
		return nil, nil
	}
	st := &state{}
	if err := json.Unmarshal(raw, st); err != nil {
		s.log.Error("a conversation's flow state does not read; the flow is left", "conversation", t.Space+"/"+t.Conversation, "err", err)
		t.SetState(StateName, nil)
		return nil, nil
	}
	if f := s.tenantSet(t).Flow(st.Flow); f != nil && f.Version == st.Version {
		return st, f
	}
	if f := s.set.Load().Flow(st.Flow); f != nil && f.Version == st.Version {
		return st, f
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.older[st.Version]; f != nil && f.Name == st.Flow {
		return st, f
	}
	f, err := Parse(st.File, []byte(st.Source), nil)
	if err != nil || f.Name != st.Flow || f.Version != st.Version {
		s.log.Error("a conversation's flow version does not load; the flow is left", "conversation", t.Space+"/"+t.Conversation,
			"flow", st.Flow, "version", st.Version, "err", err)
		t.SetState(StateName, nil)
		return nil, nil
	}
	if len(s.order) >= maxOlder {
		delete(s.older, s.order[0])
		s.order = s.order[1:]
	}
	s.older[f.Version] = f
	s.order = append(s.order, f.Version)
	return st, f
}

// list is the set's flows (none for a nil set).
func (s *Set) list() []*Flow {
	if s == nil {
		return nil
	}
	return s.Flows
}

// match reports whether a trigger of f matches text (or, for a trigger
// with an intent, the turn's notes say that intent was recognized with
// confidence: intent is the name, intent.low is not "true"): the trigger,
// and the variables the flow starts with (its vars:, the trigger's named
// groups).
func (f *Flow) match(ctx context.Context, text string, t *moltbot.Turn) (*Node, map[string]string) {
	lower := ""
	for _, n := range f.triggers {
		for _, re := range n.patterns {
			m := re.FindStringSubmatch(text)
			if m == nil {
				continue
			}
			vars := f.startVars()
			for i, g := range re.SubexpNames() {
				if g != "" && m[i] != "" {
					vars[g] = capVar(m[i])
				}
			}
			return n, vars
		}
		if len(n.keywords) > 0 && lower == "" {
			lower = strings.ToLower(text)
		}
		for _, kw := range n.keywords {
			if strings.Contains(lower, kw) {
				return n, f.startVars()
			}
		}
		// The turn's intent is classified when first asked (the intent
		// stage puts it off: moltbot.Turn.Later).
		if n.Intent != "" && t.NoteOf(ctx, "intent") == n.Intent && t.NoteOf(ctx, "intent.low") != "true" {
			return n, f.startVars()
		}
	}
	return nil, nil
}

func (f *Flow) startVars() map[string]string {
	vars := make(map[string]string, len(f.Vars)+2)
	for k, v := range f.Vars {
		vars[k] = v
	}
	return vars
}

// runner is one turn of a flow.
type runner struct {
	s     *Stage
	t     *moltbot.Turn
	f     *Flow
	st    *state
	step  *Step
	out   []string
	usage moltbot.Usage
}

// turn takes the user's text at the state's node (a trigger that just
// matched, or the collect waiting), runs on until the flow waits again or
// ends, and keeps the state.
func (r *runner) turn(ctx context.Context, text string) (*moltbot.Completion, *Step, error) {
	if r.st.Vars == nil {
		r.st.Vars = map[string]string{}
	}
	vars := r.st.Vars
	vars["input"] = text
	n := r.f.byID[r.st.Node]
	if n == nil {
		return nil, nil, moltbot.Errorf(moltbot.EInternal, "flow %q (version %s) has no node %q", r.f.Name, r.f.Version, r.st.Node)
	}
	next := ""
	if n.Kind == Trigger {
		r.step.Nodes = append(r.step.Nodes, n.ID)
		next = n.next[""]
	} else { // a collect waiting for this message
		r.step.Nodes = append(r.step.Nodes, n.ID)
		v, ok := n.accept(text)
		switch {
		case ok:
			vars[n.Var], r.st.Tries = capVar(v), 0
			next = n.next[""]
		case r.st.Tries < n.retries:
			r.st.Tries++
			r.out = append(r.out, n.retry.render(vars))
			return r.done(n.ID)
		case n.next["fail"] != "":
			r.st.Tries = 0
			next = n.next["fail"]
		default:
			// Retries spent and no fail port: the flow ends, and the
			// message goes on (to the skills, the model).
			if err := r.t.SetState(StateName, nil); err != nil {
				return nil, nil, err
			}
			return nil, r.report(), nil
		}
	}
	for steps := 0; next != ""; steps++ {
		if steps == maxSteps {
			return nil, nil, moltbot.Errorf(moltbot.EInternal, "flow %q (%s) ran %d nodes in one turn without waiting for the user: does it loop?", r.f.Name, r.f.File, maxSteps)
		}
		n := r.f.byID[next]
		r.step.Nodes = append(r.step.Nodes, n.ID)
		var err error
		switch next, err = r.node(ctx, n); {
		case err != nil:
			return nil, nil, err
		case next == waiting:
			return r.done(n.ID)
		}
	}
	return r.done("")
}

// waiting is node's answer when the flow waits for the user.
const waiting = "\x00wait"

// node runs n and returns the next node's id ("" when the flow ends here,
// waiting when it waits for the user).
func (r *runner) node(ctx context.Context, n *Node) (string, error) {
	vars := r.st.Vars
	switch n.Kind {
	case Collect:
		if v := vars[n.Var]; v != "" {
			if _, ok := n.accept(v); ok {
				return n.next[""], nil // filled already (a trigger's group)
			}
		}
		r.st.Tries = 0
		r.out = append(r.out, n.prompt.render(vars))
		return waiting, nil
	case Skill:
		if r.s.skills == nil {
			return r.failed(n, fmt.Errorf("no skills are loaded"))
		}
		reply, u, err := r.s.skills.Call(ctx, r.t, n.Skill, n.input.render(vars))
		r.add(u)
		if err != nil {
			return r.failed(n, err)
		}
		vars[n.Var] = capVar(reply)
	case LLM:
		if r.t.Model == nil {
			return r.failed(n, errors.New("no model in this turn"))
		}
		msgs := make([]moltbot.Message, 0, 2)
		if !n.system.empty() {
			msgs = append(msgs, moltbot.Message{Role: moltbot.RoleSystem, Content: n.system.render(vars)})
		}
		msgs = append(msgs, moltbot.Message{Role: moltbot.RoleUser, Content: n.prompt.render(vars)})
		c, err := r.t.Model(ctx, msgs, moltbot.ChatOptions{Model: n.Model}, nil)
		if c != nil {
			r.add(c.Usage)
		}
		if err != nil {
			return r.failed(n, err)
		}
		vars[n.Var] = capVar(c.Content)
	case Branch:
		for _, c := range n.cases {
			if c.when.eval(vars).truth() {
				return n.next[c.port], nil
			}
		}
		return n.next["else"], nil
	case Reply:
		r.out = append(r.out, n.text.render(vars))
	case Handoff:
		r.out = append(r.out, n.text.render(vars))
		mark, _ := json.Marshal(map[string]any{"flow": r.f.Name, "node": n.ID, "at": time.Now().UnixMilli()})
		if err := r.t.SetState(HandoffState, mark); err != nil {
			return "", err
		}
		r.step.Handoff = true
		return "", nil
	}
	return n.next[""], nil
}

// failed: a skill or a model call of n failed. Its error port, when it
// has one, goes on with the error in the var "error"; else the turn fails.
func (r *runner) failed(n *Node, err error) (string, error) {
	if to := n.next["error"]; to != "" {
		r.st.Vars["error"] = capVar(err.Error())
		return to, nil
	}
	var me *moltbot.Error
	if errors.As(err, &me) {
		// Its code stays (a model busy, a deadline): wrapped, as it was.
		return "", fmt.Errorf("flow %q, node %q (%s): %w", r.f.Name, n.ID, n.Kind, err)
	}
	return "", moltbot.Errorf(moltbot.EInternal, "flow %q, node %q (%s): %v", r.f.Name, n.ID, n.Kind, err)
}

func (r *runner) add(u moltbot.Usage) {
	r.usage.PromptTokens += u.PromptTokens
	r.usage.CompletionTokens += u.CompletionTokens
}

// maxVar bounds a variable's value (a model's reply, a skill's, an
// answer) kept in a flow's state: longer text is cut at a rune boundary.
const maxVar = 4 << 10

func capVar(v string) string {
	if len(v) <= maxVar {
		return v
	}
	i := maxVar
	for i > 0 && !utf8.RuneStart(v[i]) {
		i-- // at most 3 steps back to the rune that starts at or before the cut
	}
	return v[:i]
}

// done keeps the state (waiting at node; "" the flow ended) and answers
// with what the flow said; a flow that ended having said nothing passes
// the message on.
func (r *runner) done(node string) (*moltbot.Completion, *Step, error) {
	delete(r.st.Vars, "input")
	var b []byte
	if node != "" {
		r.st.Node = node
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // a source's < > & stay one byte each
		if err := enc.Encode(r.st); err != nil {
			return nil, nil, moltbot.Errorf(moltbot.EInternal, "flow %q: its state: %v", r.f.Name, err)
		}
		b = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	if err := r.t.SetState(StateName, b); err != nil {
		if moltbot.ErrorCode(err) != moltbot.ETooLarge {
			return nil, nil, err
		}
		// A flow whose variables outgrew what a conversation keeps ends
		// here, saying so, rather than failing this turn and every one
		// after it at the same node.
		if err := r.t.SetState(StateName, nil); err != nil {
			return nil, nil, err
		}
		r.out = append(r.out, fmt.Sprintf("(The %s flow ended: what it collected outgrew what a conversation keeps.)", r.f.Name))
		node = ""
	}
	r.step.Waiting = node
	step := r.report()
	if len(r.out) == 0 {
		return nil, step, nil
	}
	return &moltbot.Completion{Content: strings.Join(r.out, "\n\n"), Served: moltbot.ModelRef{Provider: "flow", Model: r.f.Name},
		Usage: r.usage, FinishReason: "stop"}, step, nil
}

func (r *runner) report() *Step {
	r.step.Vars = r.st.Vars
	return r.step
}

// accept validates a collect's answer: with a pattern, its first group
// when it has one (else the whole match); without, the trimmed text.
func (n *Node) accept(text string) (string, bool) {
	text = strings.TrimSpace(text)
	if text == "" || len(text) > maxInput {
		return "", false
	}
	if n.pattern == nil {
		return text, true
	}
	m := n.pattern.FindStringSubmatch(text)
	switch {
	case m == nil:
		return "", false
	case len(m) > 1 && m[1] != "":
		return m[1], true
	}
	return m[0], true
}

// lastUser is the turn's user message: the last message, when it is the
// user's ("" for a turn that only hands the model its tools' results: a
// flow neither starts nor moves on it).
func lastUser(msgs []moltbot.Message) string {
	if len(msgs) == 0 || msgs[len(msgs)-1].Role != moltbot.RoleUser {
		return ""
	}
	return msgs[len(msgs)-1].Text()
}
