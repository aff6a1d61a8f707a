package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/skills"
	"github.com/moltbot/moltbot/skills/flow"
	"github.com/moltbot/moltbot/skills/intent"
	"github.com/moltbot/moltbot/skills/kb"
	"github.com/moltbot/moltbot/skills/wire"
)

// skillsConfig is the skills stage's config from moltbot.yaml's skills:
// block (with its tool loop and MCP servers). A models: entry (skills.models, a skill's own) must name a model
// the router knows (rt, once it runs) or the config does (the chain, a
// provider's models:): otherwise the skills do not load, and the error
// names it.
func skillsConfig(cfg *configs.Config, dir string, rt *atomic.Pointer[actors.Runtime]) skills.Config {
	tl := cfg.Skills.Tools
	return skills.Config{Dir: dir, Worker: cfg.Skills.Worker, Deadline: cfg.Skills.Timeout.D(),
		Workers: cfg.Skills.Workers, TenantWorkers: cfg.Skills.TenantWorkers, Memory: int64(cfg.Skills.Memory), Models: cfg.Skills.Models,
		MCP: mcpServers(cfg.Skills.MCP),
		Tools: skills.ToolConfig{MaxSteps: tl.MaxSteps, MaxTokens: tl.MaxTokens, Timeout: tl.Timeout.D(),
			CallTimeout: tl.CallTimeout.D(), MaxResult: int(tl.MaxResult)},
		Resolve: func(model string) error {
			if r := rt.Load(); r != nil && r.ResolveModel(model) == nil {
				return nil
			}
			if configNames(cfg, model) {
				return nil
			}
			return fmt.Errorf("neither the chain (models:) nor a provider's models: names it")
		}}
}

// skillStage is the node's skills stage: the workspace's skills as last
// loaded, replaced on a reload (SIGHUP, moltbot keys reload) without a
// restart. A reload that fails keeps the skills in use.
type skillStage struct {
	cfg skills.Config
	log *slog.Logger

	cur     atomic.Pointer[skills.Skills] // nil: no skill
	mu      sync.Mutex                    // one load at a time
	closing sync.WaitGroup                // replaced skills, closed after their running skill

	// flows are the YAML flows of skills/flows/, a stage of their own
	// before this one (a flow waiting for an answer takes the message
	// before a skill's pattern can); loaded and reloaded with the skills.
	flows *flow.Stage
	// intents recognize the turn's intent (skills/intents.yaml), a stage
	// first of all before the model; loaded and reloaded with the skills.
	intents *intent.Stage

	// files are the tenants' pushed skills (skillfiles.go; nil: none):
	// their JavaScript runs in this stage's pool (cfg.Tenants), their
	// flows in the flows' stage, each for its tenant's turns.
	files  *skills.TenantFiles
	tflows tenantFlowCache
	// poolFailed is when a pool for the tenants' skills last failed to
	// open (no worker here; st.mu held to read or write it).
	poolFailed time.Time
}

// newSkillStage is the stage of the skills of cfg.Dir, and of its flows,
// none loaded yet.
func newSkillStage(cfg skills.Config, files *skills.TenantFiles, log *slog.Logger) *skillStage {
	st := &skillStage{cfg: cfg, log: log, files: files}
	if files != nil {
		st.cfg.Tenants = files
	}
	st.flows = flow.NewStage(skillCaller{st}, log)
	if files != nil {
		st.flows.SetTenants(st.tenantFlows, files.Any)
	}
	st.intents = intent.NewStage(log)
	if files != nil {
		st.intents.SetTenants(st.tenantIntents, files.Any)
	}
	if cfg.Metrics != nil {
		st.intents.Count = func(stage string) { cfg.Metrics.Inc(metrics.IntentTurns, stage) }
	}
	return st
}

// loaded reports whether there are skills or flows now.
func (st *skillStage) loaded() bool {
	return st.cur.Load() != nil || !st.flows.Idle() || !st.intents.Idle()
}

// Idle reports whether there are no skills now: the turn pipeline then
// passes the stage by at no cost (actors.Idler).
//
// With tenants' pushed skills it is not idle: a turn looks its tenant's
// up (a map lookup when the tenant has none).
func (st *skillStage) Idle() bool {
	if sk := st.cur.Load(); sk != nil {
		return sk.Idle()
	}
	return !st.files.Any()
}

// BeforeModel runs the current skills' stage; a turn that started on
// skills a reload replaced meanwhile tries the new ones.
func (st *skillStage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	for range 3 {
		sk := st.current()
		if sk == nil {
			return nil, nil
		}
		c, err := sk.BeforeModel(ctx, t, fn)
		if errors.Is(err, skills.ErrClosed) {
			continue
		}
		return c, err
	}
	return nil, nil
}

// toolStage is the server-side tool loop of the current skills
// (skills.RunTools), around the model: it idles while no skill says
// tool: and no MCP server's tools loaded, so such a node's turns cost
// nothing more (actors.Idler). While a tenant has pushed skills it does
// not idle: a turn of that tenant may be offered its skills' tools.
type toolStage struct{ st *skillStage }

func (ts toolStage) Idle() bool {
	sk := ts.st.cur.Load()
	if sk == nil {
		return !ts.st.files.Any()
	}
	return len(sk.ServerTools(nil)) == 0 && !sk.HasTenants()
}

func (ts toolStage) AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
	next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	sk := ts.st.current()
	if sk == nil {
		return next(ctx, fn)
	}
	return sk.AroundModel(ctx, t, fn, next)
}

// mcpServers are skills.mcp as the worker takes them: a bare command
// found in the node's PATH (the worker has none), the secrets as text.
func mcpServers(cfgs []configs.MCPServerConfig) []wire.MCPServer {
	var out []wire.MCPServer
	for _, c := range cfgs {
		m := wire.MCPServer{Name: c.Name, Command: append([]string(nil), c.Command...), URL: c.URL, TimeoutMS: c.Timeout.D().Milliseconds()}
		if len(m.Command) > 0 && filepath.Base(m.Command[0]) == m.Command[0] {
			if p, err := exec.LookPath(m.Command[0]); err == nil {
				m.Command[0] = p
			}
		}
		if len(c.Env) > 0 {
			m.Env = map[string]string{}
			for k, v := range c.Env {
				m.Env[k] = v.Value()
			}
		}
		if len(c.Headers) > 0 {
			m.Headers = map[string]string{}
			for k, v := range c.Headers {
				m.Headers[k] = v.Value()
			}
		}
		out = append(out, m)
	}
	return out
}

// load reads skills/ again, the JavaScript skills (loadJS), the intents
// (loadIntents) then the flows (loadFlows, which may call the skills just
// loaded); each that does not load keeps what was in use, and the errors
// are joined.
func (st *skillStage) load() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	jsErr := st.loadJS()
	inErr := st.loadIntents()
	err := errors.Join(jsErr, inErr, st.loadFlows())
	for _, n := range intentNotes(st.intents.Set(), st.flows.Flows(), st.skillIntents(), nil) {
		st.log.Warn("intents", "note", n)
	}
	return err
}

// skillIntents are the intents the loaded JavaScript skills export, by
// file.
func (st *skillStage) skillIntents() map[string]string {
	sk := st.cur.Load()
	if sk == nil {
		return nil
	}
	out := map[string]string{}
	for _, s := range sk.Skills() {
		if s.Intent != "" {
			out[s.File] = s.Intent
		}
	}
	return out
}

// loadJS reads skills/*.js again in a new worker and, when it loads, puts
// it in place of the old one (closed once its running skill, if any, is
// done). An error keeps the old skills (st.mu held).
func (st *skillStage) loadJS() error {
	sk, err := skills.Open(st.cfg)
	if err != nil {
		return err
	}
	if old := st.cur.Swap(sk); old != nil {
		st.closing.Add(1)
		go func() {
			defer st.closing.Done()
			old.Close()
		}()
	}
	if sk != nil {
		for _, s := range sk.Skills() {
			st.log.Info("skill loaded", "skill", s.Name, "file", "skills/"+s.File, "patterns", s.Patterns)
		}
		for _, t := range sk.Tools() {
			st.log.Info("tool loaded", "tool", t.Name, "skill", t.Skill, "mcp_server", t.Server)
		}
	}
	return nil
}

// Close stops the worker and waits for the replaced ones.
func (st *skillStage) Close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if sk := st.cur.Swap(nil); sk != nil {
		sk.Close()
	}
	st.closing.Wait()
}

// noWorkerWarning: skills/ holds JavaScript skills but the worker is not
// there; the node serves without them.
func (st *skillStage) noWorkerWarning(err error) {
	st.log.Warn("skills/ holds JavaScript skills but their worker is not there: they are not served (the edge build does not build moltbot-skills; "+
		"build it with make build and set skills.worker to its path, then reload)", "skills.worker", st.cfg.Worker, "err", err)
}

// reloadSkills reads skills/ again (Reload, SIGHUP); an error is logged
// and the skills in use stay.
func (n *Node) reloadSkills() error {
	if n.skills == nil {
		return nil
	}
	if err := n.skills.load(); err != nil {
		if errors.Is(err, skills.ErrNoWorker) {
			n.skills.noWorkerWarning(err)
		}
		n.Log.Error("skills not reloaded; the skills in use stay", "err", err)
		return err
	}
	n.Log.Info("skills reloaded", "dir", n.skills.cfg.Dir)
	return nil
}

// tenantData is what auth's sweep of deleted tenants deletes on this
// node: their conversations, their skills' kv records and their pushed
// skills.
type tenantData struct {
	convs interface {
		DeleteSpaces(dead func(space string) bool) (int, error)
	}
	kv    skills.ScanKV
	files *skills.TenantFiles
	// kb is the knowledge bases' store once the node opened it (after
	// auth, whose sweep calls DeleteSpaces): nil before.
	kb *atomic.Pointer[kb.Store]
}

// DeleteSpaces deletes the dead spaces' conversations (counted) and
// their skills' records.
func (d tenantData) DeleteSpaces(dead func(space string) bool) (int, error) {
	n, err := d.convs.DeleteSpaces(dead)
	if _, kerr := skills.SweepKV(d.kv, dead); kerr != nil && err == nil {
		err = kerr
	}
	if _, ferr := d.files.DeleteSpaces(dead); ferr != nil && err == nil {
		err = ferr
	}
	if st := d.kb.Load(); st != nil {
		if _, kerr := st.DeleteSpaces(dead); kerr != nil && err == nil {
			err = kerr
		}
	}
	return n, err
}
