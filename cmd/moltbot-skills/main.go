// Command moltbot-skills runs JavaScript skills (goja) for a moltbot node,
// out of the node's process: the node starts it when its workspace's
// skills/ directory holds a .js file (package skills), talks to it in JSON
// lines on stdin and stdout, and kills it when a skill does not answer in
// time (a backtracking regexp inside a handler, which goja's Interrupt
// cannot stop). The node's binary never links goja (docs/DESIGN.md).
//
// Requests (one JSON object a line, answered in order, one at a time):
//
//	{"id":1,"op":"load","dir":"/ws/skills","max_file":1048576}  -> {"id":1,"skills":[...]} or {"id":1,"error":"..."}
//
// load reads dir's *.js files through os.Root (nothing outside the
// directory, no symlink out of it), at most max_file bytes each.
//
//	{"id":2,"op":"match","input":"..."}                          -> {"id":2,"skill":"name","matches":["...",...]} ("skill" empty: none)
//
// (The node matches with the re2 patterns load returns, the same way, and
// does not wait for the worker; match is for tools and tests.)
//
//	{"id":3,"op":"run","skill":"name","input":"...","matches":[...],"deadline_ms":5000}
//	    -> {"id":3,"call":{"seq":1,"alias":"m","prompt":"..."}} (the node answers {"id":3,"op":"reply","seq":1,"text":"..."})
//	    -> {"id":3,"done":true,"reply":"..."} or {"id":3,"done":true,"error":"..."}
//
//	{"id":4,"op":"tool","tool":"weather","args":{"city":"Paris"},"input":"...","deadline_ms":10000}
//	    -> calls as for run (a JavaScript tool's callModel), then {"id":4,"done":true,"reply":"..."} or {"id":4,"done":true,"error":"..."}
//
//	{"id":5,"op":"load","set":"acme@v1","files":[{"name":"greet.js","source":"..."}]} -> as load
//	{"id":6,"op":"run","set":"acme@v1","skill":"greet",...}                         -> as run
//	{"id":7,"op":"unload","set":"acme@v1"}                                         -> {"id":7,"done":true}
//
// A set is a tenant's pushed skills, given whole (not read from a
// directory, no MCP server), held beside the workspace's (at most
// wire.MaxSets at once; the node unloads the least recently used): run,
// tool and match with a set use its skills.
//
// tool runs a server-side tool: a skill's that exports tool (its handler
// gets context.args, the arguments, and context.input, the user's
// message; an object it returns goes back as its JSON), or an MCP
// server's (mcp.go: load's "mcp" lists the servers; load connects to them
// and lists their tools as server__tool, in "tools", with "warnings" for
// a server that did not answer). A result is cut at load's max_result.
//
// The worker caps its own memory at start (-memory BYTES: RLIMIT_DATA,
// the Go heap's soft limit at three quarters of it) and lowers its CPU
// priority (nice 10), so that a skill that allocates without bound kills
// only its worker ("fatal error: runtime: out of memory", which the node
// reports as the skill over its memory budget) and a busy one yields the
// CPU to the node's turns.
//
// A skill file is CommonJS: module.exports = {name, patterns: [/.../],
// handler: async (context) => {...}, strict, models: {alias: model},
// limits: {model_calls: N}, tool: {description, parameters, name}};
// patterns may be left out when tool is given. Its patterns are compiled
// with Go's regexp (RE2): one RE2 cannot take (backreferences, lookaround)
// is a load error naming the file and the pattern. Its handler gets
// context.input, context.matches, context.callModel(alias, {prompt}),
// a Promise of the model's text (the node resolves the alias through the
// skill's models: map, at most limits.model_calls calls a run), and
// context.kv.get(key), .set(key, value), .delete(key): Promises over the
// skill's small key-value store, per tenant, kept by the node (keys up
// to 128 bytes, values strings up to 4 KiB, 256 keys), and
// context.embed(text or [texts]), a Promise of one vector (an array of
// numbers) a text, through the node's embedding chain, and
// context.search(kb, query, k), a Promise of the chunks of the tenant's
// knowledge base kb that answer query (k of them, 4 when not given; a
// bot's skill searches only the bases its bot names), each {n, kb,
// document, heading, chunk, score, snippet}. The sandbox is what goja gives and no
// more: no fs, net, process, env, timers; require resolves the skill's
// own file only.
//
// context.matches is the match array (matches[0] the whole match,
// matches[i] the i-th capture, undefined when it did not take part; .index,
// .input). Unless the skill says strict: true, each capture is a String
// object whose .input is the captured text itself, so that the seed's
// `const { input } = context.matches[1]` gives the captured text, as its
// author meant (on a plain string it is undefined); such a String is still
// used as a string everywhere (`${m}`, +, methods) but typeof is "object"
// and === against a primitive is false. strict: true gives plain strings.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/require"
	"github.com/moltbot/moltbot/skills/wire"
)

type file = wire.File

type skill struct {
	info     wire.SkillInfo
	source   string
	patterns []*regexp.Regexp
	strict   bool
}

// loadDeadline bounds a skill file's top-level code at load.
const loadDeadline = 2 * time.Second

type worker struct {
	in     chan wire.Request
	out    *json.Encoder
	skills []*skill
	// sets are tenants' pushed skills, by the set's name (wire.Request.Set).
	sets map[string][]*skill
	mcp  *mcpClients
	// maxResult bounds a tool's result (load's max_result).
	maxResult int
}

func main() {
	memory := flag.Int64("memory", 256<<20, "the worker's memory budget in bytes (RLIMIT_DATA; the Go heap's soft limit at 3/4 of it); 0: none")
	flag.Parse()
	if err := limitSelf(*memory); err != nil {
		fmt.Fprintln(os.Stderr, "moltbot-skills:", err)
		os.Exit(2)
	}
	w := &worker{in: make(chan wire.Request), out: json.NewEncoder(os.Stdout)}
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var r wire.Request
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				fmt.Fprintln(os.Stderr, "moltbot-skills: a bad request line:", err)
				os.Exit(2)
			}
			w.in <- r
		}
		os.Exit(0) // the node closed the pipe (or went away)
	}()
	for r := range w.in {
		w.serve(r)
	}
}

func (w *worker) send(r wire.Response) {
	if err := w.out.Encode(r); err != nil {
		os.Exit(1)
	}
}

func (w *worker) serve(r wire.Request) {
	switch r.Op {
	case "load":
		w.send(w.load(r))
	case "match":
		w.send(w.match(r))
	case "unload":
		delete(w.sets, r.Set)
		w.send(wire.Response{ID: r.ID, Done: true})
	case "run":
		reply, err := w.run(r)
		resp := wire.Response{ID: r.ID, Done: true, Reply: reply}
		if err != nil {
			resp.Error = err.Error()
		}
		w.send(resp)
	case "tool":
		reply, err := w.tool(r)
		resp := wire.Response{ID: r.ID, Done: true, Reply: reply}
		if err != nil {
			resp.Error = cut(err.Error(), w.maxResult)
		}
		w.send(resp)
	default:
		w.send(wire.Response{ID: r.ID, Done: true, Error: fmt.Sprintf("unknown op %q", r.Op)})
	}
}

// newVM is a fresh runtime whose require resolves only the given file.
func newVM(name, source string) *goja.Runtime {
	vm := goja.New()
	vm.SetMaxCallStackSize(1024)
	reg := require.NewRegistry(require.WithLoader(func(p string) ([]byte, error) {
		if path.Clean(p) != name {
			return nil, require.ModuleFileDoesNotExistError
		}
		return []byte(source), nil
	}))
	reg.Enable(vm)
	return vm
}

// exports loads a skill file in vm, its top-level code bounded by d.
func exports(vm *goja.Runtime, name string, d time.Duration) (o *goja.Object, err error) {
	t := time.AfterFunc(d, func() { vm.Interrupt("deadline") })
	defer t.Stop()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	v := require.Require(vm, "./"+name)
	if goja.IsUndefined(v) || goja.IsNull(v) {
		return nil, errors.New("module.exports is empty")
	}
	return v.ToObject(vm), nil
}

// re2 compiles a JS pattern (a RegExp's source and flags) with Go's regexp.
func re2(source, flags string) (*regexp.Regexp, error) {
	var pre string
	for _, f := range flags {
		switch f {
		case 'i', 'm', 's':
			pre += string(f)
		case 'g', 'y', 'u', 'd', 'v':
		default:
			return nil, fmt.Errorf("unknown flag %q", f)
		}
	}
	if pre != "" {
		source = "(?" + pre + ")" + source
	}
	return regexp.Compile(source)
}

// readDir reads dir's *.js files through os.Root.
func readDir(dir string, maxFile int64) ([]file, error) {
	if dir == "" {
		return nil, nil // MCP servers only
	}
	if maxFile <= 0 {
		maxFile = 1 << 20
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	ents, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return nil, err
	}
	var files []file
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		f, err := root.Open(e.Name())
		if err != nil {
			return nil, fmt.Errorf("skills/%s: %w", e.Name(), err)
		}
		b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("skills/%s: %w", e.Name(), err)
		}
		if int64(len(b)) > maxFile {
			return nil, fmt.Errorf("skills/%s: larger than %d bytes", e.Name(), maxFile)
		}
		files = append(files, file{Name: e.Name(), Source: string(b)})
	}
	return files, nil
}

// skillsOf are the skills r names: a tenant's set (r.Set), or the
// workspace's.
func (w *worker) skillsOf(r wire.Request) []*skill {
	if r.Set != "" {
		return w.sets[r.Set]
	}
	return w.skills
}

// loadSet loads a tenant's pushed skills (r.Files) under r.Set; errors
// name each file as it was pushed.
func (w *worker) loadSet(r wire.Request) wire.Response {
	if len(r.Files) > 256 {
		return wire.Response{ID: r.ID, Error: fmt.Sprintf("%d files; at most 256", len(r.Files))}
	}
	if _, had := w.sets[r.Set]; !had && len(w.sets) >= wire.MaxSets {
		return wire.Response{ID: r.ID, Error: fmt.Sprintf("this worker holds %d tenants' skills, its most", wire.MaxSets)}
	}
	maxFile := r.MaxFile
	if maxFile <= 0 {
		maxFile = 1 << 20
	}
	var out []*skill
	var errs []string
	for _, f := range r.Files {
		if int64(len(f.Source)) > maxFile {
			errs = append(errs, fmt.Sprintf("%s: larger than %d bytes", f.Name, maxFile))
			continue
		}
		s, err := loadOne(f)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", f.Name, err))
			continue
		}
		out = append(out, s)
	}
	if len(errs) > 0 {
		return wire.Response{ID: r.ID, Error: strings.Join(errs, "; ")}
	}
	resp, err := describe(r.ID, out, "")
	if err != nil {
		return wire.Response{ID: r.ID, Error: err.Error()}
	}
	if w.sets == nil {
		w.sets = map[string][]*skill{}
	}
	w.sets[r.Set] = out
	if w.maxResult <= 0 {
		w.maxResult = 64 << 10
	}
	return resp
}

// describe is load's answer for skills out: each skill, and the tools
// they export (two tools of one name are an error). prefix goes before
// a file's name in errors.
func describe(id int64, out []*skill, prefix string) (wire.Response, error) {
	resp := wire.Response{ID: id, Skills: []wire.SkillInfo{}}
	seen := map[string]bool{}
	names := map[string]string{}
	for _, s := range out {
		if other, dup := names[s.info.Name]; dup {
			return resp, fmt.Errorf("%s%s: skill %q is also the name of %s%s's; a skill's name is unique", prefix, s.info.File, s.info.Name, prefix, other)
		}
		names[s.info.Name] = s.info.File
		resp.Skills = append(resp.Skills, s.info)
		if s.info.Tool != nil {
			if seen[s.info.Tool.Name] {
				return resp, fmt.Errorf("%s%s: a second tool named %s", prefix, s.info.File, s.info.Tool.Name)
			}
			seen[s.info.Tool.Name] = true
			resp.Tools = append(resp.Tools, *s.info.Tool)
		}
	}
	return resp, nil
}

func (w *worker) load(r wire.Request) wire.Response {
	if r.Set != "" {
		return w.loadSet(r)
	}
	files, err := readDir(r.Dir, r.MaxFile)
	if err != nil {
		return wire.Response{ID: r.ID, Error: err.Error()}
	}
	var out []*skill
	var errs []string
	for _, f := range files {
		s, err := loadOne(f)
		if err != nil {
			errs = append(errs, fmt.Sprintf("skills/%s: %v", f.Name, err))
			continue
		}
		out = append(out, s)
	}
	if len(errs) > 0 {
		return wire.Response{ID: r.ID, Error: strings.Join(errs, "; ")}
	}
	w.skills = out
	w.maxResult = r.MaxResult
	if w.maxResult <= 0 {
		w.maxResult = 64 << 10
	}
	resp := wire.Response{ID: r.ID, Skills: []wire.SkillInfo{}}
	seen := map[string]bool{}
	for _, s := range out {
		resp.Skills = append(resp.Skills, s.info)
		if s.info.Tool != nil {
			if seen[s.info.Tool.Name] {
				return wire.Response{ID: r.ID, Error: fmt.Sprintf("skills/%s: a second tool named %s", s.info.File, s.info.Tool.Name)}
			}
			seen[s.info.Tool.Name] = true
			resp.Tools = append(resp.Tools, *s.info.Tool)
		}
	}
	w.mcp.close()
	var tools []wire.ToolInfo
	w.mcp, tools, resp.Warnings = loadMCP(r.MCP)
	for _, t := range tools {
		if seen[t.Name] {
			resp.Warnings = append(resp.Warnings, fmt.Sprintf("mcp server %s: tool %s: a skill has that name; left out", t.Server, t.Name))
			continue
		}
		seen[t.Name] = true
		resp.Tools = append(resp.Tools, t)
	}
	return resp
}

// tool calls a server-side tool: a JavaScript skill's, or an MCP
// server's; its result cut at maxResult bytes.
func (w *worker) tool(r wire.Request) (string, error) {
	if len(r.Args) > 0 {
		var o map[string]json.RawMessage
		if err := json.Unmarshal(r.Args, &o); err != nil || o == nil {
			return "", errors.New("arguments are not a JSON object")
		}
	}
	for _, s := range w.skillsOf(r) {
		if s.info.Tool != nil && s.info.Tool.Name == r.Tool {
			out, err := w.run(r)
			return cut(out, w.maxResult), err
		}
	}
	if r.Set != "" {
		return "", fmt.Errorf("no tool %q", r.Tool) // a tenant's set has no MCP server
	}
	d := time.Duration(r.DeadlineMS) * time.Millisecond
	if d <= 0 {
		d = 10 * time.Second
	}
	out, err := w.mcp.call(r.Tool, r.Args, d)
	return cut(out, w.maxResult), err
}

// cut bounds s at n bytes, a note saying how much it left out included.
func cut(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	i := max(n-64, 0) // room for the note: the whole is at most n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + fmt.Sprintf("\n[cut: %d of %d bytes shown]", i, len(s))
}

func loadOne(f file) (*skill, error) {
	if f.Name != path.Base(f.Name) || !strings.HasSuffix(f.Name, ".js") {
		return nil, errors.New("not a .js file of skills/")
	}
	vm := newVM(f.Name, f.Source)
	ex, err := exports(vm, f.Name, loadDeadline)
	if err != nil {
		return nil, err
	}
	s := &skill{source: f.Source, info: wire.SkillInfo{File: f.Name, Name: strings.TrimSuffix(f.Name, ".js")}}
	if n := ex.Get("name"); n != nil && !goja.IsUndefined(n) {
		s.info.Name = n.String()
	}
	if !validName(s.info.Name) {
		return nil, fmt.Errorf("module.exports.name %q: want 1 to %d bytes of text with no '/' and no control character", s.info.Name, wire.MaxName)
	}
	if st := ex.Get("strict"); st != nil {
		s.strict = st.ToBoolean()
	}
	if mv := ex.Get("models"); mv != nil && !goja.IsUndefined(mv) && !goja.IsNull(mv) {
		mo, ok := mv.(*goja.Object)
		if !ok {
			return nil, errors.New("module.exports.models: want an object of alias: 'provider/model'")
		}
		keys := mo.Keys()
		if len(keys) > wire.MaxModels {
			return nil, fmt.Errorf("module.exports.models: %d aliases; at most %d", len(keys), wire.MaxModels)
		}
		s.info.Models = map[string]string{}
		for _, k := range keys {
			v := mo.Get(k)
			if _, ok := v.Export().(string); !ok {
				return nil, fmt.Errorf("module.exports.models[%q]: want a model's name (a string), got %s", k, v.String())
			}
			m := v.String()
			if k == "" || m == "" || len(k) > wire.MaxModel || len(m) > wire.MaxModel {
				return nil, fmt.Errorf("module.exports.models[%q]: an alias and its model must be 1 to %d bytes", k, wire.MaxModel)
			}
			s.info.Models[k] = m
		}
	}
	if lv := ex.Get("limits"); lv != nil && !goja.IsUndefined(lv) && !goja.IsNull(lv) {
		lo, ok := lv.(*goja.Object)
		if !ok {
			return nil, errors.New("module.exports.limits: want an object such as {model_calls: 3}")
		}
		for _, k := range lo.Keys() {
			switch k {
			case "model_calls":
				n, ok := lo.Get(k).Export().(int64)
				if !ok || n < 0 || n > wire.MaxModelCalls {
					return nil, fmt.Errorf("module.exports.limits.model_calls: want a whole number from 0 to %d, got %s", wire.MaxModelCalls, lo.Get(k).String())
				}
				s.info.ModelCalls = int(n)
				if n == 0 {
					s.info.ModelCalls = -1 // none allowed (0 on the wire is the default)
				}
			default:
				return nil, fmt.Errorf("module.exports.limits.%s: unknown (known: model_calls)", k)
			}
		}
	}
	if _, ok := goja.AssertFunction(ex.Get("handler")); !ok {
		return nil, errors.New("module.exports.handler is not a function")
	}
	if err := toolOf(vm, ex, s); err != nil {
		return nil, err
	}
	if iv := ex.Get("intent"); iv != nil && !goja.IsUndefined(iv) && !goja.IsNull(iv) {
		name, ok := iv.Export().(string)
		if !ok || !wire.ValidIntent(name) {
			return nil, fmt.Errorf("module.exports.intent: want an intent's name (1 to 64 of a-z, 0-9, '_', '-', '.'), such as 'refund', got %s", iv.String())
		}
		s.info.Intent = name
	}
	pv := ex.Get("patterns")
	if (pv == nil || goja.IsUndefined(pv)) && (s.info.Tool != nil || s.info.Intent != "") {
		return s, nil // a tool or an intent only: the model or the recognizer selects it
	}
	if pv == nil || goja.IsUndefined(pv) {
		return nil, errors.New("module.exports.patterns is missing (a skill the model calls says tool: {description, parameters} instead; one an intent selects says intent: 'name')")
	}
	po := pv.ToObject(vm)
	n := int(po.Get("length").ToInteger())
	for i := range n {
		p := po.Get(fmt.Sprint(i))
		var source, flags string
		if o, ok := p.(*goja.Object); ok && o.ClassName() == "RegExp" {
			source, flags = o.Get("source").String(), o.Get("flags").String()
		} else {
			source = regexp.QuoteMeta(p.String()) // a string pattern: its text
		}
		re, err := re2(source, flags)
		if err != nil {
			return nil, fmt.Errorf("pattern /%s/%s: Go's regexp (RE2) cannot take it (no backreferences, no lookaround): %v", source, flags, err)
		}
		s.patterns = append(s.patterns, re)
		s.info.RE2 = append(s.info.RE2, re.String())
		s.info.Patterns = append(s.info.Patterns, "/"+source+"/"+flags)
	}
	if len(s.patterns) == 0 && s.info.Tool == nil && s.info.Intent == "" {
		return nil, errors.New("module.exports.patterns is empty")
	}
	return s, nil
}

// The bounds of a JavaScript tool's declaration (the node refuses a load
// line beyond them).
const (
	maxToolDescription = 4 << 10
	maxToolParameters  = 16 << 10
)

// toolOf reads a skill's exports.tool: {description, parameters (a JSON
// Schema of an object), name (default: the skill's)}.
func toolOf(vm *goja.Runtime, ex *goja.Object, s *skill) error {
	tv := ex.Get("tool")
	if tv == nil || goja.IsUndefined(tv) || goja.IsNull(tv) {
		return nil
	}
	to, ok := tv.(*goja.Object)
	if !ok {
		return errors.New("module.exports.tool is not an object ({description, parameters})")
	}
	t := &wire.ToolInfo{Name: s.info.Name, Skill: s.info.Name}
	if n := to.Get("name"); n != nil && !goja.IsUndefined(n) {
		t.Name = n.String()
	}
	if !toolName.MatchString(t.Name) {
		return fmt.Errorf("tool name %q: a model takes only ^[a-zA-Z0-9_-]{1,64}$ (set tool.name)", t.Name)
	}
	if d := to.Get("description"); d != nil && !goja.IsUndefined(d) {
		t.Description = d.String()
	}
	if t.Description == "" {
		return errors.New("module.exports.tool.description is missing: the model chooses a tool by it")
	}
	if len(t.Description) > maxToolDescription {
		return fmt.Errorf("module.exports.tool.description is %d bytes; at most %d", len(t.Description), maxToolDescription)
	}
	t.Parameters = json.RawMessage(`{"type":"object","properties":{}}`)
	if p := to.Get("parameters"); p != nil && !goja.IsUndefined(p) {
		b, err := json.Marshal(p.Export())
		if err != nil {
			return fmt.Errorf("module.exports.tool.parameters: %v", err)
		}
		var schema map[string]any
		if json.Unmarshal(b, &schema) != nil || schema == nil {
			return errors.New("module.exports.tool.parameters is not a JSON Schema object")
		}
		if ty, ok := schema["type"]; ok && ty != "object" {
			return fmt.Errorf("module.exports.tool.parameters: type %v; the arguments are an object (type: 'object')", ty)
		}
		if len(b) > maxToolParameters {
			return fmt.Errorf("module.exports.tool.parameters is %d bytes of JSON; at most %d", len(b), maxToolParameters)
		}
		t.Parameters = b
	}
	s.info.Tool = t
	return nil
}

// validName: a skill's name is text of 1 to wire.MaxName bytes with no
// '/' and no control character (it keys the skill's kv records and its
// metrics).
func validName(n string) bool {
	return n != "" && len(n) <= wire.MaxName && utf8.ValidString(n) && !strings.ContainsFunc(n, func(r rune) bool { return r == '/' || r < 0x20 || r == 0x7f })
}

func (w *worker) match(r wire.Request) wire.Response {
	for _, s := range w.skillsOf(r) {
		for _, re := range s.patterns {
			idx := re.FindStringSubmatchIndex(r.Input)
			if idx == nil {
				continue
			}
			m := make([]*string, len(idx)/2)
			for i := range m {
				if idx[2*i] >= 0 {
					g := r.Input[idx[2*i]:idx[2*i+1]]
					m[i] = &g
				}
			}
			return wire.Response{ID: r.ID, Skill: s.info.Name, Matches: m}
		}
	}
	return wire.Response{ID: r.ID}
}

var errDeadline = errors.New("stopped at its deadline")

func (w *worker) run(r wire.Request) (string, error) {
	var s *skill
	for _, k := range w.skillsOf(r) {
		if (r.Op == "run" && k.info.Name == r.Skill) || (r.Op == "tool" && k.info.Tool != nil && k.info.Tool.Name == r.Tool) {
			s = k
		}
	}
	if s == nil {
		return "", fmt.Errorf("no skill %q", r.Skill+r.Tool)
	}
	d := time.Duration(r.DeadlineMS) * time.Millisecond
	if d <= 0 {
		d = 10 * time.Second
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	vm := newVM(s.info.File, s.source)
	stop := time.AfterFunc(d, func() { vm.Interrupt(errDeadline) })
	defer stop.Stop()
	fail := func(err error) (string, error) {
		var ie *goja.InterruptedError
		if errors.As(err, &ie) {
			return "", fmt.Errorf("skill %s: %w (%s)", s.info.Name, errDeadline, d)
		}
		return "", fmt.Errorf("skill %s: %v", s.info.Name, err)
	}
	ex, err := exports(vm, s.info.File, d)
	if err != nil {
		return fail(err)
	}
	handler, _ := goja.AssertFunction(ex.Get("handler"))

	// context.matches: the match array, as RegExp.prototype.exec makes it.
	arr := make([]any, len(r.Matches))
	for i, g := range r.Matches {
		switch {
		case g == nil:
			arr[i] = goja.Undefined()
		case s.strict || i == 0:
			arr[i] = *g
		default:
			box, err := vm.New(vm.Get("String"), vm.ToValue(*g))
			if err != nil {
				return fail(err)
			}
			box.Set("input", *g)
			arr[i] = box
		}
	}
	matches := vm.NewArray(arr...)
	matches.Set("input", r.Input)
	if r.Matches != nil && r.Matches[0] != nil {
		matches.Set("index", strings.Index(r.Input, *r.Matches[0]))
	}

	// The skill's environment: each call is a line to the node and a
	// Promise the node's reply settles.
	type waiter struct {
		kind            string
		resolve, reject func(any) error
	}
	pending := map[int]waiter{}
	seq, modelCalls, kvCalls := 0, 0, 0
	limit := s.info.ModelCalls
	switch {
	case limit == 0:
		limit = wire.DefaultModelCalls
	case limit < 0:
		limit = 0
	}
	call := func(c wire.Call) goja.Value {
		seq++
		c.Seq = seq
		p, resolve, reject := vm.NewPromise()
		pending[seq] = waiter{c.Kind, resolve, reject}
		w.send(wire.Response{ID: r.ID, Call: &c})
		return vm.ToValue(p)
	}
	throw := func(format string, args ...any) {
		panic(vm.NewGoError(fmt.Errorf(format, args...)))
	}
	ctx := vm.NewObject()
	ctx.Set("input", r.Input)
	ctx.Set("matches", matches)
	if r.Op == "tool" {
		// context.args: the model's arguments, parsed as JSON.parse does.
		args := string(r.Args)
		if args == "" {
			args = "{}"
		}
		parse, _ := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("parse"))
		a, err := parse(goja.Undefined(), vm.ToValue(args))
		if err != nil {
			return fail(err)
		}
		ctx.Set("args", a)
	}
	ctx.Set("callModel", func(c goja.FunctionCall) goja.Value {
		if modelCalls >= limit {
			throw("callModel: at most %d calls a run (limits.model_calls)", limit)
		}
		alias := c.Argument(0).String()
		if alias == "" || len(alias) > wire.MaxModel {
			throw("callModel: the alias must be 1 to %d bytes", wire.MaxModel)
		}
		var prompt string
		if a := c.Argument(1); !goja.IsUndefined(a) && !goja.IsNull(a) {
			if o, ok := a.(*goja.Object); ok {
				prompt = o.Get("prompt").String()
			} else {
				prompt = a.String()
			}
		}
		modelCalls++
		return call(wire.Call{Kind: wire.CallModel, Alias: alias, Prompt: prompt})
	})
	kvKey := func(op string, v goja.Value) string {
		if kvCalls >= wire.MaxKVCalls {
			throw("kv.%s: at most %d kv calls a run", op, wire.MaxKVCalls)
		}
		k := v.String()
		if goja.IsUndefined(v) || k == "" || len(k) > wire.MaxKey || !utf8.ValidString(k) || strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			throw("kv.%s: a key is 1 to %d bytes of text with no control character", op, wire.MaxKey)
		}
		kvCalls++
		return k
	}
	kv := vm.NewObject()
	kv.Set("get", func(c goja.FunctionCall) goja.Value {
		return call(wire.Call{Kind: wire.CallKVGet, Key: kvKey("get", c.Argument(0))})
	})
	kv.Set("set", func(c goja.FunctionCall) goja.Value {
		k := kvKey("set", c.Argument(0))
		v := c.Argument(1)
		if _, ok := v.Export().(string); !ok {
			throw("kv.set(%q): the value must be a string (JSON.stringify an object)", k)
		}
		if len(v.String()) > wire.MaxValue {
			throw("kv.set(%q): the value is %d bytes; at most %d", k, len(v.String()), wire.MaxValue)
		}
		return call(wire.Call{Kind: wire.CallKVSet, Key: k, Value: v.String()})
	})
	kv.Set("delete", func(c goja.FunctionCall) goja.Value {
		return call(wire.Call{Kind: wire.CallKVDelete, Key: kvKey("delete", c.Argument(0))})
	})
	ctx.Set("kv", kv)
	embedCalls := 0
	ctx.Set("embed", func(c goja.FunctionCall) goja.Value {
		if embedCalls >= wire.MaxEmbedCalls {
			throw("embed: at most %d calls a run", wire.MaxEmbedCalls)
		}
		a := c.Argument(0)
		var texts []string
		if _, ok := a.Export().(string); ok {
			texts = []string{a.String()}
		} else if o, ok := a.(*goja.Object); ok && o.ClassName() == "Array" {
			n := o.Get("length").ToInteger()
			if n < 1 || n > wire.MaxEmbedTexts {
				throw("embed: 1 to %d texts a call, got %d", wire.MaxEmbedTexts, n)
			}
			for i := range n {
				v := o.Get(fmt.Sprint(i))
				if _, ok := v.Export().(string); !ok {
					throw("embed: texts[%d] is not a string", i)
				}
				texts = append(texts, v.String())
			}
		} else {
			throw("embed: want a string or an array of strings")
		}
		for i, t := range texts {
			if t == "" || len(t) > wire.MaxEmbedText || !utf8.ValidString(t) {
				throw("embed: texts[%d] must be 1 to %d bytes of text", i, wire.MaxEmbedText)
			}
		}
		embedCalls++
		return call(wire.Call{Kind: wire.CallEmbed, Texts: texts})
	})
	searchCalls := 0
	ctx.Set("search", func(c goja.FunctionCall) goja.Value {
		if searchCalls >= wire.MaxSearchCalls {
			throw("search: at most %d calls a run", wire.MaxSearchCalls)
		}
		kb, query := c.Argument(0), c.Argument(1)
		isString := func(v goja.Value) bool {
			if _, ok := v.Export().(string); ok {
				return true
			}
			o, ok := v.(*goja.Object)
			return ok && o.ClassName() == "String" // a capture of context.matches
		}
		if !isString(kb) || kb.String() == "" || len(kb.String()) > 64 {
			throw("search: the knowledge base's name must be a string of 1 to 64 bytes")
		}
		if !isString(query) || query.String() == "" || len(query.String()) > wire.MaxSearchQuery || !utf8.ValidString(query.String()) {
			throw("search: the query must be 1 to %d bytes of text", wire.MaxSearchQuery)
		}
		k := 0
		if a := c.Argument(2); !goja.IsUndefined(a) && !goja.IsNull(a) {
			k = int(a.ToInteger())
			if k < 1 || k > wire.MaxSearchK {
				throw("search: k must be 1 to %d, got %v", wire.MaxSearchK, a)
			}
		}
		searchCalls++
		return call(wire.Call{Kind: wire.CallSearch, KB: kb.String(), Query: query.String(), K: k})
	})
	res, err := handler(goja.Undefined(), ctx)
	if err != nil {
		return fail(err)
	}
	p, ok := res.Export().(*goja.Promise)
	for ok && p.State() == goja.PromiseStatePending {
		if len(pending) == 0 {
			return "", fmt.Errorf("skill %s: its handler's promise never settles (it awaits nothing the worker can finish)", s.info.Name)
		}
		select {
		case <-deadline.C:
			return "", fmt.Errorf("skill %s: %w (%s), waiting for the node", s.info.Name, errDeadline, d)
		case rep := <-w.in:
			wt, found := pending[rep.Seq]
			if rep.Op != "reply" || rep.ID != r.ID || !found {
				w.send(wire.Response{ID: rep.ID, Done: true, Error: "a skill is running: one request at a time"})
				continue
			}
			delete(pending, rep.Seq)
			switch {
			case rep.Error != "":
				err = wt.reject(vm.NewGoError(errors.New(rep.Error)))
			case wt.kind == wire.CallModel:
				// The model's text: a String whose .text is itself, so that
				// `${code}` and code.text both give it.
				box, _ := vm.New(vm.Get("String"), vm.ToValue(rep.Text))
				box.Set("text", rep.Text)
				err = wt.resolve(box)
			case wt.kind == wire.CallKVGet && !rep.Found:
				err = wt.resolve(goja.Undefined())
			case wt.kind == wire.CallKVGet:
				err = wt.resolve(rep.Text)
			case wt.kind == wire.CallEmbed:
				rows := make([]any, len(rep.Vectors))
				for i, v := range rep.Vectors {
					nums := make([]any, len(v))
					for j, x := range v {
						nums[j] = float64(x)
					}
					rows[i] = vm.NewArray(nums...)
				}
				err = wt.resolve(vm.NewArray(rows...))
			case wt.kind == wire.CallKVDelete:
				err = wt.resolve(rep.Found)
			case wt.kind == wire.CallSearch:
				parse, _ := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("parse"))
				var v goja.Value
				if v, err = parse(goja.Undefined(), vm.ToValue(rep.Text)); err == nil {
					err = wt.resolve(v)
				}
			default:
				err = wt.resolve(goja.Undefined())
			}
			if err != nil {
				return fail(err)
			}
		}
	}
	if ok {
		if p.State() == goja.PromiseStateRejected {
			return "", fmt.Errorf("skill %s: its handler failed: %v", s.info.Name, p.Result())
		}
		res = p.Result()
	}
	if res == nil || goja.IsUndefined(res) || goja.IsNull(res) {
		return "", fmt.Errorf("skill %s: its handler returned nothing", s.info.Name)
	}
	if o, ok := res.(*goja.Object); ok && r.Op == "tool" && o.ClassName() != "String" {
		// A tool's object result goes to the model as its JSON.
		stringify, _ := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("stringify"))
		j, err := stringify(goja.Undefined(), o)
		if err != nil {
			return fail(err)
		}
		return j.String(), nil
	}
	return res.String(), nil
}
