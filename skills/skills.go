// Package skills runs the workspace's JavaScript skills (skills/*.js) as a
// turn-pipeline stage before the model: when a turn's last user message
// matches a skill's pattern, the skill answers the turn instead of the
// model. Skills that say tool:, and the tools of MCP servers, are offered
// to the model by the tool loop, a stage around it (loop.go). The skills themselves run out of process, in the moltbot-skills
// worker (cmd/moltbot-skills, the only code that links goja): the node's
// binary does not grow, and a skill that loops, or runs a backtracking
// regexp that goja cannot interrupt, is killed with its process while the
// node keeps serving (docs/DESIGN.md). This package holds the node's side:
// it finds the files (the worker reads them, through os.Root; reading
// them here would link os.Root's 25 KB into the node), keeps one worker, restarts it after a
// crash or a kill, bounds what it reads from it, and answers the worker's
// callModel requests through the turn's model chain.
package skills

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/skills/wire"
)

// WorkerName is the worker binary's name, looked up next to the running
// binary when Config.Worker is empty.
const WorkerName = "moltbot-skills"

// Config is the skills stage's.
type Config struct {
	// Dir is the workspace's skills/ directory.
	Dir string
	// Worker is the moltbot-skills binary; empty: the one next to the
	// running binary.
	Worker string
	// Deadline bounds a skill's run, its model calls included (default
	// 20s). The worker interrupts the skill's JavaScript at the deadline;
	// the node kills the worker when it has not answered a second later.
	Deadline time.Duration
	// MaxInput caps the text matched and given to a skill, in bytes
	// (default 8 KiB): a longer message goes to the model.
	MaxInput int
	// MaxLine bounds a line read from the worker (default 1 MiB): a
	// longer one kills it and fails the turn.
	MaxLine int
	// MaxFile bounds a skill file (default 1 MiB).
	MaxFile int64
	// MCP are the MCP servers whose tools the worker lists and calls (a
	// command's argv[0] an absolute path: ResolveMCP). With some, the
	// worker starts though skills/ holds no JavaScript.
	MCP []wire.MCPServer
	// Tools bounds the server-side tool loop.
	Tools  ToolConfig
	Logger *slog.Logger
}

// Skill is a loaded skill as the worker describes it.
type Skill struct {
	wire.SkillInfo
	res []*regexp.Regexp
}

// loaded is what the last worker loaded.
type loaded struct {
	skills   []Skill
	tools    []wire.ToolInfo
	offered  []moltbot.Tool // tools as the model is offered them
	warnings []string
}

// Skills is the stage. Its methods are safe for concurrent use; the worker
// runs one request at a time, so skill runs queue behind each other.
type Skills struct {
	cfg Config
	// skills are the loaded skills and tools, as the last worker loaded
	// them (a restarted worker reads the files again).
	skills atomic.Pointer[loaded]

	mu     sync.Mutex // one request to the worker at a time
	w      *worker
	nextID int64
	closed bool // Close was called: no worker starts again
}

// mcpTimeout is the worker's bound on connecting to an MCP server and
// listing its tools when the config gives none.
const mcpTimeout = 10 * time.Second

// ErrClosed is Run's error after Close (a reload replaced these skills):
// the caller may try the skills that replaced them.
var ErrClosed = errors.New("skills: closed (reloaded)")

// ErrNoWorker is Open's error, wrapped, when the worker binary is not
// there (the edge build does not build it).
var ErrNoWorker = errors.New("no skills worker")

// Open reads dir's *.js files and loads them in a worker. With no dir, or
// no JS file in it, it returns nil, nil: no worker, no stage. A file the
// worker cannot load (a syntax error, a pattern RE2 cannot take) is an
// error naming it.
func Open(cfg Config) (*Skills, error) {
	if cfg.Deadline <= 0 {
		cfg.Deadline = 20 * time.Second
	}
	if cfg.MaxInput <= 0 {
		cfg.MaxInput = 8 << 10
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 1 << 20
	}
	if cfg.MaxFile <= 0 {
		cfg.MaxFile = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Tools.ensureDefaults()
	// A tool's result, JSON-escaped, fits a line.
	cfg.MaxLine = max(cfg.MaxLine, 6*cfg.Tools.MaxResult+64<<10)
	// The worker reads the files (os.Root: nothing outside skills/, no
	// symlink out of it); here only whether there is one, so that a node
	// without JS skills starts no worker.
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("skills: %w", err)
	}
	if !slices.ContainsFunc(ents, func(e fs.DirEntry) bool { return !e.IsDir() && strings.HasSuffix(e.Name(), ".js") }) {
		if len(cfg.MCP) == 0 {
			return nil, nil
		}
		cfg.Dir = "" // MCP servers only
	} else if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("skills: %w", err)
	}
	s := &Skills{cfg: cfg}
	if s.cfg.Worker == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("skills: the worker: %w", err)
		}
		s.cfg.Worker = filepath.Join(filepath.Dir(exe), WorkerName)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.worker(); err != nil {
		return nil, err
	}
	return s, nil
}

// Skills are the loaded skills.
func (s *Skills) Skills() []Skill { return slices.Clone(s.skills.Load().skills) }

// Tools are the server-side tools: the JavaScript skills' that say tool:,
// and the MCP servers' that answered at load.
func (s *Skills) Tools() []wire.ToolInfo { return slices.Clone(s.skills.Load().tools) }

// Warnings say what the last load left out without failing: an MCP
// server that did not answer, a tool whose name a model cannot take.
func (s *Skills) Warnings() []string { return slices.Clone(s.skills.Load().warnings) }

// Close stops the worker, after the skill running in it, if any; Run
// returns ErrClosed afterwards.
func (s *Skills) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.w != nil {
		s.w.kill()
		s.w = nil
	}
	return nil
}

// worker is a running moltbot-skills process.
type worker struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  chan wire.Response
	err  error // why out closed; read after it did
	quit chan struct{}
	done chan struct{}
}

func (w *worker) kill() {
	close(w.quit)
	w.in.Close()
	w.cmd.Process.Kill()
	<-w.done
}

// worker returns the running worker, starting and loading one when there
// is none (s.mu held).
func (s *Skills) worker() (*worker, error) {
	if s.w != nil {
		return s.w, nil
	}
	cmd := exec.Command(s.cfg.Worker)
	cmd.Env = []string{"GOMEMLIMIT=256MiB"} // nothing of the node's environment
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &logWriter{log: s.cfg.Logger}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrNoWorker, err)
		}
		return nil, fmt.Errorf("skills: start the worker (%s; build it with make build, or set skills.worker): %w", s.cfg.Worker, err)
	}
	w := &worker{cmd: cmd, in: in, out: make(chan wire.Response), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(outp)
		sc.Buffer(make([]byte, 0, 64<<10), s.cfg.MaxLine)
		for sc.Scan() {
			var r wire.Response
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				w.err = fmt.Errorf("a bad line from the worker: %w", err)
				break
			}
			select {
			case w.out <- r:
			case <-w.quit:
			}
		}
		if w.err == nil {
			w.err = sc.Err()
		}
		if errors.Is(w.err, bufio.ErrTooLong) {
			w.err = fmt.Errorf("the worker wrote a line longer than %d bytes", s.cfg.MaxLine)
		}
		cmd.Process.Kill()
		close(w.out)
		cmd.Wait()
	}()
	s.w = w
	limit := 10 * time.Second
	for _, m := range s.cfg.MCP {
		d := time.Duration(m.TimeoutMS) * time.Millisecond
		if d <= 0 {
			d = mcpTimeout // the worker's default
		}
		limit = max(limit, d+5*time.Second)
	}
	resp, err := s.do(context.Background(), wire.Request{Op: "load", Dir: s.cfg.Dir, MaxFile: s.cfg.MaxFile, MCP: s.cfg.MCP,
		MaxResult: s.cfg.Tools.MaxResult}, limit, nil)
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		s.drop()
		return nil, fmt.Errorf("skills: %s", resp.Error)
	}
	l := &loaded{skills: make([]Skill, len(resp.Skills)), tools: resp.Tools, warnings: resp.Warnings}
	for _, t := range resp.Tools {
		l.offered = append(l.offered, moltbot.Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters})
	}
	for _, w := range resp.Warnings {
		s.cfg.Logger.Warn("skills: " + w)
	}
	for i := range resp.Skills {
		sk := &l.skills[i]
		sk.SkillInfo = resp.Skills[i]
		for _, p := range sk.RE2 {
			re, err := regexp.Compile(p)
			if err != nil {
				s.drop()
				return nil, fmt.Errorf("skills: skills/%s: pattern %s: %w", sk.File, p, err)
			}
			sk.res = append(sk.res, re)
		}
	}
	s.skills.Store(l)
	return w, nil
}

// drop kills the worker; the next request starts another (s.mu held).
func (s *Skills) drop() {
	if s.w != nil {
		s.w.kill()
		s.w = nil
	}
}

// do sends r to the worker and waits for its answer, at most limit (the
// worker is killed then), answering its model calls with onCall (s.mu
// held).
func (s *Skills) do(ctx context.Context, r wire.Request, limit time.Duration, onCall func(wire.Call) (string, error)) (wire.Response, error) {
	w := s.w
	s.nextID++
	r.ID = s.nextID
	if err := s.send(r); err != nil {
		s.drop()
		return wire.Response{}, fmt.Errorf("skills: the worker: %w", err)
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case resp, ok := <-w.out:
			if !ok {
				s.drop()
				return wire.Response{}, fmt.Errorf("skills: the worker exited (%v); it restarts for the next turn", w.err)
			}
			if resp.ID != r.ID {
				continue // a late answer to a request given up
			}
			if resp.Call == nil {
				return resp, nil
			}
			text, err := "", errors.New("this wire.Request cannot call a model")
			if onCall != nil {
				text, err = onCall(*resp.Call)
			}
			rep := wire.Request{ID: r.ID, Op: "reply", Seq: resp.Call.Seq, Text: text}
			if err != nil {
				rep.Error = err.Error()
			}
			if err := s.send(rep); err != nil {
				s.drop()
				return wire.Response{}, fmt.Errorf("skills: the worker: %w", err)
			}
		case <-timer.C:
			s.drop()
			return wire.Response{}, fmt.Errorf("skills: the worker did not answer within %s and was killed (a skill that cannot be interrupted, such as a backtracking regexp); it restarts for the next turn", limit)
		case <-ctx.Done():
			s.drop() // the worker may be busy for long: a new one serves the next turn
			return wire.Response{}, ctx.Err()
		}
	}
}

func (s *Skills) send(r wire.Request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.w.in.Write(append(b, '\n'))
	return err
}

// Match returns the first skill whose pattern matches text, and the match
// (matches[0] the whole match, then the captures; nil for a group that
// did not take part); "" when none does. It matches here, with the
// patterns the worker compiled at load (Go's RE2 either way): a turn no
// skill matches never waits for the worker.
func (s *Skills) Match(text string) (string, []*string) { return s.MatchBot(text, nil) }

// MatchBot is Match among the skills bot may run (Bot.HasSkill; a nil bot
// runs every skill).
func (s *Skills) MatchBot(text string, bot *moltbot.Bot) (string, []*string) {
	if len(text) > s.cfg.MaxInput {
		return "", nil
	}
	for _, sk := range s.skills.Load().skills {
		if !bot.HasSkill(sk.Name) {
			continue
		}
		for _, re := range sk.res {
			idx := re.FindStringSubmatchIndex(text)
			if idx == nil {
				continue
			}
			m := make([]*string, len(idx)/2)
			for i := range m {
				if idx[2*i] >= 0 {
					g := text[idx[2*i]:idx[2*i+1]]
					m[i] = &g
				}
			}
			return sk.Name, m
		}
	}
	return "", nil
}

// Run runs a skill on text with its match; model answers its callModel
// requests.
func (s *Skills) Run(ctx context.Context, skill, text string, matches []*string, model func(alias, prompt string) (string, error)) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	if _, err := s.worker(); err != nil {
		return "", err
	}
	d := s.cfg.Deadline
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d = max(time.Until(dl), time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(ctx, d+time.Second)
	defer cancel()
	resp, err := s.do(ctx, wire.Request{Op: "run", Skill: skill, Input: text, Matches: matches, DeadlineMS: d.Milliseconds()}, d+time.Second,
		func(c wire.Call) (string, error) { return model(c.Alias, c.Prompt) })
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		err = fmt.Errorf("skills: skill %s did not finish within its deadline (%s); its worker was killed and restarts for the next turn", skill, d)
	}
	if err != nil {
		return "", err
	}
	if resp.Error != "" {
		return "", moltbot.Errorf(moltbot.EInternal, "%s", resp.Error)
	}
	return resp.Reply, nil
}

// BeforeModel answers the turn with a skill when the last user message
// matches one; nil, nil passes it on to the model. The skill's
// callModel(alias, {prompt}) asks t.Model with the alias as the model's
// name: a model (or provider/model) the router knows; an alias it does not
// know goes to the turn's chain instead (per-skill `models:` maps are for
// a later step).
func (s *Skills) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	text := lastUser(t.Messages)
	if text == "" || !utf8.ValidString(text) {
		return nil, nil
	}
	skill, matches := s.MatchBot(text, t.Bot) // a bot's turn runs only its skills
	if skill == "" {
		return nil, nil
	}
	reply, usage, err := s.runTurn(ctx, t, skill, text, matches)
	if err != nil {
		return nil, err
	}
	served := moltbot.ModelRef{Provider: "skill", Model: skill}
	if t.Visible && fn != nil && reply != "" {
		if err := fn(moltbot.Chunk{Content: reply, Served: served}); err != nil {
			return nil, err
		}
	}
	return &moltbot.Completion{Content: reply, Served: served, Usage: usage, FinishReason: "stop"}, nil
}

// modelOf answers a skill's callModel(alias, {prompt}) through t.Model,
// adding the tokens to usage.
func modelOf(ctx context.Context, t *moltbot.Turn, usage *moltbot.Usage) func(alias, prompt string) (string, error) {
	var mu sync.Mutex
	return func(alias, prompt string) (string, error) {
		if t.Model == nil {
			return "", errors.New("no model in this turn")
		}
		msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: prompt}}
		c, err := t.Model(ctx, msgs, moltbot.ChatOptions{Model: alias}, nil)
		var me *moltbot.Error
		if errors.As(err, &me) && me.Code == moltbot.ENotFound && me.Param == "model" {
			c, err = t.Model(ctx, msgs, moltbot.ChatOptions{}, nil) // an unknown alias: the chain
		}
		if err != nil {
			return "", err
		}
		mu.Lock()
		usage.PromptTokens += c.Usage.PromptTokens
		usage.CompletionTokens += c.Usage.CompletionTokens
		mu.Unlock()
		return c.Content, nil
	}
}

// ServerTools are the tools the loop offers the model (Toolbox).
//
// A bot's turns are offered only the tools of the skills and MCP servers
// it names among its skills (Bot.HasSkill; a nil bot: every tool).
func (s *Skills) ServerTools(bot *moltbot.Bot) []moltbot.Tool {
	l := s.skills.Load()
	if bot == nil {
		return l.offered
	}
	var out []moltbot.Tool
	for i, t := range l.tools {
		from := t.Skill
		if t.Server != "" {
			from = t.Server
		}
		if bot.HasSkill(from) {
			out = append(out, l.offered[i])
		}
	}
	return out
}

// CallTool runs a server-side tool (Toolbox) in the worker: the tool gets
// until a second before ctx's deadline (at most Tools.CallTimeout), the
// worker until the deadline, or it is killed (as for a run).
func (s *Skills) CallTool(ctx context.Context, t *moltbot.Turn, name, args string) (string, moltbot.Usage, error) {
	var usage moltbot.Usage
	if !json.Valid([]byte(args)) {
		return "", usage, errors.New("arguments are not JSON")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", usage, ErrClosed
	}
	if _, err := s.worker(); err != nil {
		return "", usage, err
	}
	d := s.cfg.Tools.CallTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl)-callGrace < d {
		// The loop's deadline: the call's, plus the grace (runCall).
		d = max((time.Until(dl) - callGrace).Round(time.Millisecond), time.Millisecond)
	}
	input := lastUser(t.Messages)
	if len(input) > s.cfg.MaxInput || !utf8.ValidString(input) {
		input = ""
	}
	model := modelOf(ctx, t, &usage)
	start := time.Now()
	defer func() { s.cfg.Logger.Debug("tool called", "tool", name, "took", time.Since(start)) }()
	resp, err := s.do(ctx, wire.Request{Op: "tool", Tool: name, Args: json.RawMessage(args), Input: input, DeadlineMS: d.Milliseconds()}, d+time.Second,
		func(c wire.Call) (string, error) { return model(c.Alias, c.Prompt) })
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("tool %s did not answer within %s; the skills worker was killed and restarts", name, d)
	}
	if err != nil {
		return "", usage, err
	}
	if resp.Error != "" {
		return "", usage, errors.New(resp.Error)
	}
	return resp.Reply, usage, nil
}

// AroundModel runs the turn through the server-side tool loop (RunTools)
// with these skills' tools.
func (s *Skills) AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
	next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	return RunTools(ctx, t, fn, s, s.cfg.Tools, next)
}

func lastUser(msgs []moltbot.Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == moltbot.RoleUser {
			if msgs[i].Parts != nil {
				return moltbot.TextOf(msgs[i].Parts)
			}
			return msgs[i].Content
		}
	}
	return ""
}

// logWriter logs the worker's stderr, a line at a time, bounded.
type logWriter struct {
	log *slog.Logger
}

func (l *logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p[:min(len(p), 4096)]))
	if msg != "" {
		l.log.Warn("skills worker", "stderr", msg)
	}
	return len(p), nil
}
