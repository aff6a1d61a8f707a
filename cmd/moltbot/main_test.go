package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// The test binary doubles as the moltbot binary: with MOLTBOT_TEST_MAIN=1 it
// runs main's code on its arguments. Process tests exec it, so they test the
// real command line, signals and exit codes without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("MOLTBOT_TEST_MAIN") == "1" {
		os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	cmd     *exec.Cmd
	out     *syncBuf
	done    chan struct{}
	waitErr error
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProcIn(t, "", args...)
}

// startProcIn starts args in dir ("": the test's directory).
func startProcIn(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args[1:]...) // args[0] is "moltbot"
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MOLTBOT_TEST_MAIN=1")
	p := &proc{cmd: cmd, out: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		// The test binary is built with -race: so are the nodes it starts.
		if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in %v", args)
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.out.String())
		}
	})
	return p
}

// wait returns the exit code, failing the test after timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v", timeout)
	}
	if p.waitErr == nil {
		return 0
	}
	if ee, ok := p.waitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(p.waitErr)
	return -1
}

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(append([]string{"moltbot"}, args...), strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "node ready at "+url, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type convBody struct {
	ID       string `json:"id"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
		Model   string `json:"model"`
	} `json:"messages"`
}

func getConv(t *testing.T, url, id string) convBody {
	t.Helper()
	resp, err := http.Get(url + "/v1/conversations/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c convBody
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("get conversation: %d %s", resp.StatusCode, b)
	}
	json.NewDecoder(resp.Body).Decode(&c)
	return c
}

// writeWorkspace writes a config whose chain is Ollama then OpenAI, both
// served by one `moltbot sim` process.
func writeWorkspace(t *testing.T, simAddr string, port int) string {
	ws := t.TempDir()
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d, shutdown_timeout: 8s}
log: {level: info, format: text}
providers:
  - {name: ol, type: ollama, url: "http://%s"}
  - {name: oa, type: openai, url: "http://%s/v1"}
models:
  primary: ol/llama3.2
  fallback: [oa/gpt-4o-mini]
`, port, simAddr, simAddr)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return ws
}

func startSim(t *testing.T, extra ...string) string {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	// The sim lists the models the workspace's chain names: a node skips a
	// chain model its Ollama does not list.
	startProc(t, append([]string{"moltbot", "sim", "--addr", addr, "--models", "llama3.2,gpt-4o-mini"}, extra...)...)
	testutil.Eventually(t, 10*time.Second, "sim up", func() bool {
		resp, err := http.Get("http://" + addr + "/api/version")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return addr
}

type ack struct{ user, reply string }

// kill -9 at any moment loses no turn whose answer the client received.
func TestKill9KeepsAcknowledgedTurns(t *testing.T) {
	simAddr := startSim(t, "--ttft", "2ms", "--itl", "1ms", "--tokens", "8")
	port := testutil.FreePort(t)
	ws := writeWorkspace(t, simAddr, port)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	node := startProc(t, "moltbot", "start", "--workspace", ws)
	waitReady(t, url)

	code, body := post(t, url+"/v1/conversations", `{"system":"remember everything"}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var c convBody
	json.Unmarshal(body, &c)

	// Turns race the kill: 3 clients send turns as fast as they can, the node
	// dies mid-flight after enough acknowledgements.
	var mu sync.Mutex
	var acks []ack
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ids := []string{c.ID}
	for i := 0; i < 2; i++ {
		_, b := post(t, url+"/v1/conversations", `{}`)
		var o convBody
		json.Unmarshal(b, &o)
		ids = append(ids, o.ID)
	}
	ackBy := map[string][]ack{}
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("%s turn %d", id, i)
				code, b := post(t, url+"/v1/conversations/"+id+"/messages", `{"content":"`+msg+`"}`)
				if code != 200 {
					return // the node is gone
				}
				var tr struct {
					Message struct{ Content string } `json:"message"`
				}
				json.Unmarshal(b, &tr)
				mu.Lock()
				acks = append(acks, ack{msg, tr.Message.Content})
				ackBy[id] = append(ackBy[id], ack{msg, tr.Message.Content})
				mu.Unlock()
			}
		}()
	}
	testutil.Eventually(t, 20*time.Second, "30 acknowledged turns", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acks) >= 30
	})
	node.cmd.Process.Signal(syscall.SIGKILL)
	node.wait(t, 10*time.Second)
	close(stop)
	wg.Wait()

	startProc(t, "moltbot", "start", "--workspace", ws)
	waitReady(t, url)
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, id := range ids {
		got := getConv(t, url, id)
		// Index every user message; each acknowledged turn must be there, in
		// order, followed by exactly the reply the client saw.
		pos := map[string]int{}
		for i, m := range got.Messages {
			if m.Role == "user" {
				pos[m.Content] = i
			}
		}
		last := -1
		for _, a := range ackBy[id] {
			i, ok := pos[a.user]
			if !ok {
				t.Fatalf("%s: acknowledged turn %q lost after kill -9", id, a.user)
			}
			if i+1 >= len(got.Messages) || got.Messages[i+1].Role != "assistant" || got.Messages[i+1].Content != a.reply {
				t.Fatalf("%s: reply to %q lost or changed", id, a.user)
			}
			if i <= last {
				t.Fatalf("%s: turns out of order", id)
			}
			last = i
			total++
		}
		// No half-written assistant message: every assistant message follows a user message.
		for i, m := range got.Messages {
			if m.Role == "assistant" && (i == 0 || got.Messages[i-1].Role != "user") {
				t.Fatalf("%s: stray assistant message at %d", id, i)
			}
		}
	}
	if total < 30 {
		t.Fatalf("checked %d acknowledged turns", total)
	}
	// And the conversation goes on.
	if code, b := post(t, url+"/v1/conversations/"+c.ID+"/messages", `{"content":"still there?"}`); code != 200 {
		t.Fatalf("turn after restart: %d %s", code, b)
	}
}

// SIGTERM lets an in-flight streamed turn finish, then exits 0.
func TestSIGTERMFinishesInFlightTurn(t *testing.T) {
	simAddr := startSim(t, "--ttft", "10ms", "--itl", "20ms", "--tokens", "40")
	port := testutil.FreePort(t)
	ws := writeWorkspace(t, simAddr, port)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	node := startProc(t, "moltbot", "start", "--workspace", ws)
	waitReady(t, url)
	_, body := post(t, url+"/v1/conversations", `{}`)
	var c convBody
	json.Unmarshal(body, &c)

	resp, err := http.Post(url+"/v1/conversations/"+c.ID+"/messages", "application/json", strings.NewReader(`{"content":"long answer please","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, buf); err != nil { // the stream has begun
		t.Fatal(err)
	}
	node.cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(resp.Body)
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || strings.Contains(string(rest), `"error"`) {
		t.Fatalf("stream cut by shutdown: %q", rest)
	}
	// The process exits once the turn is done (a hang fails here), with 0.
	if code := node.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.Contains(node.out.String(), "stopped") {
		t.Errorf("no orderly stop in the log:\n%s", node.out.String())
	}
	startProc(t, "moltbot", "start", "--workspace", ws)
	waitReady(t, url)
	got := getConv(t, url, c.ID)
	if len(got.Messages) != 2 || got.Messages[1].Role != "assistant" || got.Messages[1].Model != "ol/llama3.2" {
		t.Fatalf("after graceful restart: %+v", got.Messages)
	}
}

func TestBadConfigExits(t *testing.T) {
	ws := t.TempDir()
	cases := []struct {
		name, yaml, want string
	}{
		{"undefined provider", "providers:\n  - {name: local, type: ollama, url: http://127.0.0.1:1}\nmodels:\n  primary: locl/llama3.2\n",
			`moltbot.yaml:4: models.primary: provider "locl" is not defined`},
		{"unknown key", "server:\n  hots: 1.2.3.4\nproviders: [{name: a, type: sim}]\nmodels: {primary: a/b}\n",
			`moltbot.yaml:2: server.hots: unknown key (did you mean "host"?)`},
		{"bad duration", "providers: [{name: a, type: sim}]\nmodels: {primary: a/b, threshold: {latency: soon}}\n",
			`moltbot.yaml:2: models.threshold.latency: want a duration`},
		{"unset env", "providers: [{name: a, type: openai, url: 'http://x', api_keys: ['${MOLTBOT_TEST_UNSET_KEY}']}]\nmodels: {primary: a/b}\n",
			`moltbot.yaml:1: providers[0].api_keys[0]: environment variable MOLTBOT_TEST_UNSET_KEY is not set`},
		{"yaml syntax", "server: [\n", `moltbot.yaml: `},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(tc.yaml), 0o600)
			code, _, stderr := runCLI(t, "", "start", "--workspace", ws, "--port", "0")
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(filepath.Join(ws, "data")); err == nil {
				t.Fatal("a bad config still created the data directory")
			}
		})
	}
	code, _, stderr := runCLI(t, "", "start", "--preset", "demo", "--port", "70000")
	if code != 2 || !strings.Contains(stderr, "--port") {
		t.Fatalf("bad port flag: %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "start", "--preset", "demo", "--log-level", "loud")
	if code != 2 || !strings.Contains(stderr, "log.level") {
		t.Fatalf("bad log level flag: %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "start", "--preset", "nope")
	if code != 2 || !strings.Contains(stderr, `no preset "nope"`) {
		t.Fatalf("bad preset: %d %q", code, stderr)
	}
}

func TestPortInUse(t *testing.T) {
	port := testutil.FreePort(t)
	ws1 := t.TempDir()
	first := startProc(t, "moltbot", "start", "--workspace", ws1, "--preset", "demo", "--port", fmt.Sprint(port))
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d", port))
	code, _, stderr := runCLI(t, "", "start", "--workspace", t.TempDir(), "--preset", "demo", "--port", fmt.Sprint(port))
	if code != 1 || !strings.Contains(stderr, "in use") || !strings.Contains(stderr, "--port") {
		t.Fatalf("exit %d %q", code, stderr)
	}
	// Two nodes on one data directory: the second is refused.
	code, _, stderr = runCLI(t, "", "start", "--workspace", ws1, "--preset", "demo", "--port", "0")
	if code != 1 || !strings.Contains(stderr, "in use by another moltbot") {
		t.Fatalf("shared data dir: exit %d %q", code, stderr)
	}
	first.cmd.Process.Signal(syscall.SIGINT)
	if c := first.wait(t, 10*time.Second); c != 0 {
		t.Fatalf("SIGINT exit %d", c)
	}
}

func TestInit(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "opt", "moltbot")
	code, out, stderr := runCLI(t, "", "init", "--workspace", ws)
	if code != 0 || !strings.Contains(out, "moltbot start --workspace") {
		t.Fatalf("%d %q %q", code, out, stderr)
	}
	for _, p := range []string{"moltbot.yaml", "data", "skills"} {
		if _, err := os.Stat(filepath.Join(ws, p)); err != nil {
			t.Fatal(err)
		}
	}
	text, _ := os.ReadFile(filepath.Join(ws, "moltbot.yaml"))
	if !strings.Contains(string(text), "# ") {
		t.Error("the config is not commented")
	}
	if _, err := configs.Load(filepath.Join(ws, "moltbot.yaml")); err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte("# mine\n"), 0o600)
	code, _, stderr = runCLI(t, "", "init", "--workspace", ws)
	if code != 1 || !strings.Contains(stderr, "--force") {
		t.Fatalf("overwrite without --force: %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "moltbot.yaml")); string(b) != "# mine\n" {
		t.Fatal("the existing config was changed")
	}
	if code, _, stderr = runCLI(t, "", "init", "--workspace", ws, "--force", "--preset", "demo"); code != 0 {
		t.Fatalf("--force: %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "moltbot.yaml")); !strings.Contains(string(b), "sim") {
		t.Fatal("--force did not write the demo preset")
	}
	// A workspace that lost its operator key gets a new one; the config stays.
	before, _ := os.ReadFile(filepath.Join(ws, "moltbot.yaml"))
	old, _ := os.ReadFile(filepath.Join(ws, "admin.key"))
	if err := os.Remove(filepath.Join(ws, "admin.key")); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr = runCLI(t, "", "init", "--workspace", ws); code != 0 || !strings.Contains(out, "kept") {
		t.Fatalf("init without admin.key: %d %q %q", code, out, stderr)
	}
	st, err := os.Stat(filepath.Join(ws, "admin.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key: %v %v", st, err)
	}
	if now, _ := os.ReadFile(filepath.Join(ws, "admin.key")); len(now) < 10 || string(now) == string(old) {
		t.Fatalf("no new key: %q", now)
	}
	if after, _ := os.ReadFile(filepath.Join(ws, "moltbot.yaml")); string(after) != string(before) {
		t.Fatal("the config was changed")
	}
}

// An in-process node (the Node type on port 0) driven by `chat` and `status`.
func TestChatAndStatus(t *testing.T) {
	cfg, err := configs.LoadPreset("demo")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Port = 0
	cfg.Providers[0].URL = "http://127.0.0.1:1" // no Ollama: the chain falls back to the simulator
	cfg.Providers[1].Sim.TTFT, cfg.Providers[1].Sim.ITL = 0, 0
	n := &Node{Config: cfg, Workspace: t.TempDir()}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	waitReady(t, n.URL())

	code, out, stderr := runCLI(t, "hello there\n/id\nsecond message\n/quit\n", "chat", "--url", n.URL(), "--system", "be nice")
	if code != 0 || strings.Count(out, "[simulated]") != 2 || strings.Count(stderr, "served by sim/sim") != 2 {
		t.Fatalf("chat: %d\nstdout %q\nstderr %q", code, out, stderr)
	}
	id := strings.Fields(strings.SplitN(stderr, "\n", 2)[0])[1]
	got := getConv(t, n.URL(), id)
	if len(got.Messages) != 5 || got.Messages[0].Content != "be nice" || got.Messages[3].Content != "second message" {
		t.Fatalf("conversation %+v", got.Messages)
	}
	// Resume it.
	code, out, _ = runCLI(t, "third\n", "chat", "--url", n.URL(), "--conversation", id)
	if code != 0 || !strings.Contains(out, "[simulated]") || len(getConv(t, n.URL(), id).Messages) != 7 {
		t.Fatalf("resume: %d %q", code, out)
	}
	code, _, stderr = runCLI(t, "x\n", "chat", "--url", n.URL(), "--conversation", "nope")
	if code != 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("unknown conversation: %d %q", code, stderr)
	}

	code, out, _ = runCLI(t, "", "status", "--url", n.URL())
	for _, want := range []string{": ready", "chain: local/llama3.2 -> sim/sim", "sim       sim     -                   yes", "local     ollama  http://127.0.0.1:1  no", "conversations: 1 active", "failovers"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("status exit %d", code)
	}
	code, out, _ = runCLI(t, "", "status", "--url", n.URL(), "--json")
	if code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("status --json: %d %q", code, out)
	}
	code, _, stderr = runCLI(t, "", "status", "--url", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "cannot reach") {
		t.Fatalf("status of a dead node: %d %q", code, stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, cmd := range []string{"init", "start", "sim", "chat", "status", "bench", "version"} {
		if edgeBuild && (cmd == "sim" || cmd == "bench") {
			continue // not in the edge build (edgebuild_test.go)
		}
		code, out, _ := runCLI(t, "", cmd, "--help")
		if code != 0 || !strings.Contains(out, "Example") {
			t.Errorf("%s --help: %d\n%s", cmd, code, out)
		}
	}
	code, out, _ := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "moltbot ") {
		t.Fatalf("%d %q", code, out)
	}
	if !edgeBuild {
		code, _, stderr := runCLI(t, "", "sim", "--error-rate", "2")
		if code != 2 || !strings.Contains(stderr, "--error-rate") {
			t.Fatalf("%d %q", code, stderr)
		}
	}
	code, _, stderr := runCLI(t, "", "frobnicate")
	if code == 0 {
		t.Fatalf("unknown command accepted: %q", stderr)
	}
}

// startNodeIn writes text as ws's moltbot.yaml and starts a node on it in
// process, its logs (JSON, from level up) in the buffer it returns; the
// node shuts down with the test.
func startNodeIn(t *testing.T, ws, text string, level slog.Level) (*Node, *syncBuf) {
	t.Helper()
	n, logs := startNodeUnready(t, ws, text, level)
	waitReady(t, n.URL())
	return n, logs
}

// startNodeUnready starts a node and does not wait for it to be ready (a
// node whose every model is unusable never is).
func startNodeUnready(t *testing.T, ws, text string, level slog.Level) (*Node, *syncBuf) {
	t.Helper()
	path := filepath.Join(ws, "moltbot.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n, logs
}
