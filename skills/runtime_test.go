package skills

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/skills/wire"
	"github.com/moltbot/moltbot/storage"
)

// A callModel alias resolves through skills.models first, then the
// skill's own models: map; an alias neither maps goes to the chain.
func TestModelsMap(t *testing.T) {
	src := "module.exports = {name: 'gen', patterns: [/^gen (\\S+)$/], models: {'code-generator': 'm/big', other: 'm/m'},\n" +
		"  handler: async (c) => String(await c.callModel(c.matches[1] + '', {prompt: 'p'}))};\n"
	e := startWith(t, map[string]string{"gen.js": src}, Config{Deadline: 10 * time.Second, Models: map[string]string{"other": "big"}})
	for _, tc := range []struct{ alias, model string }{
		{"code-generator", "big"}, // the skill's map
		{"other", "big"},          // skills.models over the skill's map
		{"nobody", "m"},           // neither: the chain
		{"big", "big"},            // a model's own name
	} {
		res, _, err := e.turn(t, "gen "+tc.alias)
		if err != nil || res.Completion.Served.Provider != "skill" {
			t.Fatalf("%s: %v %+v", tc.alias, err, res)
		}
		if got, _ := e.model.model.Load().(string); got != tc.model {
			t.Errorf("callModel(%q) asked model %q, want %q", tc.alias, got, tc.model)
		}
	}
	sk, _ := e.sk.Skill("gen")
	if sk.Models["code-generator"] != "m/big" {
		t.Errorf("models %v", sk.Models)
	}
}

// A models: entry the router does not know is a load error naming the
// file, the alias and the model; so is one in skills.models.
func TestModelsMapUnknownModel(t *testing.T) {
	resolve := func(m string) error {
		if m == "m/big" {
			return nil
		}
		return fmt.Errorf("model %q not found", m)
	}
	dir := writeSkills(t, map[string]string{"gen.js": "module.exports = {name: 'gen', patterns: [/x/], models: {coder: 'ollama/qwen'}, handler: async () => 'x'};"})
	_, err := Open(Config{Dir: dir, Worker: buildWorker(t), Resolve: resolve})
	if err == nil || !strings.Contains(err.Error(), "skills/gen.js: models: coder: \"ollama/qwen\" is not a model the router knows") {
		t.Fatalf("%v", err)
	}
	_, err = Open(Config{Dir: dir, Worker: buildWorker(t), Resolve: resolve, Models: map[string]string{"coder": "m/big", "x": "nope"}})
	if err == nil || !strings.Contains(err.Error(), `skills.models: x: "nope"`) {
		t.Fatalf("%v", err)
	}
	sk, err := Open(Config{Dir: dir, Worker: buildWorker(t), Resolve: resolve, Models: map[string]string{"coder": "m/big"}})
	if err != nil {
		t.Fatalf("skills.models takes the alias: %v", err)
	}
	sk.Close()
}

// Bad exports are load errors naming the file and the key.
func TestBadExports(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"module.exports = {name: 'a', patterns: [/x/], models: {m: 3}, handler: async () => 'x'}", "skills/a.js: module.exports.models[\"m\"]: want a model's name"},
		{"module.exports = {name: 'a', patterns: [/x/], models: 'm', handler: async () => 'x'}", "skills/a.js: module.exports.models: want an object"},
		{"module.exports = {name: 'a', patterns: [/x/], limits: {model_calls: 1000}, handler: async () => 'x'}", "skills/a.js: module.exports.limits.model_calls: want a whole number from 0 to 64"},
		{"module.exports = {name: 'a', patterns: [/x/], limits: {tokens: 3}, handler: async () => 'x'}", "skills/a.js: module.exports.limits.tokens: unknown"},
		{"module.exports = {name: 'a/b', patterns: [/x/], handler: async () => 'x'}", "skills/a.js: module.exports.name \"a/b\""},
	} {
		dir := writeSkills(t, map[string]string{"a.js": tc.src})
		_, err := Open(Config{Dir: dir, Worker: buildWorker(t)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.src, err, tc.want)
		}
	}
}

// limits.model_calls bounds a run's callModel calls.
func TestModelCallsLimit(t *testing.T) {
	e := start(t, map[string]string{"two.js": "module.exports = {name: 'two', patterns: [/^two$/], limits: {model_calls: 1},\n" +
		"  handler: async (c) => { await c.callModel('m', {prompt: 'a'}); await c.callModel('m', {prompt: 'b'}); return 'both' }};"}, 10*time.Second)
	_, _, err := e.turn(t, "two")
	if err == nil || !strings.Contains(err.Error(), "callModel: at most 1 calls a run (limits.model_calls)") {
		t.Fatalf("%v", err)
	}
	if n := e.model.n.Load(); n != 1 {
		t.Errorf("%d model calls", n)
	}
	if sk, _ := e.sk.Skill("two"); sk.ModelCallLimit() != 1 {
		t.Errorf("limit %d", sk.ModelCallLimit())
	}
}

// With two workers a skill that loops does not hold up another skill's
// run: the second finishes while the first still runs. With one, the
// second waits behind the first, and its deadline (counted from the
// turn's start) goes by: it fails as busy.
func TestWorkerPool(t *testing.T) {
	files := map[string]string{
		"loop.js": "module.exports = {name: 'loop', patterns: [/^loop$/], handler: async () => { for (;;) {} }};",
		"hi.js":   "module.exports = {name: 'hi', patterns: [/^hi$/], handler: async () => 'hello'};",
	}
	for _, workers := range []int{2, 1} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			met := metrics.New("test")
			e := startWith(t, files, Config{Deadline: 2 * time.Second, Workers: workers, Metrics: met})
			loopDone := make(chan error, 1)
			go func() {
				_, _, err := e.turnIn(t, "acme", "loop", "loop")
				loopDone <- err
			}()
			// Wait until the loop holds a worker.
			for deadline := time.Now().Add(10 * time.Second); len(e.sk.slots) == workers; {
				if time.Now().After(deadline) {
					t.Fatal("the loop never started")
				}
				time.Sleep(5 * time.Millisecond)
			}
			res, _, err := e.turnIn(t, "acme", "hi", "hi")
			if workers == 1 {
				// Its deadline went by waiting for the worker.
				if err == nil || !strings.Contains(err.Error(), "skill hi: all 1 workers stayed busy until its deadline (2s)") {
					t.Fatalf("hi behind the loop: %v %+v", err, res)
				}
				if met.Get(metrics.SkillRuns, "hi", "busy") != 1 {
					t.Error("not counted busy")
				}
			} else {
				if err != nil || res.Message.Content != "hello" {
					t.Fatalf("hi: %v %+v", err, res)
				}
				select {
				case err := <-loopDone:
					t.Fatalf("the loop ended (%v) before a run beside it", err)
				default:
				}
				if met.Get(metrics.SkillRuns, "hi", "ok") != 1 {
					t.Error("not counted ok")
				}
			}
			if err := <-loopDone; err == nil || !strings.Contains(err.Error(), "skill loop: stopped at its deadline (2s)") {
				t.Fatalf("loop: %v", err)
			}
			if met.Get(metrics.SkillRuns, "loop", "deadline") != 1 {
				t.Errorf("metrics: loop deadline %d", met.Get(metrics.SkillRuns, "loop", "deadline"))
			}
		})
	}
}

// A skill that allocates without bound kills its worker at the memory
// budget, well before its deadline; the run fails naming the skill and
// the budget, and the next turn is served by a new worker.
func TestMemoryBudget(t *testing.T) {
	met := metrics.New("test")
	e := startWith(t, map[string]string{
		"hog.js": "module.exports = {name: 'hog', patterns: [/^hog$/], handler: async () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)) }};",
		"hi.js":  "module.exports = {name: 'hi', patterns: [/^hi$/], handler: async () => 'hello'};",
	}, Config{Deadline: 60 * time.Second, Memory: 64 << 20, Workers: 1, Metrics: met})
	_, _, err := e.turn(t, "hog")
	if err == nil || !strings.Contains(err.Error(), "skills: skill hog exceeded its memory budget (64 MiB); its worker was replaced") {
		t.Fatalf("hog: %v", err)
	}
	if met.Get(metrics.SkillRuns, "hog", "memory") != 1 {
		t.Error("not counted as memory")
	}
	res, _, err := e.turn(t, "hi")
	if err != nil || res.Message.Content != "hello" {
		t.Fatalf("after the hog: %v %+v", err, res)
	}
	res, _, err = e.turn(t, "a message for the model")
	if err != nil || res.Completion.Served.Provider != "m" {
		t.Fatalf("the model after the hog: %v %+v", err, res)
	}
}

// context.kv keeps a skill's records per tenant across runs (and
// workers); values and keys are bounded with errors naming them.
func TestKV(t *testing.T) {
	store := storageKV()
	e := startWith(t, map[string]string{
		"count.js": "module.exports = {name: 'count', patterns: [/^count$/], handler: async (c) => {\n" +
			"  const n = Number((await c.kv.get('n')) ?? 0) + 1; await c.kv.set('n', String(n)); return 'visit ' + n }};",
		"forget.js": "module.exports = {name: 'forget', patterns: [/^forget$/], handler: async (c) => String(await c.kv.delete('n')) + ' ' + String(await c.kv.get('n'))};",
		"big.js":    "module.exports = {name: 'big', patterns: [/^big$/], handler: async (c) => { await c.kv.set('k', 'x'.repeat(5000)); return 'no' }};",
		"many.js": "module.exports = {name: 'many', patterns: [/^many (\\d+)$/], handler: async (c) => {\n" +
			"  for (let i = 0; i < 60; i++) await c.kv.set(c.matches[1] + '-' + i, 'v'); return 'ok' }};",
	}, Config{Deadline: 10 * time.Second, KV: store})
	for i, want := range []string{"visit 1", "visit 2"} {
		res, _, err := e.turn(t, "count")
		if err != nil || res.Message.Content != want {
			t.Fatalf("count %d: %v %+v", i, err, res)
		}
	}
	if res, _, err := e.turnIn(t, "other", "c1", "count"); err != nil || res.Message.Content != "visit 1" {
		t.Fatalf("another tenant: %v %+v", err, res)
	}
	// The count skill's records are its own: forget (another skill) finds none.
	if res, _, err := e.turn(t, "forget"); err != nil || res.Message.Content != "false undefined" {
		t.Fatalf("forget: %v %+v", err, res)
	}
	if _, _, err := e.turn(t, "big"); err == nil || !strings.Contains(err.Error(), `kv.set("k"): the value is 5000 bytes; at most 4096`) {
		t.Fatalf("big: %v", err)
	}
	for i := range 4 {
		if _, _, err := e.turn(t, fmt.Sprint("many ", i)); err != nil {
			t.Fatalf("many %d: %v", i, err)
		}
	}
	if _, _, err := e.turn(t, "many 4"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("skill many holds %d keys for this tenant", wire.MaxKeys)) {
		t.Fatalf("many 4: %v", err)
	}
	// A restart (a new Skills over the same store) keeps the records.
	e.sk.Close()
	e2 := startWith(t, map[string]string{"count.js": "module.exports = {name: 'count', patterns: [/^count$/], handler: async (c) => 'n=' + (await c.kv.get('n'))};"},
		Config{Deadline: 10 * time.Second, KV: store})
	if res, _, err := e2.turn(t, "count"); err != nil || res.Message.Content != "n=2" {
		t.Fatalf("after a restart: %v %+v", err, res)
	}
}

// parseLine takes only lines within wire's bounds, and never panics.
func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"id":1,"call":{"seq":1,"kind":"model","alias":"m","prompt":"p"}}`))
	f.Add([]byte(`{"id":1,"call":{"seq":1,"kind":"kv.set","key":"k","value":"v"}}`))
	f.Add([]byte(`{"id":1,"skills":[{"name":"a","file":"a.js","patterns":["/x/"],"re2":["x"],"models":{"a":"m/m"},"model_calls":3}]}`))
	f.Add([]byte(`{"id":1,"done":true,"reply":"x"}`))
	f.Add([]byte(`{"id":1,"call":{"seq":2,"kind":"embed","texts":["a","b"]}}`))
	f.Add([]byte(`{"id":1,"call":{"seq":1,"kind":"kv.get","key":"\u0000"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseLine(b)
		if err != nil {
			return
		}
		if c := r.Call; c != nil {
			switch c.Kind {
			case "", wire.CallModel:
				if c.Alias == "" || len(c.Alias) > wire.MaxModel {
					t.Fatalf("alias %q", c.Alias)
				}
			case wire.CallEmbed:
				if len(c.Texts) == 0 || len(c.Texts) > wire.MaxEmbedTexts {
					t.Fatalf("embed %d texts", len(c.Texts))
				}
			default:
				if !validKey(c.Key) || len(c.Value) > wire.MaxValue {
					t.Fatalf("kv %+v", c)
				}
			}
		}
		for _, sk := range r.Skills {
			if !validName(sk.Name) || len(sk.Models) > wire.MaxModels || sk.ModelCalls > wire.MaxModelCalls || len(sk.RE2) != len(sk.Patterns) {
				t.Fatalf("skill %+v", sk)
			}
		}
	})
}

func TestParseLineRefuses(t *testing.T) {
	for _, line := range []string{
		`{"id":1,"call":{"seq":1,"kind":"shell","alias":"m"}}`,
		`{"id":1,"call":{"seq":1,"kind":"kv.set","key":"","value":"v"}}`,
		`{"id":1,"call":{"seq":1,"kind":"kv.set","key":"k","value":"` + strings.Repeat("v", wire.MaxValue+1) + `"}}`,
		`{"id":1,"call":{"seq":1,"kind":"model","alias":""}}`,
		`{"id":1,"call":{"seq":1,"kind":"embed","texts":[]}}`,
		`{"id":1,"call":{"seq":1,"kind":"embed","texts":[""]}}`,
		`{"id":1,"call":{"seq":1,"kind":"embed","texts":["` + strings.Repeat("t", wire.MaxEmbedText+1) + `"]}}`,
		`{"id":1,"skills":[{"name":"a/b","patterns":["x"],"re2":["x"]}]}`,
		`{"id":1,"skills":[{"name":"a","patterns":["x"],"re2":["x"],"model_calls":65}]}`,
		`{"id":1,"skills":[{"name":"a","patterns":[],"re2":[]}]}`,
		`not json`,
	} {
		if _, err := parseLine([]byte(line)); err == nil {
			t.Errorf("took %.80s", line)
		}
	}
}

// storageKV is the skills namespace of a store in memory.
func storageKV() KV { return storage.NewMemory().Namespace(storage.Skills) }

// The Go runtime writes its crash report in pieces: an out-of-memory is
// seen however they come, and only the report's first line is logged.
func TestLogWriterCrash(t *testing.T) {
	for _, pieces := range [][]string{
		{"fatal error: runtime: out of memory\n\ngoroutine 1 [running]:\n"},
		{"fatal error: ", "runtime: out of memory", "\n", "goroutine 1 [running]:\n"},
		{"runtime: out of memory: cannot allocate 4194304-byte block (67108864 in use)\n", "fatal error: out of memory\n"},
	} {
		var logs strings.Builder
		l := &logWriter{log: slog.New(slog.NewTextHandler(&logs, nil))}
		for _, p := range pieces {
			l.Write([]byte(p))
		}
		if !l.oom.Load() || strings.Contains(logs.String(), "goroutine 1") || strings.Count(logs.String(), "\n") != 1 {
			t.Errorf("%q: oom %v, logs %q", pieces, l.oom.Load(), logs.String())
		}
	}
	l := &logWriter{log: slog.New(slog.DiscardHandler)}
	l.Write([]byte("fatal error: concurrent map writes\n"))
	if l.oom.Load() {
		t.Error("a crash that is not out of memory")
	}
}

// context.embed gives one vector a text through the turn's embedding
// chain; a node without one fails the run saying so.
func TestEmbed(t *testing.T) {
	files := map[string]string{"vec.js": "module.exports = {name: 'vec', patterns: [/^vec$/], handler: async (c) => {\n" +
		"  const v = await c.embed(['a cat', '一只猫']); const w = await c.embed('a cat');\n" +
		"  return [v.length, v[0].length, typeof v[0][0], v[0].every((x, i) => x === w[0][i])].join(',') }};"}
	e := startWith(t, files, Config{Deadline: 10 * time.Second}, func(c *actors.Config) {
		c.Providers = append(c.Providers, actors.ProviderSpec{Name: "e", Type: "sim", Provider: sim.NewProvider("e", sim.Options{Seed: 1}),
			MaxInFlight: 4, MaxQueue: 4, Timeout: 10 * time.Second})
		c.Embeddings = actors.EmbedChain{Models: []moltbot.ModelRef{{Provider: "e", Model: "embed"}}}
	})
	res, _, err := e.turn(t, "vec")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(res.Message.Content, ",")
	if len(parts) != 4 || parts[0] != "2" || parts[1] == "0" || parts[2] != "number" || parts[3] != "true" {
		t.Fatalf("reply %q", res.Message.Content)
	}
	e = start(t, files, 10*time.Second)
	if _, _, err := e.turn(t, "vec"); err == nil || !strings.Contains(err.Error(), "context.embed: this node has no embedding chain (models.embeddings)") {
		t.Fatalf("no chain: %v", err)
	}
}

// A model slower than the skill's deadline does not hold the run past
// it: the model call is given up with the run, which fails.
func TestSlowModelEndsWithTheRun(t *testing.T) {
	e := startWith(t, map[string]string{"slow.js": "module.exports = {name: 'slow', patterns: [/^slow$/], handler: async (c) => String(await c.callModel('s/slow', {prompt: 'x'}))};"},
		Config{Deadline: 300 * time.Millisecond}, func(c *actors.Config) {
			c.Providers = append(c.Providers, actors.ProviderSpec{Name: "s", Type: "sim", Provider: sim.NewProvider("s", sim.Options{TTFT: time.Minute}),
				Models: []string{"slow"}, MaxInFlight: 4, MaxQueue: 4, Timeout: 2 * time.Minute})
		})
	_, _, err := e.turn(t, "slow")
	if err == nil || !strings.Contains(err.Error(), "skill slow: ") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("%v", err)
	}
	if res, _, err := e.turn(t, "hello"); err != nil || res.Completion.Served.Provider != "m" {
		t.Fatalf("after: %v", err)
	}
}

// SweepKV deletes a dead tenant's records, its key counts with them, and
// leaves the others'; dead is asked once a tenant.
func TestSweepKV(t *testing.T) {
	kv := storage.NewMemory().Namespace(storage.Skills)
	for _, k := range []string{"a:1\x00s\x00k1", "a:1\x00s\x00k2", "#a:1\x00s", "b\x00s\x00k1", "#b\x00s"} {
		kv.Put(k, []byte("v"))
	}
	asked := map[string]int{}
	n, err := SweepKV(kv, func(tenant string) bool { asked[tenant]++; return tenant == "a:1" })
	if err != nil || n != 3 {
		t.Fatalf("%d %v", n, err)
	}
	var left []string
	kv.Scan(func(k string, _ []byte) bool { left = append(left, k); return true })
	if strings.Join(left, ",") != "#b\x00s,b\x00s\x00k1" || asked["a:1"] != 1 || asked["b"] != 1 {
		t.Fatalf("left %q, asked %v", left, asked)
	}
}

// Ten hostile skills at once: each run ends with an error naming its
// skill and what stopped it (interrupted at its deadline, killed, over
// its memory budget, or no worker free in time), while another tenant's
// plain turns are all served; afterwards a skill runs again.
func TestTenHostileSkillsAtOnce(t *testing.T) {
	files := hostileSkills()
	files["hi.js"] = "module.exports = {name: 'hi', patterns: [/^hi$/], handler: async () => 'hello'};"
	e := startWith(t, files, Config{Deadline: time.Second, Memory: 64 << 20})
	errs := make(chan error, 10)
	for f := range hostileSkills() {
		skill := strings.TrimSuffix(f, ".js")
		go func() {
			_, _, err := e.turnIn(t, "evil", skill, "evil "+skill)
			if err == nil {
				err = fmt.Errorf("skill %s: no error", skill)
			} else if !strings.Contains(err.Error(), "skill "+skill) {
				err = fmt.Errorf("skill %s: an error that does not name it: %w", skill, err)
			} else {
				msg := err.Error()
				for _, why := range []string{"stopped at its deadline", "killed", "exceeded its memory budget", "workers stayed busy"} {
					if strings.Contains(msg, why) {
						err = nil
					}
				}
			}
			errs <- err
		}()
	}
	for i := range 20 {
		if res, _, err := e.turnIn(t, "quiet", "q", fmt.Sprint("hello ", i)); err != nil || res.Completion.Served.Provider != "m" {
			t.Fatalf("a plain turn beside the hostile skills: %v", err)
		}
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if res, _, err := e.turn(t, "hi"); err != nil || res.Message.Content != "hello" {
		t.Fatalf("a skill after them: %v %+v", err, res)
	}
}

// A worker started again after a kill reads skills/ as it is now, but the
// set the node loaded stays the one it matches with until a reload, and
// the difference is logged.
func TestRestartedWorkerKeepsLoadedSet(t *testing.T) {
	logs := &strings.Builder{}
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	e := startWith(t, map[string]string{
		// A backtracking regexp goja cannot interrupt: the worker is killed.
		"loop.js": "module.exports = {name: 'loop', patterns: [/^loop$/], handler: async () => String(/^(a+)+\\1$/.test('a'.repeat(40) + 'b'))};",
	}, Config{Deadline: 200 * time.Millisecond, Workers: 1, Logger: log})
	// Changed on disk, not reloaded: a new skill appears.
	if err := os.WriteFile(filepath.Join(e.dir, "new.js"), []byte("module.exports = {name: 'new', patterns: [/^new$/], handler: async () => 'new'};"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.turn(t, "loop"); err == nil {
		t.Fatal("the loop finished")
	}
	if _, _, err := e.turn(t, "loop"); err == nil { // in a worker started again
		t.Fatal("the loop finished")
	}
	if name, _ := e.sk.Match("new"); name != "" {
		t.Errorf("a skill not reloaded matched: %q", name)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "skills/ changed on disk") {
		t.Errorf("no warning:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// With skills.tenant_workers 1, one tenant's runs hold one of the two
// workers at most: while two
// runs of tenant a wait on their model calls, tenant b's skill still
// gets a worker at once (without the share, a's second run took the
// other worker and b's run waited out its deadline as busy).
func TestTenantShareOfWorkers(t *testing.T) {
	e := startWith(t, map[string]string{
		"wait.js": "module.exports = {name: 'wait', patterns: [/^wait$/], handler: async (c) => await c.callModel('m', {prompt: 'p'})};",
		"hi.js":   "module.exports = {name: 'hi', patterns: [/^hi$/], handler: async () => 'hello'};",
	}, Config{Deadline: 3 * time.Second, Workers: 2, TenantWorkers: 1})
	entered, release := make(chan struct{}, 2), make(chan struct{})
	model := func(ctx context.Context, _, _, _ string) (string, error) {
		entered <- struct{}{}
		select {
		case <-release:
			return "ok", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	ctx := context.Background()
	w := "wait"
	results := make(chan error, 2)
	run := func() {
		reply, err := e.sk.RunIn(ctx, "wait", w, []*string{&w}, Env{Tenant: "a", Model: model})
		if err == nil && reply != "ok" {
			err = fmt.Errorf("reply %q", reply)
		}
		results <- err
	}
	go run()
	<-entered // a's first run holds a worker
	go run()
	time.Sleep(200 * time.Millisecond) // room for a's second run to take the other worker, were it allowed to
	h := "hi"
	reply, err := e.sk.RunIn(ctx, "hi", h, []*string{&h}, Env{Tenant: "b"})
	if err != nil || reply != "hello" {
		t.Errorf("tenant b beside tenant a's two runs: %q %v", reply, err)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("tenant a: %v", err)
		}
	}
}
