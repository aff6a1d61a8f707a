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
// them here would link os.Root's 25 KB into the node), keeps a pool of
// workers (each one run at a time, started as turns need them, replaced
// after a crash or a kill), bounds and checks what it reads from them,
// and answers a running skill's calls: callModel through the turn's model
// chain (an alias resolved through skills.models and the skill's own
// models: map), context.kv through the node's storage.
package skills

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
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
	"github.com/moltbot/moltbot/internal/metrics"
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
	// Workers is how many worker processes may run skills at once (default
	// 2), each one run at a time; they start as turns need them, so a
	// node whose skills are seldom used runs one.
	Workers int
	// TenantWorkers bounds the workers one tenant's runs hold at once
	// (0: all of them): on a node that serves several tenants, Workers-1
	// keeps a tenant whose skills run long, or are hostile, from holding
	// every worker while another's skills wait.
	TenantWorkers int
	// Memory is each worker's memory budget in bytes (default 256 MiB; the
	// worker caps its data segment there): a skill that allocates past it
	// kills its worker, and the run fails as over its budget.
	Memory int64
	// Models maps a callModel alias to a model for every skill
	// (skills.models), ahead of each skill's own models: map.
	Models map[string]string
	// Resolve, when set, checks that the router knows a model; Open
	// refuses a models: entry (Models', a skill's) it does not know.
	Resolve func(model string) error
	// KV keeps the skills' context.kv records (the node's storage, its
	// skills namespace); nil: context.kv fails.
	KV KV
	// Search answers a skill's context.search for turn t: knowledge base
	// kb of t's tenant (cmd wires the node's knowledge bases); nil:
	// context.search fails.
	Search func(ctx context.Context, t *moltbot.Turn, kb, query string, k int) ([]moltbot.Citation, error)
	// Metrics, when set, counts runs by skill and outcome and times them.
	Metrics *metrics.Registry
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
	Tools ToolConfig
	// Tenants are the tenants' pushed skills (*TenantFiles; nil: none):
	// run in this pool, for their tenant's turns only (tenant.go).
	Tenants TenantSource
	Logger  *slog.Logger
}

// KV is what the skills need of a storage namespace (storage.KV; in a
// node, a storage/replica.Set, so that every member holds the records).
type KV interface {
	Get(key string) (val []byte, found bool, err error)
	Put(key string, val []byte) error
	Delete(key string) error
	ScanPrefix(prefix string, fn func(key string, val []byte) bool) error
}

// Skill is a loaded skill as the worker describes it.
type Skill struct {
	wire.SkillInfo
	res []*regexp.Regexp
}

// loaded is what the first worker loaded: the skills and the
// server-side tools.
type loaded struct {
	skills   []Skill
	tools    []wire.ToolInfo
	offered  []moltbot.Tool // tools as the model is offered them
	warnings []string
}

// ModelCallLimit is the callModel calls a run of the skill may make.
func (sk *Skill) ModelCallLimit() int {
	switch {
	case sk.ModelCalls < 0:
		return 0
	case sk.ModelCalls == 0:
		return wire.DefaultModelCalls
	}
	return sk.ModelCalls
}

// Skills is the stage. Its methods are safe for concurrent use: up to
// Config.Workers skills (or tools) run at once, one in each worker; a run
// waits for a free worker at most until its deadline.
type Skills struct {
	cfg Config
	// skills are the loaded skills and tools, as the first worker loaded
	// them (a restarted worker reads the files again).
	skills atomic.Pointer[loaded]

	slots     chan *slot    // the free workers' slots (Config.Workers)
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	nextID    atomic.Int64

	// shares bound the slots one tenant's runs hold at once (tenantShare):
	// a tenant whose skills run long, or are hostile, cannot hold every
	// worker while another tenant's skills wait.
	sharesMu sync.Mutex
	shares   map[string]chan struct{}

	// tenants are the tenants' pushed skills this node loaded (tenant.go);
	// tick orders the sets a worker holds, least recently used first.
	tenants tenantCache
	tick    atomic.Int64
}

// tenantShare is how many workers one tenant's runs may hold at once
// (Config.TenantWorkers; all of them by default).
func (s *Skills) tenantShare() int {
	if n := s.cfg.TenantWorkers; n > 0 && n < cap(s.slots) {
		return n
	}
	return cap(s.slots)
}

// share is tenant's semaphore (a tenant of no name shares "").
func (s *Skills) share(tenant string) chan struct{} {
	s.sharesMu.Lock()
	defer s.sharesMu.Unlock()
	if s.shares == nil {
		s.shares = map[string]chan struct{}{}
	}
	c := s.shares[tenant]
	if c == nil {
		c = make(chan struct{}, s.tenantShare())
		s.shares[tenant] = c
	}
	return c
}

// mcpTimeout is the worker's bound on connecting to an MCP server and
// listing its tools when the config gives none.
const mcpTimeout = 10 * time.Second

// slot is a place for one worker: w is nil until a run needs it, and
// again after it was killed. Whoever took the slot from Skills.slots owns
// it.
type slot struct {
	w *worker
	// sets are the tenants' sets w holds, with when each was last used
	// (Skills.tick).
	sets map[string]int64
}

// ErrClosed is Run's error after Close (a reload replaced these skills):
// the caller may try the skills that replaced them.
var ErrClosed = errors.New("skills: closed (reloaded)")

// ErrNoWorker is Open's error, wrapped, when the worker binary is not
// there (the edge build does not build it).
var ErrNoWorker = errors.New("no skills worker")

// Open reads dir's *.js files and loads them in a worker. With no dir, or
// no JS file in it, it returns nil, nil: no worker, no stage. A file the
// worker cannot load (a syntax error, a pattern RE2 cannot take) is an
// error naming it, as is a models: entry Config.Resolve refuses.
func Open(cfg Config) (*Skills, error) {
	cfg = withDefaults(cfg)
	// The worker reads the files (os.Root: nothing outside skills/, no
	// symlink out of it); here only whether there is one, so that a node
	// without JS skills starts no worker.
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("skills: %w", err)
	}
	if !slices.ContainsFunc(ents, func(e fs.DirEntry) bool { return !e.IsDir() && strings.HasSuffix(e.Name(), ".js") }) {
		if len(cfg.MCP) == 0 {
			if cfg.Tenants == nil || !cfg.Tenants.Any() {
				return nil, nil
			}
			return openPool(cfg)
		}
		cfg.Dir = "" // MCP servers only
	} else if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("skills: %w", err)
	}
	s := &Skills{cfg: cfg, slots: make(chan *slot, cfg.Workers), done: make(chan struct{})}
	if s.cfg.Worker == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("skills: the worker: %w", err)
		}
		s.cfg.Worker = filepath.Join(filepath.Dir(exe), WorkerName)
	}
	first := &slot{}
	if err := s.start(first); err != nil {
		return nil, err
	}
	if err := s.checkModels(); err != nil {
		s.drop(first)
		return nil, err
	}
	s.slots <- first
	for range cfg.Workers - 1 {
		s.slots <- &slot{}
	}
	return s, nil
}

// withDefaults fills cfg's zero values.
func withDefaults(cfg Config) Config {
	if cfg.Deadline <= 0 {
		cfg.Deadline = 20 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Memory == 0 {
		cfg.Memory = 256 << 20
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
	// A load line holds each MCP server's tools, which the worker bounds
	// at 128 KiB a server (JSON-escaped, up to 6 bytes each) and a few
	// warnings.
	cfg.MaxLine = max(cfg.MaxLine, len(cfg.MCP)*(6*128<<10+16<<10)+1<<20)
	return cfg
}

// OpenPool is Open without the workspace's skills: a pool of workers for
// tenants' pushed skills (or a push's check), none started until needed.
func OpenPool(cfg Config) (*Skills, error) {
	cfg.Tenants = nil
	return openPool(withDefaults(cfg))
}

// openPool is Skills with no skill of the workspace's, for tenants'
// pushed skills: no worker starts until a tenant's turn needs one.
func openPool(cfg Config) (*Skills, error) {
	cfg.Dir = ""
	s := &Skills{cfg: cfg, slots: make(chan *slot, cfg.Workers), done: make(chan struct{})}
	if s.cfg.Worker == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("skills: the worker: %w", err)
		}
		s.cfg.Worker = filepath.Join(filepath.Dir(exe), WorkerName)
	}
	if _, err := os.Stat(s.cfg.Worker); err != nil {
		return nil, fmt.Errorf("skills: the worker (%s; build it with make build, or set skills.worker): %w: %w", s.cfg.Worker, ErrNoWorker, err)
	}
	s.skills.Store(&loaded{})
	for range cfg.Workers {
		s.slots <- &slot{}
	}
	return s, nil
}

// Idle reports whether these skills hold nothing a turn could run: no
// skill or tool of the workspace's, and no tenant's pushed files.
func (s *Skills) Idle() bool {
	l := s.skills.Load()
	return len(l.skills) == 0 && len(l.tools) == 0 && !s.HasTenants()
}

// checkModels refuses a models: entry the router does not know.
func (s *Skills) checkModels() error {
	if s.cfg.Resolve == nil {
		return nil
	}
	for _, alias := range slices.Sorted(maps.Keys(s.cfg.Models)) {
		if err := s.cfg.Resolve(s.cfg.Models[alias]); err != nil {
			return fmt.Errorf("skills: skills.models: %s: %q is not a model the router knows: %w", alias, s.cfg.Models[alias], err)
		}
	}
	for _, sk := range s.skills.Load().skills {
		for _, alias := range slices.Sorted(maps.Keys(sk.Models)) {
			if _, over := s.cfg.Models[alias]; over {
				continue // skills.models takes it
			}
			if err := s.cfg.Resolve(sk.Models[alias]); err != nil {
				return fmt.Errorf("skills: skills/%s: models: %s: %q is not a model the router knows (set skills.models.%s in moltbot.yaml to a model it knows): %w",
					sk.File, alias, sk.Models[alias], alias, err)
			}
		}
	}
	return nil
}

// Skills are the loaded skills.
func (s *Skills) Skills() []Skill { return slices.Clone(s.skills.Load().skills) }

// Tools are the server-side tools: the JavaScript skills' that say tool:,
// and the MCP servers' that answered at load.
func (s *Skills) Tools() []wire.ToolInfo { return slices.Clone(s.skills.Load().tools) }

// Warnings say what the last load left out without failing: an MCP
// server that did not answer, a tool whose name a model cannot take.
func (s *Skills) Warnings() []string { return slices.Clone(s.skills.Load().warnings) }

// Close stops the workers, each after the skill running in it, if any;
// Run returns ErrClosed afterwards.
func (s *Skills) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		for range cap(s.slots) {
			s.drop(<-s.slots)
		}
	})
	return nil
}

func (s *Skills) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// worker is a running moltbot-skills process.
type worker struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    chan wire.Response
	err    error // why out closed; read after it did
	stderr *logWriter
	quit   chan struct{}
	done   chan struct{}
}

func (w *worker) kill() {
	close(w.quit)
	w.in.Close()
	w.cmd.Process.Kill()
	<-w.done
}

// start starts sl's worker and loads the skills in it (sl owned).
func (s *Skills) start(sl *slot) error {
	cmd := exec.Command(s.cfg.Worker, "-memory", fmt.Sprint(max(s.cfg.Memory, 0)))
	cmd.Env = []string{} // nothing of the node's environment
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &logWriter{log: s.cfg.Logger}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrNoWorker, err)
		}
		return fmt.Errorf("skills: start the worker (%s; build it with make build, or set skills.worker): %w", s.cfg.Worker, err)
	}
	w := &worker{cmd: cmd, in: in, out: make(chan wire.Response), stderr: stderr, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(outp)
		sc.Buffer(make([]byte, 0, 64<<10), s.cfg.MaxLine)
		for sc.Scan() {
			r, err := parseLine(sc.Bytes())
			if err != nil {
				w.err = err
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
		// Wait before out closes: it waits for stderr's copy too, so a
		// crash's report (out of memory) is in stderr when do sees out
		// closed.
		cmd.Process.Kill()
		cmd.Wait()
		close(w.out)
	}()
	sl.w = w
	limit := 10 * time.Second
	for _, m := range s.cfg.MCP {
		d := time.Duration(m.TimeoutMS) * time.Millisecond
		if d <= 0 {
			d = mcpTimeout // the worker's default
		}
		limit = max(limit, d+5*time.Second)
	}
	resp, err := s.do(context.Background(), sl, wire.Request{Op: "load", Dir: s.cfg.Dir, MaxFile: s.cfg.MaxFile, MCP: s.cfg.MCP,
		MaxResult: s.cfg.Tools.MaxResult}, limit, nil)
	if err != nil {
		return err
	}
	if resp.Error != "" {
		s.drop(sl)
		return fmt.Errorf("skills: %s", resp.Error)
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
				s.drop(sl)
				return fmt.Errorf("skills: skills/%s: pattern %s: %w", sk.File, p, err)
			}
			sk.res = append(sk.res, re)
		}
	}
	// A worker started again (after a kill) reads skills/ as it is now:
	// the set the node loaded (its patterns, its tools: an MCP server
	// down at this moment does not take its tools away) stays the one in
	// use until a reload, and a difference is said.
	if prev := s.skills.Load(); prev != nil {
		if !sameSkills(prev.skills, l.skills) {
			s.cfg.Logger.Warn("skills: skills/ changed on disk since the skills were loaded; a restarted worker runs the files as they are now: reload (SIGHUP, moltbot keys reload) to load them")
		}
		return nil
	}
	s.skills.Store(l)
	return nil
}

// sameSkills reports whether two loads found the same skills: names,
// files and patterns.
func sameSkills(a, b []Skill) bool {
	return slices.EqualFunc(a, b, func(x, y Skill) bool {
		return x.Name == y.Name && x.File == y.File && slices.Equal(x.RE2, y.RE2)
	})
}

// parseLine reads a line from the worker: a Response whose every field
// is within wire's limits. The worker runs skills' code: a line out of
// bounds is an error (the worker is killed), never acted on.
func parseLine(b []byte) (wire.Response, error) {
	var r wire.Response
	if err := json.Unmarshal(b, &r); err != nil {
		return wire.Response{}, fmt.Errorf("a bad line from the worker: %w", err)
	}
	bad := func(format string, args ...any) (wire.Response, error) {
		return wire.Response{}, fmt.Errorf("a bad line from the worker: "+format, args...)
	}
	if c := r.Call; c != nil {
		switch c.Kind {
		case "", wire.CallModel:
			if c.Alias == "" || len(c.Alias) > wire.MaxModel || !utf8.ValidString(c.Alias) {
				return bad("call %d: a model alias of %d bytes", c.Seq, len(c.Alias))
			}
			if !utf8.ValidString(c.Prompt) {
				return bad("call %d: a prompt that is not UTF-8", c.Seq)
			}
		case wire.CallKVGet, wire.CallKVSet, wire.CallKVDelete:
			if !validKey(c.Key) {
				return bad("call %d: a kv key of %d bytes or not text", c.Seq, len(c.Key))
			}
			if len(c.Value) > wire.MaxValue || (c.Kind != wire.CallKVSet && c.Value != "") {
				return bad("call %d: a kv value of %d bytes", c.Seq, len(c.Value))
			}
		case wire.CallEmbed:
			if len(c.Texts) == 0 || len(c.Texts) > wire.MaxEmbedTexts {
				return bad("call %d: %d texts to embed", c.Seq, len(c.Texts))
			}
			for _, t := range c.Texts {
				if t == "" || len(t) > wire.MaxEmbedText || !utf8.ValidString(t) {
					return bad("call %d: a text to embed of %d bytes or not text", c.Seq, len(t))
				}
			}
		case wire.CallSearch:
			if !moltbot.ValidTenantID(c.KB) || c.Query == "" || len(c.Query) > wire.MaxSearchQuery || !utf8.ValidString(c.Query) || c.K < 0 || c.K > wire.MaxSearchK {
				return bad("call %d: a search of knowledge base %q, a query of %d bytes, k %d", c.Seq, c.KB, len(c.Query), c.K)
			}
		default:
			return bad("call %d: unknown kind %q", c.Seq, c.Kind)
		}
	}
	for _, t := range r.Tools {
		if !validToolName(t.Name) || (t.Skill == "") == (t.Server == "") || (t.Skill != "" && !validName(t.Skill)) || (t.Server != "" && !validName(t.Server)) {
			return bad("a tool %q of skill %q, server %q", t.Name, t.Skill, t.Server)
		}
		if len(t.Description) > 4<<10 || len(t.Parameters) > 16<<10 || (len(t.Parameters) > 0 && !json.Valid(t.Parameters)) {
			return bad("tool %s: a description of %d bytes, parameters of %d", t.Name, len(t.Description), len(t.Parameters))
		}
	}
	for _, sk := range r.Skills {
		if !validName(sk.Name) {
			return bad("a skill named %q", sk.Name)
		}
		if len(sk.Models) > wire.MaxModels {
			return bad("skill %s: %d models", sk.Name, len(sk.Models))
		}
		for a, m := range sk.Models {
			if a == "" || m == "" || len(a) > wire.MaxModel || len(m) > wire.MaxModel {
				return bad("skill %s: a models: entry %q of %d bytes", sk.Name, a, len(m))
			}
		}
		if sk.ModelCalls < -1 || sk.ModelCalls > wire.MaxModelCalls {
			return bad("skill %s: model_calls %d", sk.Name, sk.ModelCalls)
		}
		if (len(sk.RE2) == 0 && sk.Tool == nil && sk.Intent == "") || len(sk.RE2) != len(sk.Patterns) {
			return bad("skill %s: %d patterns, %d in RE2", sk.Name, len(sk.Patterns), len(sk.RE2))
		}
		if sk.Intent != "" && !wire.ValidIntent(sk.Intent) {
			return bad("skill %s: intent %q", sk.Name, sk.Intent)
		}
	}
	return r, nil
}

// validName: a skill's name is text of 1 to wire.MaxName bytes with no
// '/' and no control character (it keys the skill's kv records and its
// metrics).
func validName(n string) bool {
	return n != "" && len(n) <= wire.MaxName && utf8.ValidString(n) && !strings.ContainsFunc(n, func(r rune) bool { return r == '/' || r < 0x20 || r == 0x7f })
}

// validToolName: what a model takes as a function's name,
// ^[a-zA-Z0-9_-]{1,64}$ (the worker offers no other).
func validToolName(n string) bool {
	return n != "" && len(n) <= 64 && !strings.ContainsFunc(n, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	})
}

// validKey: a kv key is text of 1 to wire.MaxKey bytes with no control
// character.
func validKey(k string) bool {
	return k != "" && len(k) <= wire.MaxKey && utf8.ValidString(k) && !strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// drop kills sl's worker; the next run in sl starts another (sl owned).
func (s *Skills) drop(sl *slot) {
	if sl.w != nil {
		sl.w.kill()
		sl.w = nil
	}
	clear(sl.sets) // a new worker holds no tenant's set
}

// errMemory is a run's error when its worker ran out of its memory;
// errNoAnswer when it was killed for not answering in time.
var (
	errMemory   = errors.New("exceeded its memory budget")
	errNoAnswer = errors.New("did not answer")
)

// do sends r to sl's worker and waits for its answer, at most limit (the
// worker is killed then), answering its calls with onCall (sl owned).
func (s *Skills) do(ctx context.Context, sl *slot, r wire.Request, limit time.Duration, onCall func(wire.Call) wire.Request) (wire.Response, error) {
	w := sl.w
	r.ID = s.nextID.Add(1)
	if err := send(w, r); err != nil {
		s.drop(sl)
		return wire.Response{}, fmt.Errorf("skills: the worker: %w", err)
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case resp, ok := <-w.out:
			if !ok {
				s.drop(sl)
				if w.stderr.oom.Load() {
					return wire.Response{}, fmt.Errorf("%w (%d MiB); its worker was replaced", errMemory, s.cfg.Memory>>20)
				}
				return wire.Response{}, fmt.Errorf("skills: the worker exited (%v); it restarts for the next turn", w.err)
			}
			if resp.ID != r.ID {
				continue // a late answer to a request given up
			}
			if resp.Call == nil {
				return resp, nil
			}
			rep := wire.Request{Error: "this request cannot make calls"}
			if onCall != nil {
				rep = onCall(*resp.Call)
			}
			rep.ID, rep.Op, rep.Seq = r.ID, "reply", resp.Call.Seq
			if err := send(w, rep); err != nil {
				s.drop(sl)
				return wire.Response{}, fmt.Errorf("skills: the worker: %w", err)
			}
		case <-timer.C:
			s.drop(sl)
			return wire.Response{}, fmt.Errorf("skills: the worker %w within %s and was killed (a skill that cannot be interrupted, such as a backtracking regexp); it restarts for the next turn", errNoAnswer, limit)
		case <-ctx.Done():
			s.drop(sl) // the worker may be busy for long: a new one serves the next turn
			return wire.Response{}, ctx.Err()
		}
	}
}

func send(w *worker, r wire.Request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.in.Write(append(b, '\n'))
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
	return matchSkills(s.skills.Load().skills, text, bot, nil)
}

// matchSkills is the first of skills (bot may run, shadow has none of
// the name of) whose pattern matches text, and the match.
func matchSkills(skills []Skill, text string, bot *moltbot.Bot, shadow *tenantSet) (string, []*string) {
	for _, sk := range skills {
		if !bot.HasSkill(sk.Name) || shadow.shadows(sk.Name) {
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

// MatchIntent is the first of the workspace's skills t's bot may run that
// exports the intent t's notes name ("intent", recognized with confidence:
// "intent.low" is not "true"); "" when none does.
func (s *Skills) MatchIntent(ctx context.Context, t *moltbot.Turn) string {
	name, _ := s.matchIntentIn(ctx, nil, t)
	return name
}

// Skill returns the loaded skill named name.
func (s *Skills) Skill(name string) (Skill, bool) {
	for _, sk := range s.skills.Load().skills {
		if sk.Name == name {
			return sk, true
		}
	}
	return Skill{}, false
}

// ResolveAlias is the model a skill's callModel alias names: skills.models'
// entry, else the skill's own models: entry, else the alias itself (which
// goes to the chain when the router does not know it). mapped is false
// in the last case.
func (s *Skills) ResolveAlias(skill, alias string) (model string, mapped bool) {
	return s.resolveIn(nil, skill, alias)
}

// resolveIn is ResolveAlias for a skill of ts (a tenant's; nil: the
// workspace's).
func (s *Skills) resolveIn(ts *tenantSet, skill, alias string) (model string, mapped bool) {
	if m, ok := s.cfg.Models[alias]; ok {
		return m, true
	}
	if sk, _, ok := s.lookup(ts, skill); ok {
		if m, ok := sk.Models[alias]; ok {
			return m, true
		}
	}
	return alias, false
}

// Env is what a running skill reaches through the node.
type Env struct {
	// Model answers callModel: alias as the skill wrote it, model as
	// ResolveAlias resolved it. ctx ends at the run's deadline: the node
	// answers calls while the run waits on it, so a call must not
	// outlast it.
	Model func(ctx context.Context, alias, model, prompt string) (string, error)
	// Embed answers context.embed, one vector a text (ctx as Model's);
	// nil: it fails.
	Embed func(ctx context.Context, texts []string) ([][]float32, error)
	// Tenant keys the skill's kv records; with no KV (Config.KV) or no
	// tenant, context.kv fails.
	Tenant string
	// Search answers context.search(kb, query, k): the chunks of the
	// turn's tenant's knowledge base kb (a bot's turn: one its bot names)
	// as citations, best first (ctx as Model's); nil: it fails.
	Search func(ctx context.Context, kb, query string, k int) ([]moltbot.Citation, error)
}

// Run runs a skill on text with its match; model answers its callModel
// requests with the model the alias resolves to.
func (s *Skills) Run(ctx context.Context, skill, text string, matches []*string, model func(model, prompt string) (string, error)) (string, error) {
	return s.RunIn(ctx, skill, text, matches, Env{Model: func(_ context.Context, _, m, p string) (string, error) { return model(m, p) }})
}

// RunIn runs a skill on text with its match in env. The run waits for a
// free worker at most until its deadline.
func (s *Skills) RunIn(ctx context.Context, skill, text string, matches []*string, env Env) (reply string, err error) {
	return s.runIn(ctx, nil, skill, text, matches, env)
}

// runIn is RunIn for a skill of ts (a tenant's; nil: the workspace's).
func (s *Skills) runIn(ctx context.Context, ts *tenantSet, skill, text string, matches []*string, env Env) (reply string, err error) {
	return s.runReq(ctx, ts, "skill "+skill, skill, s.cfg.Deadline, env, func(d time.Duration) wire.Request {
		return wire.Request{Op: "run", Skill: skill, Input: text, Matches: matches, DeadlineMS: d.Milliseconds()}
	})
}

// runReq runs req in a free worker (waiting for one at most until the
// deadline, base or ctx's if sooner), answering its calls in env: a
// skill's run, or a server-side tool's call. what names it in errors
// ("skill code-gen", "tool fs__read"); skill is the skill whose models:
// map, call limit and kv records the calls use ("" for an MCP tool), and
// the metrics' label (what, for an MCP tool).
func (s *Skills) runReq(ctx context.Context, ts *tenantSet, what, skill string, base time.Duration, env Env, req func(d time.Duration) wire.Request) (reply string, err error) {
	if s.closed() {
		return "", ErrClosed
	}
	label := skill
	switch {
	case ts != nil:
		// A tenant's pushed skill: its name is the tenant's to choose, so
		// the metrics count them under one label, not one per name (the
		// tenants could grow the label set without bound).
		label = PushedLabel
	case label == "":
		label = what
	}
	d := base
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d = max(time.Until(dl), time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(ctx, d+time.Second)
	defer cancel()
	t0 := time.Now()
	outcome := "ok"
	defer func() {
		if m := s.cfg.Metrics; m != nil {
			m.Inc(metrics.SkillRuns, label, outcome)
			m.Observe(metrics.SkillDuration, time.Since(t0), label)
		}
	}()
	if s.tenantShare() < cap(s.slots) { // skills.tenant_workers
		sh := s.share(env.Tenant)
		select {
		case sh <- struct{}{}:
		case <-s.done:
			return "", ErrClosed
		case <-ctx.Done():
			outcome = "busy"
			return "", moltbot.Errorf(moltbot.EBusy, "skills: %s: the tenant's %d of the %d workers stayed busy until its deadline (%s)", what, cap(sh), cap(s.slots), d)
		}
		defer func() { <-sh }()
	}
	var sl *slot
	select {
	case sl = <-s.slots:
	case <-s.done:
		return "", ErrClosed
	case <-ctx.Done():
		outcome = "busy"
		return "", moltbot.Errorf(moltbot.EBusy, "skills: %s: all %d workers stayed busy until its deadline (%s)", what, cap(s.slots), d)
	}
	defer func() { s.slots <- sl }()
	if s.closed() {
		return "", ErrClosed
	}
	if sl.w == nil {
		if err := s.start(sl); err != nil {
			outcome = "error"
			return "", err
		}
	}
	if ts != nil {
		// A tenant's skill: its set in this worker first (read from the
		// store only when the worker lacks it).
		_, err := s.ensureSetFn(sl, ts.key, func() ([]wire.File, error) {
			ver, files, err := s.cfg.Tenants.Files(ts.space)
			if err == nil && ver != ts.version {
				err = moltbot.Errorf(moltbot.EUnavailable, "skills: %s: the tenant's skills changed during the turn; try again", what)
			}
			return jsFiles(files), err
		})
		if err != nil {
			outcome = "error"
			return "", err
		}
	}
	// The deadline counts from the turn's start, the wait for a worker
	// included: the worker gets what is left, so that it interrupts the
	// skill itself (and is killed only a second later) rather than being
	// killed for a deadline it was not told.
	if waited := time.Since(t0); waited >= 10*time.Millisecond {
		left := d - waited
		if left < 10*time.Millisecond {
			outcome = "busy"
			return "", moltbot.Errorf(moltbot.EBusy, "skills: %s: all %d workers stayed busy until its deadline (%s)", what, cap(s.slots), d)
		}
		d = left
	}
	info, _, _ := s.lookup(ts, skill)
	modelCalls, limit, embedCalls, kvCalls, searchCalls := 0, info.ModelCallLimit(), 0, 0, 0
	callCtx, cancelCalls := context.WithTimeout(ctx, d)
	defer cancelCalls()
	r := req(d)
	if ts != nil {
		r.Set = ts.key
	}
	resp, err := s.do(ctx, sl, r, d+time.Second,
		func(c wire.Call) wire.Request {
			switch c.Kind {
			case "", wire.CallModel:
				if modelCalls++; modelCalls > limit {
					return wire.Request{Error: fmt.Sprintf("callModel: at most %d calls a run (limits.model_calls)", limit)}
				}
				if env.Model == nil {
					return wire.Request{Error: "callModel: no model here"}
				}
				m, _ := s.resolveIn(ts, skill, c.Alias)
				text, err := env.Model(callCtx, c.Alias, m, c.Prompt)
				if err != nil && callCtx.Err() != nil {
					return wire.Request{Error: fmt.Sprintf("callModel(%q): the skill's deadline (%s) came first", c.Alias, d)}
				}
				if err != nil {
					return wire.Request{Error: err.Error()}
				}
				return wire.Request{Text: text}
			case wire.CallEmbed:
				if embedCalls++; embedCalls > wire.MaxEmbedCalls {
					return wire.Request{Error: fmt.Sprintf("embed: at most %d calls a run", wire.MaxEmbedCalls)}
				}
				if env.Embed == nil {
					return wire.Request{Error: "context.embed: this node has no embedding chain (models.embeddings)"}
				}
				vecs, err := env.Embed(callCtx, c.Texts)
				if err != nil && callCtx.Err() != nil {
					return wire.Request{Error: fmt.Sprintf("context.embed: the skill's deadline (%s) came first", d)}
				}
				if err != nil {
					return wire.Request{Error: "context.embed: " + err.Error()}
				}
				return wire.Request{Vectors: vecs}
			case wire.CallSearch:
				if searchCalls++; searchCalls > wire.MaxSearchCalls {
					return wire.Request{Error: fmt.Sprintf("search: at most %d calls a run", wire.MaxSearchCalls)}
				}
				if env.Search == nil {
					return wire.Request{Error: "context.search: this node has no knowledge bases"}
				}
				found, err := env.Search(callCtx, c.KB, c.Query, c.K)
				if err != nil && callCtx.Err() != nil {
					return wire.Request{Error: fmt.Sprintf("context.search: the skill's deadline (%s) came first", d)}
				}
				if err != nil {
					return wire.Request{Error: "context.search: " + err.Error()}
				}
				if found == nil {
					found = []moltbot.Citation{}
				}
				b, _ := json.Marshal(found)
				return wire.Request{Text: string(b)}
			default:
				// The worker counts them too; the node does not trust it
				// to (each set is a synced write).
				if kvCalls++; kvCalls > wire.MaxKVCalls {
					return wire.Request{Error: fmt.Sprintf("kv: at most %d kv calls a run", wire.MaxKVCalls)}
				}
				if skill == "" {
					return wire.Request{Error: "context.kv: an MCP tool has no skill records"}
				}
				return s.kv(env.Tenant, skill, c)
			}
		})
	// The errors a client sees, as domain errors (anything else is an
	// "internal error" at the edge): the skill's name and what stopped it.
	switch {
	case errors.Is(err, errMemory):
		outcome = "memory"
		return "", moltbot.Errorf(moltbot.EInternal, "skills: %s %v", what, err)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		outcome = "killed"
		return "", moltbot.Errorf(moltbot.ETimeout, "skills: %s did not finish within its deadline (%s); its worker was killed and restarts for the next turn", what, d)
	case errors.Is(err, errNoAnswer):
		outcome = "killed"
		return "", moltbot.Errorf(moltbot.ETimeout, "skills: %s: %v", what, strings.TrimPrefix(err.Error(), "skills: "))
	case errors.Is(err, context.Canceled):
		outcome = "killed"
		return "", err // the caller went away
	case err != nil:
		outcome = "killed"
		return "", moltbot.Errorf(moltbot.EInternal, "skills: %s: %v", what, strings.TrimPrefix(err.Error(), "skills: "))
	case resp.Error != "":
		outcome = "error"
		if strings.Contains(resp.Error, errDeadlineText) {
			outcome = "deadline"
		}
		return "", moltbot.Errorf(moltbot.EInternal, "%s", resp.Error)
	}
	return resp.Reply, nil
}

// errDeadlineText is in the worker's error for a skill it stopped at its
// deadline.
const errDeadlineText = "stopped at its deadline"

// kvMu orders the kv writes of every Skills of the process (a reload's
// old and new ones), so that a skill's key count stays right on a node.
var kvMu sync.Mutex

// kv answers a context.kv call: records under tenant NUL skill NUL key. A
// skill holds at most wire.MaxKeys keys per tenant, counted from its
// records when it sets a new one (at most that many to read). In a
// cluster the records are every member's (the KV is replicated, the
// newest write wins): two members may each let a skill's last free key
// be taken at once, so a skill may hold a few more than its most for a
// while; it can set no new one until it is back under.
func (s *Skills) kv(tenant, skill string, c wire.Call) wire.Request {
	if s.cfg.KV == nil {
		return wire.Request{Error: "context.kv: this node keeps no skill records"}
	}
	if tenant == "" {
		return wire.Request{Error: "context.kv: this turn has no tenant"}
	}
	prefix := tenant + "\x00" + skill + "\x00"
	key := prefix + c.Key
	fail := func(err error) wire.Request {
		s.cfg.Logger.Error("skills: kv", "skill", skill, "err", err)
		return wire.Request{Error: fmt.Sprintf("context.kv.%s: the node's storage failed", strings.TrimPrefix(c.Kind, "kv."))}
	}
	if c.Kind == wire.CallKVGet {
		v, found, err := s.cfg.KV.Get(key)
		if err != nil {
			return fail(err)
		}
		return wire.Request{Text: string(v), Found: found}
	}
	kvMu.Lock()
	defer kvMu.Unlock()
	_, had, err := s.cfg.KV.Get(key)
	if err != nil {
		return fail(err)
	}
	switch c.Kind {
	case wire.CallKVSet:
		if !had {
			n := 0
			if err := s.cfg.KV.ScanPrefix(prefix, func(string, []byte) bool { n++; return n < wire.MaxKeys }); err != nil {
				return fail(err)
			}
			if n >= wire.MaxKeys {
				return wire.Request{Error: fmt.Sprintf("context.kv.set(%q): skill %s holds %d keys for this tenant, its most; delete one first", c.Key, skill, n)}
			}
		}
		if err := s.cfg.KV.Put(key, []byte(c.Value)); err != nil {
			return fail(err)
		}
	case wire.CallKVDelete:
		if !had {
			return wire.Request{}
		}
		if err := s.cfg.KV.Delete(key); err != nil {
			return fail(err)
		}
	}
	return wire.Request{Found: had}
}

// ScanKV is a KV that can list its records (storage.KV).
type ScanKV interface {
	KV
	Scan(fn func(key string, val []byte) bool) error
}

// SweepKV deletes the kv records of every tenant dead reports true (auth's
// sweep of deleted tenants' data: dead is called once a tenant) and
// returns how many records went.
func SweepKV(kv ScanKV, dead func(tenant string) bool) (int, error) {
	verdict := map[string]bool{}
	var gone []string
	err := kv.Scan(func(key string, _ []byte) bool {
		tenant, _, ok := strings.Cut(strings.TrimPrefix(key, "#"), "\x00")
		if !ok {
			return true
		}
		d, seen := verdict[tenant]
		if !seen {
			d = dead(tenant)
			verdict[tenant] = d
		}
		if d {
			gone = append(gone, key)
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("skills: sweep kv: %w", err)
	}
	kvMu.Lock()
	defer kvMu.Unlock()
	for i, key := range gone {
		if err := kv.Delete(key); err != nil {
			return i, fmt.Errorf("skills: sweep kv: %w", err)
		}
	}
	return len(gone), nil
}

// BeforeModel answers the turn with a skill when the last user message
// matches one; nil, nil passes it on to the model. The skill's
// callModel(alias, {prompt}) asks t.Model for the model the alias
// resolves to (ResolveAlias); an alias that no models: map takes and the
// router does not know goes to the turn's chain instead.
func (s *Skills) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	text := moltbot.LastUserText(t.Messages)
	if text == "" || !utf8.ValidString(text) {
		return nil, nil
	}
	// The tenant's own skills first (tenant.go), loaded on its first turn.
	ts, err := s.tenantSkills(ctx, tenantOf(t))
	if err != nil {
		s.tenantLoadFailed(tenantOf(t), err)
		ts = nil
	}
	skill, set, matches := s.matchIn(ts, text, t.Bot) // a bot's turn runs only its skills
	if skill == "" {
		// A skill that exports intent: runs on a turn whose intent the
		// recognizer found with confidence (the intent stage's notes);
		// context.matches[0] is the whole message.
		if skill, set = s.matchIntentIn(ctx, ts, t); skill == "" {
			return nil, nil
		}
		matches = []*string{&text}
	}
	reply, usage, err := s.runTurn(ctx, t, set, skill, text, matches)
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

// ServerTools are the tools the loop offers the model (Toolbox).
//
// A bot's turns are offered only the tools of the skills and MCP servers
// it names among its skills (Bot.HasSkill; a nil bot: every tool).
func (s *Skills) ServerTools(bot *moltbot.Bot) []moltbot.Tool {
	return toolsOf(s.skills.Load(), bot)
}

// toolsOf are l's tools bot may be offered (a nil bot: every one).
func toolsOf(l *loaded, bot *moltbot.Bot) []moltbot.Tool {
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

// CallTool runs a server-side tool (Toolbox) in a worker: the tool gets
// until a second before ctx's deadline (at most Tools.CallTimeout), the
// worker until the deadline, or it is killed (as for a run). A
// JavaScript tool's calls (callModel, context.kv, context.embed) are its
// skill's, in the turn's environment.
func (s *Skills) CallTool(ctx context.Context, t *moltbot.Turn, name, args string) (string, moltbot.Usage, error) {
	return s.callTool(ctx, nil, t, name, args)
}

// callTool is CallTool for a tool of ts (a tenant's) when it has one of
// that name, else of the workspace's.
func (s *Skills) callTool(ctx context.Context, ts *tenantSet, t *moltbot.Turn, name, args string) (string, moltbot.Usage, error) {
	var usage moltbot.Usage
	if !json.Valid([]byte(args)) {
		return "", usage, errors.New("arguments are not JSON")
	}
	skill, own := "", false
	if ts != nil {
		for _, ti := range ts.l.tools {
			if ti.Name == name {
				skill, own = ti.Skill, true
			}
		}
	}
	if !own {
		ts = nil
		for _, ti := range s.skills.Load().tools {
			if ti.Name == name {
				skill = ti.Skill
			}
		}
	}
	d := s.cfg.Tools.CallTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl)-callGrace < d {
		// The loop's deadline: the call's, plus the grace (runCall).
		d = max((time.Until(dl) - callGrace).Round(time.Millisecond), time.Millisecond)
	}
	input := moltbot.LastUserText(t.Messages)
	if len(input) > s.cfg.MaxInput || !utf8.ValidString(input) {
		input = ""
	}
	var mu sync.Mutex
	start := time.Now()
	defer func() { s.cfg.Logger.Debug("tool called", "tool", name, "took", time.Since(start)) }()
	reply, err := s.runReq(ctx, ts, "tool "+name, skill, d, envOf(t, &usage, &mu, s.cfg.Search), func(d time.Duration) wire.Request {
		return wire.Request{Op: "tool", Tool: name, Args: json.RawMessage(args), Input: input, DeadlineMS: d.Milliseconds()}
	})
	mu.Lock()
	defer mu.Unlock()
	return reply, usage, err
}

// AroundModel runs the turn through the server-side tool loop (RunTools)
// with these skills' tools.
func (s *Skills) AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
	next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	ts, err := s.tenantSkills(ctx, tenantOf(t))
	if err != nil {
		s.tenantLoadFailed(tenantOf(t), err)
	}
	if ts != nil && len(ts.l.tools) > 0 {
		return RunTools(ctx, t, fn, tenantTools{s, ts}, s.cfg.Tools, next)
	}
	return RunTools(ctx, t, fn, s, s.cfg.Tools, next)
}

// logWriter logs a worker's stderr, a write at a time, bounded; a Go
// runtime crash's report is logged by its first line only (the goroutine
// dump after it is not), and oom records that the worker ran out of its
// memory budget. The runtime writes a report in pieces ("fatal error: ",
// then the reason): its first 4 KiB are kept to be read whole.
type logWriter struct {
	log   *slog.Logger
	oom   atomic.Bool
	mu    sync.Mutex
	crash []byte // the crash report's start, once one began
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.crash != nil {
		l.note(p)
		return len(p), nil
	}
	msg := string(p[:min(len(p), 4096)])
	i := strings.Index(msg, "fatal error: ")
	if i < 0 {
		i = strings.Index(msg, "runtime: out of memory")
	}
	if i >= 0 {
		l.crash = make([]byte, 0, 4096)
		l.note(p[i:])
		msg = msg[:i]
	}
	if msg = strings.TrimSpace(msg); msg != "" {
		l.log.Warn("skills worker", "stderr", msg)
	}
	return len(p), nil
}

// note adds p to the crash report's start (l.mu held), and logs that
// start's first line once it is whole.
func (l *logWriter) note(p []byte) {
	if len(l.crash) == cap(l.crash) {
		return
	}
	had := bytes.IndexByte(l.crash, '\n') >= 0
	l.crash = append(l.crash, p[:min(len(p), cap(l.crash)-len(l.crash))]...)
	if bytes.Contains(l.crash, []byte("out of memory")) {
		l.oom.Store(true)
	}
	if i := bytes.IndexByte(l.crash, '\n'); i >= 0 && !had {
		l.log.Warn("skills worker crashed", "stderr", string(l.crash[:i]))
	}
}
