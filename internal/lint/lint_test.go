// Package lint holds tests that keep the architecture true: the import graph
// of ARCHITECTURE.md is an allow-list here, checked on every `make test`,
// the way Go checks its own standard library (go/build's deps_test.go).
//
// Every package of the module is listed with the module packages it may
// import, in its code and, besides, in its tests; a package that is not
// listed fails the test, so a new package is placed on purpose. Every
// outside module is listed with the packages that may use it: each
// dependency is adapted in one place (protoactor only in actors, memberlist
// only in cluster, Pebble only in storage, ...), and a new dependency is a
// decision, not an accident.
package lint

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const mod = "github.com/moltbot/moltbot"

// allowed says what a package may import from the module: in its code, and
// in its tests on top of that. "." is the root package (the domain
// vocabulary); "*" allows everything (cmd: the one place where concrete
// types meet).
type allowed struct {
	code, tests []string
}

var deps = map[string]allowed{
	".": {},

	// Leaves: adapters of one dependency each, and helpers.
	"internal/jsonw": {},
	// httpstatus: the domain's error codes as HTTP statuses, for every HTTP edge.
	"internal/httpstatus": {code: []string{"."}},
	"internal/jsonscan":   {},
	"internal/h1":         {},
	"internal/logging":    {code: []string{"."}},
	"internal/metrics":    {},
	"internal/slots":      {},
	"internal/gctune":     {},
	"internal/testutil":   {},
	"internal/lint":       {},
	// seamtest: a toy channel and a toy skill through the seam, from outside.
	"internal/seamtest": {tests: []string{".", "actors", "chat", "inference/sim", "internal/metrics", "storage"}},
	"inference/sse":     {},
	// channels: the adapters' contract and helpers; channeltest a Host in memory.
	// The core beside the contract (core.go, inbox.go, run.go, serve.go)
	// counts into the node's metrics; it reaches chat, storage and the
	// ring through interfaces cmd fills in.
	"channels":             {code: []string{".", "internal/metrics"}, tests: []string{"channels/channeltest", "internal/testutil", "storage"}},
	"channels/channeltest": {code: []string{"channels"}},
	// The generic signed webhook adapter (its hook signing is the root's
	// SignHook, shared with the hand-off's ticket webhook).
	"channels/webhook":   {code: []string{".", "channels"}, tests: []string{"channels/channeltest"}},
	"inference/failover": {},
	"actors/pb":          {},
	// The Slack adapter; fakeslack a fake Slack for its tests (and for
	// npm @slack/socket-mode's, test/channels/slack).
	"channels/slack":           {code: []string{".", "channels"}, tests: []string{"channels/channeltest", "channels/slack/fakeslack"}},
	"channels/slack/fakeslack": {},
	// The Discord adapter; fakediscord is a Discord on loopback for its
	// tests and for test/channels/discord's discord.js check.
	"channels/discord":             {code: []string{".", "channels"}, tests: []string{"channels/channeltest", "channels/discord/fakediscord"}},
	"channels/discord/fakediscord": {},
	// Telegram and Feishu adapters, written directly over their HTTP APIs;
	// each carries a fake of its platform (checked by the platform's npm
	// client in test/channels).
	"channels/telegram":              {code: []string{".", "channels"}, tests: []string{"channels/channeltest", "channels/telegram/faketelegram"}},
	"channels/telegram/faketelegram": {},
	"channels/feishu":                {code: []string{".", "channels"}, tests: []string{"channels/channeltest", "channels/feishu/fakefeishu"}},
	"channels/feishu/fakefeishu":     {},

	// configs assembles each package's Config from the YAML, over the
	// package's own defaults, and links the provider types in.
	"configs": {code: []string{".", "actors", "audit", "auth", "cache", "cluster", "inference", "inference/anthropic", "inference/ollama",
		"inference/openai", "inference/sim", "retention", "skills/builtin", "skills/handoff", "storage"}},
	"storage": {code: []string{"."}, tests: []string{"internal/testutil"}},
	// Records every member of a cluster holds (last writer wins), over a
	// storage namespace; an actors.SharedState without importing actors.
	"storage/replica": {code: []string{"storage"}},
	// The output cache: its tiers over storage's namespaces and its own
	// Redis client (resp, a leaf); its tests run the stage in a runtime.
	"cache":      {code: []string{".", "cache/resp", "internal/metrics", "storage"}, tests: []string{"actors", "chat", "inference", "inference/sim", "internal/testutil"}},
	"cache/resp": {tests: []string{"internal/testutil"}},
	// auth and audit keep their records in storage's namespaces.
	"audit":   {code: []string{"storage"}},
	"auth":    {code: []string{".", "storage"}, tests: []string{"internal/testutil"}},
	"cluster": {code: []string{"internal/slots"}, tests: []string{"internal/testutil"}},

	// Providers see the domain and the Provider interface, never the runtime.
	"inference":           {code: []string{".", "internal/h1", "internal/jsonw"}},
	"inference/ollama":    {code: []string{".", "inference", "internal/jsonscan", "internal/jsonw"}, tests: []string{"internal/testutil"}},
	"inference/openai":    {code: []string{".", "inference", "inference/sse", "internal/jsonscan", "internal/jsonw"}, tests: []string{"internal/testutil"}},
	"inference/anthropic": {code: []string{".", "inference", "inference/sse"}, tests: []string{"internal/testutil"}},
	// The OpenAI chat completions API's wire types, for whoever speaks it
	// (the simulator; the gateway next).
	"inference/openaiwire": {code: []string{".", "internal/jsonscan", "internal/jsonw"}},
	// The simulator serves the Ollama, OpenAI and Anthropic APIs with their
	// own types; its tests call it with each provider client.
	"inference/sim": {code: []string{".", "inference", "inference/ollama", "inference/openai", "inference/openaiwire", "internal/jsonw"},
		tests: []string{"inference/anthropic"}},

	// actors sees providers only through inference.Provider (the simulator
	// only in its tests). Its subpackages are its seams: provider actors,
	// the failover router, conversations; the cluster link and the Runtime
	// facade that wires them stay in actors.
	"actors/provider": {code: []string{".", "inference", "inference/failover", "internal/metrics"}},
	"actors/route":    {code: []string{".", "actors/provider", "inference", "inference/failover", "internal/metrics"}},
	"actors/conv":     {code: []string{".", "cluster", "inference", "internal/metrics", "storage"}},
	"actors": {code: []string{".", "actors/conv", "actors/pb", "actors/provider", "actors/route", "cluster", "inference", "inference/failover", "internal/metrics", "internal/slots", "storage"},
		tests: []string{"cache", "inference/sim", "internal/testutil"}}, // cache: the output cache as cmd wires it, in a whole runtime

	// Retention sweeps the conversations a node owns by the tenants'
	// policies, through the runtime it declares; usage counts what each
	// tenant stores (a storage.Store wrapper) and admits by its quotas.
	"retention": {code: []string{".", "internal/metrics"}, tests: []string{"internal/testutil", "storage", "usage"}},
	"usage":     {code: []string{".", "internal/metrics", "storage"}, tests: []string{"internal/testutil"}},

	// The chat service: admission, allow-lists, limits, charging and
	// validation of every turn, for every edge, over a runtime it declares.
	"chat": {code: []string{".", "internal/metrics"}, tests: []string{"internal/testutil"}},
	// The management service: tenants, keys, status, over auth and actors.
	"manage": {code: []string{".", "actors", "auth", "cache", "channels", "retention", "skills/handoff", "skills/kb"}, tests: []string{"storage", "inference/sim"}},

	// The HTTP edge: an adapter of the chat and management services; it
	// imports neither auth nor actors (its tests wire the real ones).
	"gateway": {code: []string{".", "audit", "chat", "manage", "inference/openaiwire", "internal/httpstatus", "internal/jsonw", "internal/metrics", "internal/slots"},
		tests: []string{"actors", "auth", "cache", "channels", "inference", "inference/anthropic", "inference/openai", "inference/sim", "internal/logging", "internal/testutil", "skills/kb", "storage"}},

	// bench measures over HTTP only (reading streams with the providers'
	// SSE reader, a leaf).
	"bench":         {code: []string{"inference/sse"}},
	"bench/measure": {code: []string{"bench"}},

	"cmd/moltbot": {code: []string{"*"}},
	// The JavaScript skills' worker, a process of its own (the only code
	// that links goja): it speaks JSON lines and imports nothing of the
	// module.
	"cmd/moltbot-skills": {code: []string{"skills/wire"}},
	// The node's side of the skills: a stage before the model that drives
	// the worker; its tests run the stage in a whole runtime.
	"skills": {code: []string{".", "internal/metrics", "skills/wire"}, tests: []string{"actors", "inference", "inference/sim", "internal/metrics", "storage"}},
	// The node-worker protocol of JavaScript skills, written once for both.
	"skills/wire": {},
	// The preset skills, in Go: stages over the domain only (configs
	// decodes their options; cmd wires them).
	"skills/builtin": {code: []string{"."}},
	// YAML flows: a stage before the model over the domain's Turn (its
	// skill nodes reach the JavaScript skills through an interface cmd
	// fills in).
	"skills/flow": {code: []string{".", "internal/yamlnode", "skills/wire"}},
	// Hand-written YAML read node by node, with errors naming file, line
	// and key: the flows' and the intents file's.
	"internal/yamlnode": {},
	// The intent recognizer: the cascade, the n-gram classifier, the
	// stage (a BeforeModel wired in by cmd, first of the before list).
	"skills/intent": {code: []string{".", "internal/yamlnode", "skills/wire"}, tests: []string{"inference", "inference/sim"}},
	// The knowledge base: chunker, tokenizer, BM25, vectors, the store
	// (over a KV interface of its own) and the stage before the model.
	"skills/kb":      {code: []string{"."}},
	"skills/handoff": {code: []string{"."}},
	// A fake MCP server (a command the tests build and run).
	"internal/mcptest": {},

	// Acceptance: the built binary driven by real clients, over HTTP only.
	"test/acceptance": {tests: []string{"internal/testutil"}},
	// The channels' fakes driven by the platforms' npm clients.
	"test/channels": {tests: []string{"channels/telegram/faketelegram", "channels/feishu/fakefeishu"}},

	// The web chat widget streams turns itself: an edge of the chat
	// service (as the gateway is), besides an adapter of the contract;
	// openaiwire decodes its visitors' images (data URLs), as the gateway's.
	"channels/widget": {code: []string{".", "channels", "chat", "inference/openaiwire", "internal/httpstatus", "internal/jsonw"},
		tests: []string{"actors", "channels/channeltest", "inference/sim", "internal/metrics", "storage"}},
}

// owners lists every outside module the code may import and the packages
// (with their subpackages) allowed to.
var owners = map[string][]string{
	// actors and its seams (actors/conv, actors/provider, actors/route,
	// actors/pb): the only code that knows protoactor.
	"github.com/asynkron/protoactor-go": {"actors"},
	// protoactor's registry's maps, sized (actors/registry.go).
	"github.com/orcaman/concurrent-map":  {"actors"},
	"google.golang.org/protobuf":         {"actors"},
	"google.golang.org/grpc":             {"actors", "cluster"},
	"github.com/hashicorp/memberlist":    {"cluster"},
	"github.com/cockroachdb/pebble":      {"storage"},
	"github.com/cespare/xxhash":          {"storage"},
	"github.com/ollama/ollama":           {"inference/ollama", "inference/sim", "gateway"},
	"github.com/buger/jsonparser":        {"inference/openai"},
	"golang.org/x/oauth2":                {"inference", "cmd"},
	"github.com/golang-jwt/jwt":          {"auth"},
	"github.com/MicahParks/keyfunc":      {"auth"},
	"golang.org/x/time":                  {"auth"},
	"github.com/VictoriaMetrics/metrics": {"internal/metrics"},
	"gopkg.in/yaml.v3":                   {"configs", "internal/yamlnode", "skills/builtin", "skills/flow", "skills/intent"}, // builtin: FAQ files, with their lines
	"github.com/urfave/cli":              {"cmd"},
	// goja only in the skills worker's process (docs/DESIGN.md): the
	// node's binary never links it.
	"github.com/dop251/goja":        {"cmd/moltbot-skills"},
	"github.com/dop251/goja_nodejs": {"cmd/moltbot-skills"},
	// The MCP client in the skills worker too (it would grow the node by
	// 1.8 MB; docs/DESIGN.md); internal/mcptest is a fake MCP server the
	// tests build and run as a process.
	"github.com/modelcontextprotocol/go-sdk": {"cmd/moltbot-skills", "internal/mcptest"},
	// ollama: the gateway serves the Ollama API with its types (and its
	// tests drive it with ollama/api's client). x/crypto/ssh: the ollama
	// CLI's ed25519 keys, registered as credentials (auth) and written as
	// the CLI keeps them (the gateway's tests).
	"golang.org/x/crypto": {"auth", "cmd/moltbot", "gateway", "test/acceptance"},
	// The terminal chat's line editor and raw mode (`moltbot chat` on a
	// terminal: editing, history).
	"golang.org/x/term": {"cmd/moltbot"},
	// The WebSocket every channel adapter shares (Slack's Socket Mode,
	// Discord's Gateway, ...); the adapters live under channels/.
	"github.com/gorilla/websocket": {"channels"},
}

func root(t *testing.T) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

func under(path, prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

// stdlib: the first element of a standard library path has no dot.
func stdlib(imp string) bool { return !strings.Contains(strings.Split(imp, "/")[0], ".") }

// check walks the tree at top (module mod) and returns every violation of
// deps and owners, and how many imports it read.
func check(top string) (violations []string, checked int, err error) {
	err = filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// third_party holds patched copies of outside modules (go.mod's
			// replace), modules of their own: not packages of this one.
			if n := d.Name(); path != top && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin" || n == "dist" || n == "node_modules" || n == "third_party") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(top, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		test := strings.HasSuffix(path, "_test.go")
		a, known := deps[rel]
		if !known {
			violations = append(violations, fmt.Sprintf("%s: package %q is not in internal/lint's allow-list: place it in the architecture (deps)", path, rel))
			return nil
		}
		// Every file whatever its build constraints: the edge build's
		// stand-ins (//go:build edge) and the default build's engine files
		// (//go:build !edge) obey the same allow-list.
		f, perr := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if perr != nil {
			return perr
		}
		for _, s := range f.Imports {
			imp, _ := strconv.Unquote(s.Path.Value)
			checked++
			switch {
			case stdlib(imp):
			case under(imp, mod):
				target := strings.TrimPrefix(strings.TrimPrefix(imp, mod), "/")
				if target == "" {
					target = "."
				}
				if target == rel || slices.Contains(a.code, "*") || slices.Contains(a.code, target) || test && slices.Contains(a.tests, target) {
					continue
				}
				where := "its code"
				if test {
					where = "its tests"
				}
				violations = append(violations, fmt.Sprintf("%s imports %s: %q may not depend on %q in %s (see ARCHITECTURE.md and internal/lint)", path, imp, rel, target, where))
			default:
				owned := false
				for m, pkgs := range owners {
					if under(imp, m) {
						for _, p := range pkgs {
							owned = owned || under(rel, p)
						}
						if !owned {
							violations = append(violations, fmt.Sprintf("%s imports %s: only %s may use %s", path, imp, strings.Join(pkgs, ", "), m))
						}
						owned = true
						break
					}
				}
				if !owned {
					violations = append(violations, fmt.Sprintf("%s imports %s: an outside module that is not in internal/lint's owners: a new dependency is a decision (ARCHITECTURE.md)", path, imp))
				}
			}
		}
		return nil
	})
	sort.Strings(violations)
	return violations, checked, err
}

func TestImportRules(t *testing.T) {
	v, checked, err := check(root(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range v {
		t.Error(s)
	}
	if checked < 200 {
		t.Fatalf("only %d imports checked: the walk is broken", checked)
	}
}

// Every package of the list exists (a stale entry would hide a rename).
func TestAllowListHasNoStaleEntries(t *testing.T) {
	top := root(t)
	for pkg := range deps {
		matches, _ := filepath.Glob(filepath.Join(top, pkg, "*.go"))
		if len(matches) == 0 {
			t.Errorf("deps lists %q, which has no Go files", pkg)
		}
	}
}

// The checker catches what it should: violations planted in a small copy
// of the tree.
func TestImportRulesCatchViolations(t *testing.T) {
	top := t.TempDir()
	write := func(rel, src string) {
		p := filepath.Join(top, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	imp := func(pkg string, paths ...string) string {
		return fmt.Sprintf("package %s\n\nimport (\n\t_ %q\n)\n", filepath.Base(pkg), strings.Join(paths, "\"\n\t_ \""))
	}
	write("storage/ok.go", imp("storage", mod))                                          // allowed
	write("storage/bad.go", imp("storage", mod+"/actors"))                               // storage may not use actors
	write("gateway/bad.go", imp("gateway", mod+"/storage"))                              // only gateway's tests may
	write("gateway/ok_test.go", imp("gateway", mod+"/storage"))                          // allowed in tests
	write("gateway/proto.go", imp("gateway", "github.com/asynkron/protoactor-go/actor")) // only actors
	write("newpkg/x.go", imp("newpkg", "fmt"))                                           // unknown package
	write("cluster/dep.go", imp("cluster", "github.com/some/newdep"))                    // unknown module
	write("inference/ollama/v.go", imp("ollama", "github.com/ollama/ollama/api"))        // owned
	v, _, err := check(top)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`storage/bad.go imports ` + mod + `/actors`,
		`gateway/bad.go imports ` + mod + `/storage`,
		`gateway/proto.go imports github.com/asynkron/protoactor-go/actor: only actors may use`,
		`newpkg/x.go: package "newpkg" is not in internal/lint's allow-list`,
		`cluster/dep.go imports github.com/some/newdep: an outside module that is not in internal/lint's owners`,
	}
	if len(v) != len(want) {
		t.Fatalf("%d violations, want %d:\n%s", len(v), len(want), strings.Join(v, "\n"))
	}
	for _, w := range want {
		found := false
		for _, s := range v {
			found = found || strings.Contains(s, w)
		}
		if !found {
			t.Errorf("not caught: %s\ngot:\n%s", w, strings.Join(v, "\n"))
		}
	}
}
