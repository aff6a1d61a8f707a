package skills

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

func skillJS(name, pattern, reply string) string {
	return fmt.Sprintf("module.exports = {name: %q, patterns: [/%s/], handler: async () => %q};\n", name, pattern, reply)
}

// A tenant's pushed skills run for its turns only, before the
// workspace's (one of the same name wins for that tenant); a new version
// is read on the next turn; removed, they are gone; another tenant never
// sees them.
func TestTenantSkills(t *testing.T) {
	files, _ := newFiles(t)
	e := startWith(t, map[string]string{
		"hi.js": skillJS("hi", "^hi$", "workspace hi"),
		"ws.js": skillJS("ws", "^ws$", "workspace ws"),
	}, Config{Deadline: 10 * time.Second, Workers: 1, Tenants: files})
	push := func(space string, put ...PushedFile) {
		t.Helper()
		if _, _, err := files.Apply(space, Change{Put: put}, nil); err != nil {
			t.Fatal(err)
		}
	}
	push("acme", PushedFile{"hi.js", skillJS("hi", "^hi$", "acme hi")}, PushedFile{"greet.js", skillJS("greet", "^greet$", "acme greet")})
	reply := func(space, text string) string {
		t.Helper()
		res, _, err := e.turnIn(t, space, "c-"+space, text)
		if err != nil {
			t.Fatalf("%s %q: %v", space, text, err)
		}
		if res.Completion.Served.Provider != "skill" {
			return "model"
		}
		return res.Message.Content
	}
	for _, tc := range []struct{ space, text, want string }{
		{"acme", "greet", "acme greet"},
		{"acme", "hi", "acme hi"},
		{"acme", "ws", "workspace ws"},
		{"other", "greet", "model"},
		{"other", "hi", "workspace hi"},
	} {
		if got := reply(tc.space, tc.text); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.space, tc.text, got, tc.want)
		}
	}
	// A bot's skills: list names the tenant's own skills as any other.
	ts, err := e.sk.tenantSkills(context.Background(), "acme")
	if err != nil || ts == nil {
		t.Fatalf("acme's set: %v", err)
	}
	if name, set, _ := e.sk.matchIn(ts, "greet", &moltbot.Bot{Name: "b", Tenant: "acme", Skills: []string{"greet"}}); name != "greet" || set != ts {
		t.Errorf("a bot naming greet: %q", name)
	}
	if name, _, _ := e.sk.matchIn(ts, "greet", &moltbot.Bot{Name: "b", Tenant: "acme", Skills: []string{"ws"}}); name != "" {
		t.Errorf("a bot not naming greet runs %q", name)
	}
	push("acme", PushedFile{"greet.js", skillJS("greet", "^greet$", "acme greet v2")})
	if got := reply("acme", "greet"); got != "acme greet v2" {
		t.Errorf("after a new version: %q", got)
	}
	sks, err := e.sk.TenantSkills(context.Background(), "acme")
	if err != nil || len(sks) != 3 || sks[0].Name != "greet" && sks[1].Name != "greet" {
		t.Errorf("acme's skills: %v %+v", err, sks)
	}
	if _, _, err := files.Apply("acme", Change{Remove: []string{"greet.js", "hi.js"}}, nil); err != nil {
		t.Fatal(err)
	}
	if got := reply("acme", "greet"); got != "model" {
		t.Errorf("after rm: %q", got)
	}
	if got := reply("acme", "hi"); got != "workspace hi" {
		t.Errorf("after rm, hi: %q", got)
	}
}

// More tenants than a worker holds sets: the least recently used is
// unloaded and loaded again when its tenant comes back; every tenant's
// skill answers.
func TestTenantSetsEvicted(t *testing.T) {
	files, _ := newFiles(t)
	e := startWith(t, map[string]string{"ws.js": skillJS("ws", "^ws$", "ws")}, Config{Deadline: 10 * time.Second, Workers: 1, Tenants: files})
	n := 20 // > wire.MaxSets
	for i := range n {
		space := fmt.Sprintf("t%d", i)
		if _, _, err := files.Apply(space, Change{Put: []PushedFile{{"own.js", skillJS("own", "^own$", "own of "+space)}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 2 {
		for i := range n {
			space := fmt.Sprintf("t%d", i)
			res, _, err := e.turnIn(t, space, "c", "own")
			if err != nil || res.Message.Content != "own of "+space {
				t.Fatalf("round %d, %s: %v %+v", round, space, err, res)
			}
		}
	}
}

// A push's check: the worker's load names the file and, for a syntax
// error, its line; a pattern RE2 cannot take names the pattern; two
// skills of one name are refused; nothing stays loaded.
func TestCheckTenant(t *testing.T) {
	e := startWith(t, map[string]string{"ws.js": skillJS("ws", "^ws$", "ws")}, Config{Deadline: 10 * time.Second, Workers: 1})
	ctx := context.Background()
	for _, tc := range []struct {
		files []PushedFile
		want  string
	}{
		{[]PushedFile{{"bad.js", "module.exports = {\n  name: 'bad',\n  patterns: [/x/],\n  handler: async () => { return 'x' \n};\n"}}, "SyntaxError: bad.js: Line 5:2"},
		{[]PushedFile{{"back.js", skillJS("back", "(a)\\1", "x")}}, `back.js: `},
		{[]PushedFile{{"a.js", skillJS("same", "a", "x")}, {"b.js", skillJS("same", "b", "y")}}, `skill "same" is also the name of`},
	} {
		_, err := e.sk.CheckTenant(ctx, tc.files)
		if !errors.Is(err, ErrPushedLoad) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.files[0].Path, err, tc.want)
		}
	}
	_, err := e.sk.CheckTenant(ctx, []PushedFile{{"bad.js", "module.exports = {\n  name: 'bad',\n  patterns: [/x/],\n  handler: async () => { return 'x' \n};\n"}})
	if err == nil || !strings.Contains(err.Error(), "Line 5") {
		t.Errorf("a syntax error's line: %v", err)
	}
	sks, err := e.sk.CheckTenant(ctx, []PushedFile{{"ok.js", skillJS("ok", "^ok$", "ok")}, {"flows/f.yaml", "not js"}})
	if err != nil || len(sks) != 1 || sks[0].Name != "ok" {
		t.Fatalf("a good push: %v %+v", err, sks)
	}
	// Checked sets are not left in the worker.
	sl := <-e.sk.slots
	n := len(sl.sets)
	e.sk.slots <- sl
	if n != 0 {
		t.Errorf("%d sets left in the worker", n)
	}
}

// Edge: a workspace with no JavaScript and no tenant with pushed files
// opens nothing (no worker); once a tenant has some, a pool opens that
// starts no worker before a turn needs one.
func TestPoolOnlyForTenants(t *testing.T) {
	files, _ := newFiles(t)
	dir := writeSkills(t, nil)
	sk, err := Open(Config{Dir: dir, Worker: buildWorker(t), Tenants: files})
	if err != nil || sk != nil {
		t.Fatalf("no skills, no tenant's: %v %v", sk, err)
	}
	files.Apply("acme", Change{Put: []PushedFile{{"a.js", skillJS("a", "^a$", "A")}}}, nil)
	sk, err = Open(Config{Dir: dir, Worker: buildWorker(t), Tenants: files})
	if err != nil || sk == nil || sk.Idle() {
		t.Fatalf("a tenant's skills: %v %v", sk, err)
	}
	defer sk.Close()
	for range cap(sk.slots) {
		sl := <-sk.slots
		defer func() { sk.slots <- sl }()
		if sl.w != nil {
			t.Fatal("a worker started before a turn")
		}
	}
}

// A tenant's skills that export tool: are offered to its turns (before a
// workspace tool of the same name) and run in its set; another tenant is
// offered the workspace's only.
func TestTenantTools(t *testing.T) {
	files, _ := newFiles(t)
	tool := func(name, reply string) string {
		return fmt.Sprintf("module.exports = {name: %q, tool: {description: 'd', name: %q}, handler: async () => %q};\n", name+"-skill", name, reply)
	}
	e := startWith(t, map[string]string{"ws.js": tool("lookup", "workspace lookup"), "w2.js": tool("clock", "noon")},
		Config{Deadline: 10 * time.Second, Workers: 1, Tenants: files})
	files.Apply("acme", Change{Put: []PushedFile{{"t.js", tool("lookup", "acme lookup")}}}, nil)
	ctx := context.Background()
	names := func(space string) (string, Toolbox) {
		ts, err := e.sk.tenantSkills(ctx, space)
		if err != nil {
			t.Fatal(err)
		}
		var box Toolbox = e.sk
		if ts != nil && len(ts.l.tools) > 0 {
			box = tenantTools{e.sk, ts}
		}
		var out []string
		for _, x := range box.ServerTools(nil) {
			out = append(out, x.Name)
		}
		return strings.Join(out, ","), box
	}
	got, acme := names("acme")
	if got != "lookup,clock" {
		t.Fatalf("acme is offered %s", got)
	}
	if got, _ := names("other"); got != "clock,lookup" {
		t.Fatalf("other is offered %s", got)
	}
	turn := &moltbot.Turn{Tenant: "acme", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}}
	if out, _, err := acme.CallTool(ctx, turn, "lookup", `{}`); err != nil || out != "acme lookup" {
		t.Fatalf("acme's lookup: %q %v", out, err)
	}
	if out, _, err := acme.CallTool(ctx, turn, "clock", `{}`); err != nil || out != "noon" {
		t.Fatalf("the workspace's clock for acme: %q %v", out, err)
	}
	other := &moltbot.Turn{Tenant: "other", Messages: turn.Messages}
	if out, _, err := e.sk.CallTool(ctx, other, "lookup", `{}`); err != nil || out != "workspace lookup" {
		t.Fatalf("other's lookup: %q %v", out, err)
	}
	if got := (tenantTools{e.sk, &tenantSet{l: &loaded{}}}).ServerTools(&moltbot.Bot{Name: "b", Skills: []string{"clock-skill"}}); len(got) != 1 || got[0].Name != "clock" {
		t.Fatalf("a bot's tools: %+v", got)
	}
}

// A tenant's pushed skills' runs are counted under one label: their
// names are the tenants' to choose.
func TestTenantSkillMetricsLabel(t *testing.T) {
	files, _ := newFiles(t)
	met := metrics.New("test")
	e := startWith(t, map[string]string{"ws.js": skillJS("ws", "^ws$", "ws")}, Config{Deadline: 10 * time.Second, Workers: 1, Tenants: files, Metrics: met})
	files.Apply("acme", Change{Put: []PushedFile{{"a.js", skillJS("made-up-name", "^own$", "own")}}}, nil)
	if res, _, err := e.turnIn(t, "acme", "c", "own"); err != nil || res.Message.Content != "own" {
		t.Fatalf("%v %+v", err, res)
	}
	if met.Get(metrics.SkillRuns, PushedLabel, "ok") != 1 || met.Get(metrics.SkillRuns, "made-up-name", "ok") != 0 {
		t.Fatal("a pushed skill's run is not counted under its label")
	}
}
