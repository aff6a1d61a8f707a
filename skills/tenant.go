package skills

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/skills/wire"
)

// Tenants' pushed JavaScript skills (TenantFiles) run in the same pool of
// workers as the workspace's, under the same deadline, memory budget and
// tenant shares. Nothing is loaded for a tenant until one of its turns
// needs it (lazily, on this node):
//
//   - the node keeps, per tenant, what its skills are (names, RE2
//     patterns, models: maps), read once per version of its files from a
//     worker's load;
//   - a worker holds a tenant's sources (not a JavaScript runtime: each
//     run makes its own, as for the workspace's skills) once a run of
//     that tenant reached it, at most wire.MaxSets tenants, the least
//     recently used unloaded first.
//
// A tenant's turn sees its own skills first, then the workspace's whose
// names its own do not take: a tenant's skill of the same name wins for
// that tenant. Another tenant never sees them. A new version of the
// files (a push reached this node) is read on the tenant's next turn.

// PushedLabel is the skill label of a tenant's pushed skills' runs in
// the metrics (moltbot_skill_runs_total, _duration_seconds).
const PushedLabel = "(pushed)"

// TenantSource is where a tenant's pushed skills are (*TenantFiles).
type TenantSource interface {
	Version(space string) string
	Files(space string) (string, []PushedFile, error)
	Any() bool
}

// tenantSet is one tenant's loaded skills, of one version of its files.
type tenantSet struct {
	space, version string
	key            string // the worker's name for the set
	l              *loaded
}

// tenantCache is what the node loaded of tenants' skills.
type tenantCache struct {
	mu   sync.Mutex
	sets map[string]*tenantSet // by space
	// loading serializes a tenant's first load (one worker load, not one
	// per concurrent turn).
	loading map[string]*sync.Mutex
}

// tenantOf is the space a turn's tenant-owned data lives in.
func tenantOf(t *moltbot.Turn) string {
	if t.Tenant != "" {
		return t.Tenant
	}
	return t.Space
}

// HasTenants reports whether some tenant has pushed skills (the stage is
// then not idle).
func (s *Skills) HasTenants() bool { return s.cfg.Tenants != nil && s.cfg.Tenants.Any() }

// tenantSkills are space's pushed JavaScript skills, loaded (once per
// version) when first needed; nil when it has none.
func (s *Skills) tenantSkills(ctx context.Context, space string) (*tenantSet, error) {
	if s.cfg.Tenants == nil || space == "" {
		return nil, nil
	}
	ver := s.cfg.Tenants.Version(space)
	tc := &s.tenants
	tc.mu.Lock()
	ts := tc.sets[space]
	if ver == "" {
		if ts != nil {
			delete(tc.sets, space)
		}
		tc.mu.Unlock()
		return nil, nil
	}
	if ts != nil && ts.version == ver {
		tc.mu.Unlock()
		return ts, nil
	}
	if tc.loading == nil {
		tc.loading, tc.sets = map[string]*sync.Mutex{}, map[string]*tenantSet{}
	}
	lm := tc.loading[space]
	if lm == nil {
		lm = &sync.Mutex{}
		tc.loading[space] = lm
	}
	tc.mu.Unlock()
	lm.Lock()
	defer lm.Unlock()
	tc.mu.Lock()
	if ts := tc.sets[space]; ts != nil && ts.version == ver {
		tc.mu.Unlock()
		return ts, nil
	}
	tc.mu.Unlock()
	ver, files, err := s.cfg.Tenants.Files(space)
	if err != nil || ver == "" {
		return nil, err
	}
	js := jsFiles(files)
	ts = &tenantSet{space: space, version: ver, key: space + "@" + ver, l: &loaded{}}
	if len(js) > 0 {
		l, err := s.loadTenant(ctx, ts, js)
		var le *setLoadError
		switch {
		case errors.As(err, &le):
			// Files that do not load here (checked on push, so a
			// worker of another build): said once, not at every turn;
			// the tenant's turns run without them until a new version.
			s.tenantLoadFailed(space, err)
		case err != nil:
			return nil, err // busy, or a worker that failed: tried again next turn
		default:
			ts.l = l
		}
	}
	tc.mu.Lock()
	if len(tc.sets) >= maxTenantSets {
		for k := range tc.sets {
			delete(tc.sets, k) // any one: read again on its tenant's next turn
			break
		}
	}
	tc.sets[space] = ts
	if tc.loading[space] == lm {
		delete(tc.loading, space) // a load at once beside a later one is only work done twice
	}
	tc.mu.Unlock()
	return ts, nil
}

// maxTenantSets bounds the tenants whose skills a node keeps described
// (names, patterns): a node serving many tenants keeps the last ones used.
const maxTenantSets = 1024

// jsFiles are the JavaScript files of a tenant's pushed files, as the
// worker takes them.
func jsFiles(files []PushedFile) []wire.File {
	var out []wire.File
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".js") && !IsFlow(f.Path) {
			out = append(out, wire.File{Name: f.Path, Source: f.Source})
		}
	}
	return out
}

// loadTenant loads ts's files in a worker of the pool (waiting for a
// free one at most the skills' deadline) and returns what they are.
func (s *Skills) loadTenant(ctx context.Context, ts *tenantSet, js []wire.File) (*loaded, error) {
	var l *loaded
	err := s.withSlot(ctx, func(sl *slot) error {
		resp, err := s.ensureSet(sl, ts.key, js)
		if err != nil {
			return err
		}
		l, err = describeLoad(resp, "")
		return err
	})
	return l, err
}

// CheckTenant loads files (a tenant's JavaScript files as they would be
// after a push) in a worker of the pool under a name of their own, and
// unloads them: the skills they are, or the error naming a file that
// does not load (a syntax error with its line, a pattern RE2 cannot
// take). It is the check a push passes before it is written.
func (s *Skills) CheckTenant(ctx context.Context, files []PushedFile) ([]Skill, error) {
	js := jsFiles(files)
	if len(js) == 0 {
		return nil, nil
	}
	key := fmt.Sprintf("check#%d", s.nextID.Add(1))
	var l *loaded
	err := s.withSlot(ctx, func(sl *slot) error {
		resp, err := s.ensureSet(sl, key, js)
		if err != nil {
			return err
		}
		defer s.unloadSet(sl, key)
		l, err = describeLoad(resp, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	return l.skills, nil
}

// tenantTools are a tenant's turn's server-side tools (Toolbox): its own
// skills' (tool: exports), then the workspace's whose names its own do
// not take.
type tenantTools struct {
	s  *Skills
	ts *tenantSet
}

func (tt tenantTools) ServerTools(bot *moltbot.Bot) []moltbot.Tool {
	own := toolsOf(tt.ts.l, bot)
	out := slices.Clip(own)
	for _, t := range tt.s.ServerTools(bot) {
		if !slices.ContainsFunc(own, func(o moltbot.Tool) bool { return o.Name == t.Name }) {
			out = append(out, t)
		}
	}
	return out
}

func (tt tenantTools) CallTool(ctx context.Context, t *moltbot.Turn, name, args string) (string, moltbot.Usage, error) {
	return tt.s.callTool(ctx, tt.ts, t, name, args)
}

// describeLoad is a load's answer as the node keeps it: the RE2 patterns
// compiled, the tools as the model is offered them.
func describeLoad(resp wire.Response, prefix string) (*loaded, error) {
	l := &loaded{skills: make([]Skill, len(resp.Skills)), tools: resp.Tools, warnings: resp.Warnings}
	for _, t := range resp.Tools {
		l.offered = append(l.offered, moltbot.Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters})
	}
	for i := range resp.Skills {
		sk := &l.skills[i]
		sk.SkillInfo = resp.Skills[i]
		for _, p := range sk.RE2 {
			re, err := regexp.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("%s%s: pattern %s: %w", prefix, sk.File, p, err)
			}
			sk.res = append(sk.res, re)
		}
	}
	return l, nil
}

// ErrPushedLoad is in the error of pushed files the worker refused: they
// do not load (a syntax error, a pattern RE2 cannot take), as opposed to
// a worker that was busy or crashed.
var ErrPushedLoad = errors.New("skills: pushed files do not load")

type setLoadError struct{ msg string }

func (e *setLoadError) Error() string { return e.msg }
func (e *setLoadError) Unwrap() error { return ErrPushedLoad }

// ensureSet makes sure sl's worker holds the set key (loading files when
// it does not, after unloading the least recently used set when it holds
// wire.MaxSets); sl owned, its worker started. The load's answer when it
// loaded, else an empty one.
func (s *Skills) ensureSet(sl *slot, key string, js []wire.File) (wire.Response, error) {
	return s.ensureSetFn(sl, key, func() ([]wire.File, error) { return js, nil })
}

// ensureSetFn is ensureSet with the files read only when the worker
// lacks them.
func (s *Skills) ensureSetFn(sl *slot, key string, files func() ([]wire.File, error)) (wire.Response, error) {
	now := s.tick.Add(1)
	if _, ok := sl.sets[key]; ok {
		sl.sets[key] = now
		return wire.Response{}, nil
	}
	js, err := files()
	if err != nil {
		return wire.Response{}, err
	}
	if len(sl.sets) >= wire.MaxSets {
		old, oldest := "", int64(0)
		for k, at := range sl.sets {
			if old == "" || at < oldest {
				old, oldest = k, at
			}
		}
		if err := s.unloadSet(sl, old); err != nil {
			return wire.Response{}, err
		}
	}
	resp, err := s.do(context.Background(), sl, wire.Request{Op: "load", Set: key, Files: js, MaxFile: MaxPushedFile}, 10*time.Second, nil)
	if err != nil {
		return wire.Response{}, err
	}
	if resp.Error != "" {
		return wire.Response{}, &setLoadError{resp.Error}
	}
	if sl.sets == nil {
		sl.sets = map[string]int64{}
	}
	sl.sets[key] = now
	return resp, nil
}

// unloadSet makes sl's worker forget set key.
func (s *Skills) unloadSet(sl *slot, key string) error {
	delete(sl.sets, key)
	if sl.w == nil {
		return nil
	}
	_, err := s.do(context.Background(), sl, wire.Request{Op: "unload", Set: key}, 5*time.Second, nil)
	return err
}

// withSlot runs fn with a free slot whose worker runs (waiting for one at
// most the skills' deadline, or ctx's).
func (s *Skills) withSlot(ctx context.Context, fn func(sl *slot) error) error {
	if s.closed() {
		return ErrClosed
	}
	d := s.cfg.Deadline
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d = max(time.Until(dl), time.Millisecond)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	var sl *slot
	select {
	case sl = <-s.slots:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return moltbot.Errorf(moltbot.EBusy, "skills: all %d workers stayed busy (%s)", cap(s.slots), d)
	}
	defer func() { s.slots <- sl }()
	if s.closed() {
		return ErrClosed
	}
	if sl.w == nil {
		if err := s.start(sl); err != nil {
			return err
		}
	}
	return fn(sl)
}

// lookup is skill name of ts (a tenant's), else of the workspace's that
// ts does not shadow.
func (s *Skills) lookup(ts *tenantSet, name string) (Skill, *tenantSet, bool) {
	if ts != nil {
		for _, sk := range ts.l.skills {
			if sk.Name == name {
				return sk, ts, true
			}
		}
	}
	sk, ok := s.Skill(name)
	return sk, nil, ok
}

// shadows reports whether ts (nil: none) has a skill named name.
func (ts *tenantSet) shadows(name string) bool {
	if ts == nil {
		return false
	}
	for _, sk := range ts.l.skills {
		if sk.Name == name {
			return true
		}
	}
	return false
}

// matchIn is MatchBot over ts's skills, then the workspace's ts does not
// shadow: the skill, its set (nil: the workspace's) and the match.
func (s *Skills) matchIn(ts *tenantSet, text string, bot *moltbot.Bot) (string, *tenantSet, []*string) {
	if len(text) > s.cfg.MaxInput {
		return "", nil, nil
	}
	if ts != nil {
		if name, m := matchSkills(ts.l.skills, text, bot, nil); name != "" {
			return name, ts, m
		}
	}
	name, m := matchSkills(s.skills.Load().skills, text, bot, ts)
	return name, nil, m
}

// matchIntentIn is MatchIntent over ts's skills first. It asks for the
// turn's intent (which the intent stage classifies only when asked:
// moltbot.Turn.Later) only when a skill bot may run exports one.
func (s *Skills) matchIntentIn(ctx context.Context, ts *tenantSet, t *moltbot.Turn) (string, *tenantSet) {
	bot, in, asked := t.Bot, "", false
	intent := func() string {
		if !asked {
			asked = true
			if in = t.NoteOf(ctx, "intent"); t.NoteOf(ctx, "intent.low") == "true" {
				in = ""
			}
		}
		return in
	}
	if ts != nil {
		for _, sk := range ts.l.skills {
			if sk.Intent != "" && bot.HasSkill(sk.Name) && sk.Intent == intent() {
				return sk.Name, ts
			}
		}
	}
	for _, sk := range s.skills.Load().skills {
		if sk.Intent != "" && bot.HasSkill(sk.Name) && !ts.shadows(sk.Name) && sk.Intent == intent() {
			return sk.Name, nil
		}
	}
	return "", nil
}

// TenantSkills are the skills space's turns see on this node: its own
// (loaded now if they were not) then the workspace's its own do not
// shadow. For `moltbot skills` and tests.
func (s *Skills) TenantSkills(ctx context.Context, space string) ([]Skill, error) {
	ts, err := s.tenantSkills(ctx, space)
	if err != nil {
		return nil, err
	}
	var out []Skill
	if ts != nil {
		out = append(out, ts.l.skills...)
	}
	for _, sk := range s.skills.Load().skills {
		if !ts.shadows(sk.Name) {
			out = append(out, sk)
		}
	}
	return out, nil
}

// tenantLoadFailed logs that a tenant's pushed skills did not load on
// this node: its turns go on with the workspace's skills.
func (s *Skills) tenantLoadFailed(space string, err error) {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	s.cfg.Logger.Error("skills: a tenant's pushed skills did not load on this node; its turns go on with the workspace's", "tenant", space, "err", msg)
}
