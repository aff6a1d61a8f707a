package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

// Deadlines: a process runs at most procLimit (a backstop: each is
// stopped when its test ends); a client script or CLI call at most
// clientLimit.
const (
	procLimit   = 10 * time.Minute
	clientLimit = 2 * time.Minute
)

var (
	binDir    string // the test's temporary directory for the build
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moltbot-acceptance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moltbotBin builds cmd/moltbot once, with make build's tags and flags (so
// make build's cache serves it), and returns its path.
func moltbotBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binPath = filepath.Join(binDir, "moltbot")
		cmd := exec.Command(goTool, "build", "-trimpath", "-tags", "urfave_cli_no_docs,grpcnotrace", "-o", binPath, "./cmd/moltbot")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/moltbot: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
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

// startProc starts a long-running process (a sim, a node); when the test
// ends it gets SIGTERM, then SIGKILL after 10 s, and its output is logged
// if the test failed.
func startProc(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procLimit)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel() // SIGTERM, then SIGKILL after WaitDelay
		<-done
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out.String())
		}
	})
}

// baseEnv is what every child process gets: no proxies, no provider keys
// or client settings of the machine's, a HOME of its own.
func baseEnv(t *testing.T) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8"}
}

// node is a running moltbot node with a sim behind it.
type node struct {
	url string // http://127.0.0.1:PORT
	key string // a chat key of the default tenant
	ws  string // its workspace (admin.key, moltbot.yaml)
	sim string // the sim's address
	bin string
}

// chain names the models a node serves: its chat chain and its
// embedding model, each provider/model of the sim's providers (ol: its
// Ollama API, oa: its OpenAI API, an: its Anthropic API).
type chain struct {
	primary, fallback, embed string
}

// startNode starts a sim and a node with auth on whose providers are the
// sim's three APIs, and makes a chat key.
func startNode(t *testing.T, c chain) *node {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a sim and a node, and runs a client")
	}
	bin := moltbotBin(t)
	simAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	startProc(t, baseEnv(t), bin, "sim", "--addr", simAddr, "--ttft", "1ms", "--itl", "1ms",
		"--models", "llama3.2,gpt-4o-mini", "--embed-models", "nomic-embed-text")
	testutil.Eventually(t, 15*time.Second, "sim up", func() bool {
		resp, err := http.Get("http://" + simAddr + "/api/version")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

	ws := t.TempDir()
	run(t, bin, "init", "--workspace", ws)
	port := testutil.FreePort(t)
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d, shutdown_timeout: 5s}
log: {level: info, format: text}
auth: {enabled: true}
providers:
  - {name: ol, type: ollama, url: "http://%[2]s"}
  - {name: oa, type: openai, url: "http://%[2]s/v1"}
  - {name: an, type: anthropic, url: "http://%[2]s", api_keys: [sk-sim], models: [claude-sim]}
models:
  primary: %[3]s
  fallback: [%[4]s]
  embeddings: {primary: %[5]s}
`, port, simAddr, c.primary, c.fallback, c.embed)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &node{url: fmt.Sprintf("http://127.0.0.1:%d", port), ws: ws, sim: simAddr, bin: bin}
	startProc(t, baseEnv(t), bin, "start", "--workspace", ws)
	testutil.Eventually(t, 30*time.Second, "node ready at "+n.url, func() bool {
		resp, err := http.Get(n.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	n.key = strings.TrimSpace(run(t, bin, "keys", "create", "--workspace", ws, "--name", "acceptance"))
	if !strings.HasPrefix(n.key, "mb_") {
		t.Fatalf("keys create printed %q", n.key)
	}
	return n
}

// run runs a moltbot command to its end and returns its stdout.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = baseEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("moltbot %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// do sends a request to the node with the key and returns the status and
// body.
func (n *node) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, n.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.key)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: clientLimit}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const jsDir = "js"

// needNode skips the test unless Node 20+ and js/'s packages, as the
// lock pins them, are installed.
func needNode(t *testing.T) {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH: the npm client tests need Node 20 or later (make test installs their packages with npm ci)")
	}
	out, err := exec.Command(nodeBin, "--version").Output()
	if err != nil {
		t.Skipf("node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if major, _ := strconv.Atoi(strings.Split(v, ".")[0]); major < 20 {
		t.Skipf("node %s: the npm client tests need Node 20 or later", v)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(jsDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"openai", "@anthropic-ai/sdk", "ollama"} {
		want := lock.Packages["node_modules/"+pkg].Version
		b, err := os.ReadFile(filepath.Join(jsDir, "node_modules", pkg, "package.json"))
		if errors.Is(err, os.ErrNotExist) {
			t.Skipf("npm package %s is not installed in test/acceptance/js: run make acceptance-deps (npm ci there)", pkg)
		}
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Version string `json:"version"`
		}
		json.Unmarshal(b, &got)
		if got.Version != want {
			t.Fatalf("npm package %s is %s in test/acceptance/js/node_modules, the lock says %s: run make acceptance-deps", pkg, got.Version, want)
		}
	}
}

// runScript runs js/<script> against n and returns its cases by name.
func runScript(t *testing.T, n *node, script string, env ...string) map[string]json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = jsDir
	cmd.Env = append(baseEnv(t), append([]string{"MOLTBOT_URL=" + n.url, "MOLTBOT_API_KEY=" + n.key}, env...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v (deadline %v)\nstdout: %s\nstderr: %s", script, err, clientLimit, stdout.String(), stderr.String())
	}
	var cases map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &cases); err != nil {
		t.Fatalf("node %s printed no JSON object: %v\nstdout: %s\nstderr: %s", script, err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("node %s stderr:\n%s", script, stderr.String())
	}
	return cases
}

// result decodes case name of a script's output into T, failing the test
// when the case is missing or threw.
func result[T any](t *testing.T, cases map[string]json.RawMessage, name string) T {
	t.Helper()
	var v T
	raw, ok := cases[name]
	if !ok {
		t.Fatalf("case %s: not in the script's output", name)
	}
	var thrown struct {
		Error  *string `json:"error"`
		Name   string  `json:"name"`
		Status any     `json:"status"`
	}
	if json.Unmarshal(raw, &thrown) == nil && thrown.Error != nil {
		t.Fatalf("case %s threw %s (status %v): %s", name, thrown.Name, thrown.Status, *thrown.Error)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("case %s: %v in %s", name, err, raw)
	}
	return v
}

// Checks shared by the clients' tests.

const (
	simLabel   = "[simulated]"
	toolResult = `{"temperature_c":21}`
	// The sim answers a tool's result by quoting it after the tool's name.
	quotedResult = `get_weather returned ` + toolResult
	// The sim mentions the images it was shown (js/common.mjs's PNG).
	sawImage = "I see 1 image(s)"
)

// checkWeatherArgs checks a get_weather call's arguments: a JSON object
// with the required string city (the sim makes them from the schema).
func checkWeatherArgs(t *testing.T, args map[string]any) {
	t.Helper()
	if city, ok := args["city"].(string); !ok || city == "" {
		t.Errorf("get_weather arguments %v: want a string city", args)
	}
}

// checkPerson checks a reply held to js/common.mjs's PERSON_SCHEMA.
func checkPerson(t *testing.T, text string) {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		t.Fatalf("reply %q is not JSON: %v", text, err)
	}
	name, ok1 := p["name"].(string)
	age, ok2 := p["age"].(float64)
	if !ok1 || !ok2 || name == "" || age != float64(int64(age)) || len(p) != 2 {
		t.Errorf("reply %s does not hold to the schema (name string, age integer, nothing else)", text)
	}
}

// checkVectors checks embeddings of two different inputs: the same
// length, unit length each (the sim's and Ollama's are), not equal.
func checkVectors(t *testing.T, vecs [][]float64) {
	t.Helper()
	if len(vecs) != 2 {
		t.Fatalf("%d vectors, want 2", len(vecs))
	}
	for i, v := range vecs {
		if len(v) == 0 || len(v) != len(vecs[0]) {
			t.Fatalf("vector %d has %d dimensions, vector 0 %d", i, len(v), len(vecs[0]))
		}
		var sum float64
		for _, x := range v {
			sum += x * x
		}
		if sum < 0.999 || sum > 1.001 {
			t.Errorf("vector %d: squared norm %v, want 1", i, sum)
		}
	}
	same := true
	for j := range vecs[0] {
		same = same && vecs[0][j] == vecs[1][j]
	}
	if same {
		t.Error("two different inputs have the same vector")
	}
}
