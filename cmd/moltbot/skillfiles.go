package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/skills"
	"github.com/moltbot/moltbot/skills/flow"
	"github.com/moltbot/moltbot/skills/intent"
	"github.com/moltbot/moltbot/storage"
	"github.com/moltbot/moltbot/storage/replica"
)

// skillFilesTag is the tenants' pushed skills' part of what every member
// holds (actors.SharedMux; 0x04 is the channels' state).
const skillFilesTag = 0x05

// openSkillFiles opens the tenants' pushed skill files: one record per
// tenant's space in a namespace every member of a cluster holds
// (storage/replica over storage.SkillFiles), indexed by version in
// memory (skills.TenantFiles).
func openSkillFiles(ns storage.Namespaces) (*skills.TenantFiles, *replica.Set, error) {
	files := skills.NewTenantFiles()
	set, err := replica.Open(replica.Config{KV: ns.Namespace(storage.SkillFiles), MaxValue: skills.MaxPushedRecord, Changed: files.Changed})
	if err != nil {
		return nil, nil, err
	}
	if err := files.Attach(set); err != nil {
		return nil, nil, fmt.Errorf("skills: pushed files: %w", err)
	}
	return files, set, nil
}

// tenantFlowCache is the tenants' pushed flows and intents files this
// node parsed, by space, each of one version of the tenant's files.
type tenantFlowCache struct {
	mu   sync.Mutex
	sets map[string]tenantParsed
}

type tenantParsed struct {
	version string
	flows   *flow.Set
	intents *intent.Set // nil: the tenant has no intents file
}

// maxTenantFlows bounds the tenants whose parsed flows a node keeps (one
// is parsed again on its tenant's next turn after it was dropped).
const maxTenantFlows = 256

// current is the skills in use; when there are none but a tenant has
// pushed files (a push reached a node whose workspace has no JavaScript
// skill), a pool for them is opened now (no worker starts until a turn
// needs one).
func (st *skillStage) current() *skills.Skills {
	if sk := st.cur.Load(); sk != nil || !st.files.Any() {
		return sk
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if sk := st.cur.Load(); sk != nil {
		return sk
	}
	if time.Since(st.poolFailed) < time.Minute {
		return nil // tried a moment ago (no worker here): not at every turn
	}
	sk, err := skills.Open(st.cfg)
	if err != nil {
		st.poolFailed = time.Now()
		st.log.Error("skills: the tenants' pushed skills have no worker pool here; tried again in a minute", "skills.worker", st.cfg.Worker, "err", err)
		return nil
	}
	st.cur.Store(sk)
	return sk
}

// tenantFlows are the flows t's tenant pushed (nil: none), parsed once
// per version of its files on this node.
func (st *skillStage) tenantFlows(t *moltbot.Turn) *flow.Set { return st.tenantParsed(t).flows }

// tenantIntents are the intents file t's tenant pushed (nil: none; the
// workspace's serve its turns).
func (st *skillStage) tenantIntents(t *moltbot.Turn) *intent.Set { return st.tenantParsed(t).intents }

// tenantParsed is what t's tenant pushed of flows and intents, parsed once
// per version of its files on this node (zero: nothing).
func (st *skillStage) tenantParsed(t *moltbot.Turn) tenantParsed {
	space := t.Tenant
	if space == "" {
		space = t.Space
	}
	ver := st.files.Version(space)
	if ver == "" {
		return tenantParsed{}
	}
	c := &st.tflows
	c.mu.Lock()
	if tf, ok := c.sets[space]; ok && tf.version == ver {
		c.mu.Unlock()
		return tf
	}
	c.mu.Unlock()
	ver, files, err := st.files.Files(space)
	tp := tenantParsed{version: ver}
	if err == nil {
		tp.flows, err = flow.FromSources(flowSources(files), nil) // checked on push: any skill name
	}
	if err != nil {
		st.log.Error("a tenant's pushed flows do not load on this node; its turns go on without them", "tenant", space, "err", err)
		tp.flows = &flow.Set{}
	}
	if src, ok := intentsSource(files); ok {
		if tp.intents, err = intent.Parse(skills.IntentsFile, src); err != nil {
			st.log.Error("a tenant's pushed intents do not load on this node; its turns go on with the workspace's", "tenant", space, "err", err)
			tp.intents = nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets == nil {
		c.sets = map[string]tenantParsed{}
	}
	if len(c.sets) >= maxTenantFlows {
		for k := range c.sets {
			delete(c.sets, k) // any one: it is parsed again when needed
			break
		}
	}
	c.sets[space] = tp
	return tp
}

// intentsSource is the intents file of a tenant's pushed files.
func intentsSource(files []skills.PushedFile) ([]byte, bool) {
	for _, f := range files {
		if f.Path == skills.IntentsFile {
			return []byte(f.Source), true
		}
	}
	return nil, false
}

// flowSources are the flows of a tenant's pushed files.
func flowSources(files []skills.PushedFile) []flow.Source {
	var out []flow.Source
	for _, f := range files {
		if skills.IsFlow(f.Path) {
			out = append(out, flow.Source{File: f.Path, Src: []byte(f.Source)})
		}
	}
	return out
}

// checkPush loads a tenant's files as they would be after a push, with
// the loaders a turn uses: the JavaScript skills in a worker of the pool
// (a syntax error, a pattern RE2 cannot take), then the flows (a skill
// node may call the tenant's skills or the workspace's). The skills and
// flows they hold, or an EInvalid error naming the file (and for a flow
// the line and key); EUnavailable when there is no worker to check
// JavaScript with.
func (st *skillStage) checkPush(ctx context.Context, files []skills.PushedFile) (skillNames, flowNames []string, err error) {
	names := map[string]bool{}
	if src, ok := intentsSource(files); ok {
		if _, err := intent.Parse(skills.IntentsFile, src); err != nil {
			return nil, nil, invalidFile(files, err)
		}
	}
	if slicesAny(files, func(f skills.PushedFile) bool { return strings.HasSuffix(f.Path, ".js") }) {
		sk := st.current()
		if sk == nil {
			tmp, err := skills.OpenPool(st.cfg)
			if err != nil {
				return nil, nil, moltbot.Errorf(moltbot.EUnavailable, "this node cannot check JavaScript skills: %v", err)
			}
			defer tmp.Close()
			sk = tmp
		}
		loaded, err := sk.CheckTenant(ctx, files)
		switch {
		case errors.Is(err, skills.ErrPushedLoad):
			return nil, nil, invalidFile(files, err)
		case err != nil:
			return nil, nil, moltbot.Errorf(moltbot.EUnavailable, "the skills could not be checked: %v", err)
		}
		for _, s := range loaded {
			names[s.Name] = true
			skillNames = append(skillNames, s.Name)
			if err := st.checkModels(s); err != nil {
				return nil, nil, &moltbot.Error{Code: moltbot.EInvalid, Param: s.File, Message: err.Error()}
			}
		}
	}
	set, err := flow.FromSources(flowSources(files), func(name string) bool {
		if names[name] {
			return true
		}
		sk := st.cur.Load()
		return sk != nil && sk.Has(name)
	})
	if err != nil {
		return nil, nil, invalidFile(files, err)
	}
	for _, f := range set.Flows {
		flowNames = append(flowNames, f.Name)
	}
	return skillNames, flowNames, nil
}

// checkModels refuses a pushed skill's models: entry that names a model
// neither skills.models takes nor the router (or the config) knows, as a
// workspace's skill is refused at load.
func (st *skillStage) checkModels(s skills.Skill) error {
	if st.cfg.Resolve == nil {
		return nil
	}
	for _, alias := range slices.Sorted(maps.Keys(s.Models)) {
		if _, over := st.cfg.Models[alias]; over {
			continue
		}
		if err := st.cfg.Resolve(s.Models[alias]); err != nil {
			return fmt.Errorf("%s: models: %s: %q is not a model the router knows: %v", s.File, alias, s.Models[alias], err)
		}
	}
	return nil
}

// invalidFile is a loader's error as a 400 naming the file (Param) it
// begins with.
func invalidFile(files []skills.PushedFile, err error) error {
	msg := err.Error()
	param := ""
	for _, f := range files {
		if strings.HasPrefix(msg, f.Path+":") {
			param = f.Path
			break
		}
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Param: param, Message: msg}
}

func slicesAny[T any](l []T, f func(T) bool) bool {
	for _, x := range l {
		if f(x) {
			return true
		}
	}
	return false
}

// skillFilesAdmin is manage.SkillFiles over the node's store and stage.
type skillFilesAdmin struct {
	files *skills.TenantFiles
	st    *skillStage
}

func listOf(ver string, files []skills.PushedFile) *manage.SkillFileList {
	out := &manage.SkillFileList{Version: ver, Files: []manage.SkillFile{}}
	for _, f := range files {
		sum := sha256.Sum256([]byte(f.Source))
		out.Files = append(out.Files, manage.SkillFile{Path: f.Path, Bytes: len(f.Source), SHA256: hex.EncodeToString(sum[:])})
		out.Bytes += len(f.Source)
	}
	return out
}

func (a skillFilesAdmin) List(space string) (*manage.SkillFileList, error) {
	ver, files, err := a.files.Files(space)
	if err != nil {
		return nil, err
	}
	return listOf(ver, files), nil
}

func (a skillFilesAdmin) Get(space, path string) (manage.SkillFile, bool, error) {
	_, files, err := a.files.Files(space)
	if err != nil {
		return manage.SkillFile{}, false, err
	}
	for _, f := range files {
		if f.Path == path {
			sum := sha256.Sum256([]byte(f.Source))
			return manage.SkillFile{Path: f.Path, Source: f.Source, Bytes: len(f.Source), SHA256: hex.EncodeToString(sum[:])}, true, nil
		}
	}
	return manage.SkillFile{}, false, nil
}

func (a skillFilesAdmin) Push(ctx context.Context, space string, mc manage.SkillFilesChange) (*manage.SkillFileList, error) {
	c := skills.Change{Remove: mc.Remove, Replace: mc.Replace, IfVersion: mc.IfVersion}
	for _, f := range mc.Put {
		c.Put = append(c.Put, skills.PushedFile{Path: f.Path, Source: f.Source})
	}
	var sk, fl []string
	ver, files, err := a.files.Apply(space, c, func(files []skills.PushedFile) error {
		var err error
		sk, fl, err = a.st.checkPush(ctx, files)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := listOf(ver, files)
	out.Skills, out.Flows = sk, fl
	a.st.log.Info("skills pushed", "tenant", space, "version", ver, "files", len(files), "skills", sk, "flows", fl)
	return out, nil
}
