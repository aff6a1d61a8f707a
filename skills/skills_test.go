package skills

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/storage"
)

// seedSkill is the seed's code-generation skill, verbatim.
const seedSkill = "module.exports = {\n" +
	"  name: 'code-assistant',\n" +
	"  patterns: [/生成(.*)代码/],\n" +
	"  handler: async (context) => {\n" +
	"    const { input } = context.matches[1];\n" +
	"    const code = await context.callModel('code-generator', {\n" +
	"      prompt: `用${input}实现该功能`\n" +
	"    });\n" +
	"    return `这是生成的代码：\\n\\`\\`\\`\\n${code}\\n\\`\\`\\``;\n" +
	"  }\n" +
	"};\n"

var (
	workerOnce sync.Once
	workerBin  string
	workerErr  error
)

// worker builds cmd/moltbot-skills once for the package's tests.
func buildWorker(t testing.TB) string {
	t.Helper()
	workerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "moltbot-skills-test")
		if err != nil {
			workerErr = err
			return
		}
		workerBin = filepath.Join(dir, WorkerName)
		out, err := buildWorkerCmd(workerBin).CombinedOutput()
		if err != nil {
			workerErr = &buildErr{string(out)}
		}
	})
	if workerErr != nil {
		t.Fatal(workerErr)
	}
	return workerBin
}

type buildErr struct{ out string }

func (e *buildErr) Error() string { return "go build cmd/moltbot-skills: " + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if workerBin != "" {
		os.RemoveAll(filepath.Dir(workerBin))
	}
	os.Exit(code)
}

// counting is the simulator with its chat calls counted.
type counting struct {
	inference.Provider
	n      atomic.Int64
	prompt atomic.Value
	model  atomic.Value
}

func (c *counting) Chat(ctx context.Context, r *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	c.n.Add(1)
	if len(r.Messages) > 0 {
		c.prompt.Store(r.Messages[len(r.Messages)-1].Content)
	}
	c.model.Store(r.Model)
	return c.Provider.Chat(ctx, r, fn)
}

type env struct {
	rt    *actors.Runtime
	model *counting
	sk    *Skills
	dir   string
}

// start opens the skills in a dir holding files, and a runtime over the
// in-process simulator with the stage before the model.
func start(t testing.TB, files map[string]string, deadline time.Duration) *env {
	t.Helper()
	return startWith(t, files, Config{Deadline: deadline})
}

// writeSkills writes files into a new skills/ directory.
func writeSkills(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "skills")
	os.Mkdir(dir, 0o700)
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startWith is start with cfg (its Dir and Worker set here): the
// simulator, provider m, serves models m (the chain) and big.
func startWith(t testing.TB, files map[string]string, cfg Config, tweak ...func(*actors.Config)) *env {
	t.Helper()
	cfg.Dir, cfg.Worker = writeSkills(t, files), buildWorker(t)
	sk, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sk == nil {
		t.Fatal("no skills")
	}
	t.Cleanup(func() { sk.Close() })
	m := &counting{Provider: sim.NewProvider("m", sim.Options{Tokens: 6, Seed: 1})}
	acfg := actors.Config{
		Providers: []actors.ProviderSpec{{Name: "m", Type: "sim", Provider: m, Models: []string{"big"}, MaxInFlight: 16, MaxQueue: 16, Timeout: 20 * time.Second}},
		Chain:     []moltbot.ModelRef{{Provider: "m", Model: "m"}},
		Store:     storage.NewMemory(), HealthInterval: time.Hour,
		Before: []actors.BeforeModel{sk},
	}
	for _, f := range tweak {
		f(&acfg)
	}
	rt, err := actors.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	if _, err := rt.Create(context.Background(), "acme", actors.CreateOptions{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	return &env{rt: rt, model: m, sk: sk, dir: cfg.Dir}
}

func (e *env) turn(t testing.TB, text string) (*actors.TurnResult, string, error) {
	t.Helper()
	return e.turnIn(t, "acme", "c1", text)
}

// turnIn runs a turn in space's conversation conv, made if need be.
func (e *env) turnIn(t testing.TB, space, conv, text string) (*actors.TurnResult, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.rt.Get(ctx, space, conv); err != nil {
		if _, err := e.rt.Create(ctx, space, actors.CreateOptions{ID: conv}); err != nil {
			t.Fatal(err)
		}
	}
	var streamed strings.Builder
	res, err := e.rt.Turn(ctx, space, conv, moltbot.TurnInput{Content: text}, func(c moltbot.Chunk) error {
		streamed.WriteString(c.Content)
		return nil
	})
	return res, streamed.String(), err
}

// The seed's skill runs verbatim: a matching message is answered by it,
// through one model call with the captured text in its prompt; another
// goes to the model.
func TestSeedSkill(t *testing.T) {
	e := start(t, map[string]string{"code-assistant.js": seedSkill}, 10*time.Second)
	if got := e.sk.Skills(); len(got) != 1 || got[0].Name != "code-assistant" || got[0].Patterns[0] != "/生成(.*)代码/" {
		t.Fatalf("%+v", got)
	}
	res, streamed, err := e.turn(t, "请帮我生成Go代码")
	if err != nil {
		t.Fatal(err)
	}
	reply := res.Message.Content
	if !strings.HasPrefix(reply, "这是生成的代码：\n```\n") || !strings.HasSuffix(reply, "\n```") || len(reply) < len("这是生成的代码：\n```\n\n```")+1 {
		t.Errorf("reply %q", reply)
	}
	if streamed != reply {
		t.Errorf("streamed %q, stored %q", streamed, reply)
	}
	if n := e.model.n.Load(); n != 1 {
		t.Errorf("%d model calls, want 1", n)
	}
	// The default mode: `const { input } = context.matches[1]` is the capture.
	if p, _ := e.model.prompt.Load().(string); p != "用Go实现该功能" {
		t.Errorf("the skill's prompt: %q", p)
	}
	if res.Completion.Served.Provider != "skill" || res.Completion.Served.Model != "code-assistant" {
		t.Errorf("served %+v", res.Completion.Served)
	}

	res, _, err = e.turn(t, "hello there")
	if err != nil {
		t.Fatal(err)
	}
	if n := e.model.n.Load(); n != 2 || res.Completion.Served.Provider != "m" {
		t.Errorf("a message no skill matches: %d model calls, served by %+v", n, res.Completion.Served)
	}
}

// A skill that loops is stopped at its deadline (the worker interrupts
// it); one that runs a backtracking regexp goja cannot interrupt gets its
// worker killed a second later. The next turn still works, each time.
func TestHostileSkills(t *testing.T) {
	e := start(t, map[string]string{
		"a-loop.js": "module.exports = {name: 'loop', patterns: [/^loop$/], handler: async (c) => { for (;;) {} }}",
		"b-regexp.js": "module.exports = {name: 'backtrack', patterns: [/^backtrack$/], handler: async (c) => " +
			"String(/^(a+)+\\1$/.test('a'.repeat(40) + 'b'))}",
		"code-assistant.js": seedSkill,
	}, 500*time.Millisecond)
	ok := func() {
		t.Helper()
		res, _, err := e.turn(t, "生成Rust代码")
		if err != nil || !strings.HasPrefix(res.Message.Content, "这是生成的代码") {
			t.Fatalf("the next turn: %v %+v", err, res)
		}
	}
	// While the loop runs, a turn no skill matches (another conversation)
	// does not wait for the worker.
	if _, err := e.rt.Create(context.Background(), "acme", actors.CreateOptions{ID: "c2"}); err != nil {
		t.Fatal(err)
	}
	other := make(chan time.Duration, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		t1 := time.Now()
		_, err := e.rt.Turn(context.Background(), "acme", "c2", moltbot.TurnInput{Content: "hello"}, nil)
		if err != nil {
			t.Error(err)
		}
		other <- time.Since(t1)
	}()
	t0 := time.Now()
	_, _, err := e.turn(t, "loop")
	if err == nil || !strings.Contains(err.Error(), "skill loop: stopped at its deadline (500ms)") {
		t.Fatalf("loop: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("the loop was stopped after %s", d)
	}
	if d := <-other; d > 300*time.Millisecond {
		t.Errorf("a turn no skill matches took %s beside a running skill", d)
	}
	ok()
	t0 = time.Now()
	_, _, err = e.turn(t, "backtrack")
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("backtrack: %v", err)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("the backtracking skill was stopped after %s", d)
	}
	ok()
}

// A pattern Go's RE2 cannot take is a load error naming file and pattern.
func TestBacktrackingPatternIsALoadError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.js"), []byte("module.exports = {name: 'bad', patterns: [/ok/, /(?<=x)y/], handler: async () => 'x'}"), 0o600)
	_, err := Open(Config{Dir: dir, Worker: buildWorker(t)})
	if err == nil || !strings.Contains(err.Error(), "skills/bad.js") || !strings.Contains(err.Error(), "/(?<=x)y/") {
		t.Fatalf("%v", err)
	}
}

// No skills/ dir, or no JS in it: no stage, no worker.
func TestNoSkills(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{filepath.Join(dir, "missing"), dir} {
		s, err := Open(Config{Dir: d, Worker: "/nonexistent"})
		if s != nil || err != nil {
			t.Fatalf("%s: %v %v", d, s, err)
		}
	}
}

// buildWorkerCmd builds the worker as make build does, without cgo: with
// it (make test's -race sets CGO_ENABLED=1) the net package's threads get
// 8 MiB pthread stacks, which count against the worker's RLIMIT_DATA.
func buildWorkerCmd(out string) *exec.Cmd {
	c := exec.Command("go", "build", "-o", out, "github.com/moltbot/moltbot/cmd/moltbot-skills")
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	return c
}
