package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

// A word that is no command says so, names the command it is not one of
// and the command meant when one is close, and exits 2; a parent command
// alone shows its help.
func TestUnknownCommandSuggests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"strat"}, `moltbot: "strat" is not a command of moltbot; did you mean "start"? (` + "`moltbot --help`" + ` lists them)`},
		{[]string{"stat"}, `did you mean "status"?`},
		{[]string{"keys", "craete"}, `"craete" is not a command of moltbot keys; did you mean "create"?`},
		{[]string{"cluster", "ca", "innit"}, `"innit" is not a command of moltbot cluster ca; did you mean "init"?`},
		{[]string{"zzzzzz"}, `"zzzzzz" is not a command of moltbot (`},
	} {
		code, out, e := runCLI(t, "", tc.args...)
		if code != 2 || !strings.Contains(e, tc.want) || out != "" {
			t.Errorf("%v: %d %q %q, want %q", tc.args, code, out, e, tc.want)
		}
	}
	if code, out, _ := runCLI(t, "", "keys"); code != 0 || !strings.Contains(out, "COMMANDS:") {
		t.Errorf("keys alone: %d %q", code, out)
	}
	if _, _, e := runCLI(t, "", "zzzzzz"); strings.Contains(e, "did you mean") {
		t.Errorf("a word far from every command got a suggestion: %q", e)
	}
}

// --url takes host:port as curl does (http://), and refuses what is not a
// node's address, naming the flag.
func TestURLFlag(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:3000":          "http://localhost:3000",
		"127.0.0.1:3000/":         "http://127.0.0.1:3000",
		"https://mb.example:8443": "https://mb.example:8443",
		" http://[::1]:3000 ":     "http://[::1]:3000",
	} {
		if got, err := baseURL(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x", "http://", "localhost:3000?x=1", "http://a b"} {
		if _, err := baseURL(bad); err == nil || !strings.Contains(err.Error(), "--url") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	code, _, e := runCLI(t, "", "chat", "--url", "localhost:1")
	if code == 0 || !strings.Contains(e, "http://localhost:1") {
		t.Errorf("chat --url localhost:1: %d %q", code, e)
	}
}

// A request that succeeds leaves an access line at info (method, route
// but not the path, which may hold a secret, code, duration in milliseconds; the node's logger adds the
// request id); probes do not.
func TestAccessLog(t *testing.T) {
	n, logs := startNodeIn(t, t.TempDir(), `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
`, slog.LevelInfo)
	askNode(t, n, "hello")
	resp, err := http.Get(n.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(l, "healthz") {
				t.Errorf("a probe in the access log: %s", l)
			}
		}
	}
	if line["route"] != "/v1/chat/completions" || line["path"] != nil || line["code"] != float64(200) || line["method"] != "POST" {
		t.Fatalf("access line: %v\n%s", line, logs.String())
	}
	if ms, ok := line["duration_ms"].(float64); !ok || ms < 0 {
		t.Errorf("duration_ms: %v", line["duration_ms"])
	}
}

// A missing Ollama, or a model not pulled, is explained where a new user
// looks: the start log, /readyz, the chat error and `moltbot status` (its
// URL column and exit code 3) name the address and the fix.
func TestMissingOllamaExplained(t *testing.T) {
	// A fake Ollama speaking its wire: it lists one model and answers a
	// chat for another as Ollama does (404, {"error": ...}).
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/tags":
			io.WriteString(w, `{"models":[{"name":"qwen2.5:0.5b","model":"qwen2.5:0.5b","size":1}]}`)
		case "/api/chat":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"model \"llama3.2\" not found, try pulling it first"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()
	dead := fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t))
	for _, tc := range []struct {
		name, url, log, ready, chat string
	}{
		{"not pulled", fake.URL, "ollama pull llama3.2", "local/llama3.2: not on its server (ollama pull llama3.2)",
			`the Ollama at ` + fake.URL + ` does not have \"llama3.2\": run ollama pull llama3.2`},
		{"not running", dead, "start Ollama (ollama serve) so that it answers at " + dead, "local/llama3.2: unreachable at " + dead,
			"connection refused at " + dead + ": is Ollama running there? Start it (ollama serve)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, logs := startNodeUnready(t, t.TempDir(), `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
providers:
  - {name: local, type: ollama, url: "`+tc.url+`"}
models: {primary: local/llama3.2}
`, slog.LevelInfo)
			testutil.Eventually(t, 10*time.Second, "the health check's warning", func() bool { return strings.Contains(logs.String(), tc.log) })
			resp, err := http.Get(n.URL() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || !strings.Contains(string(body), tc.ready) {
				t.Errorf("readyz: %d %s, want %q", resp.StatusCode, body, tc.ready)
			}
			resp, err = http.Post(n.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"moltbot","messages":[{"role":"user","content":"hi"}]}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 4 && resp.StatusCode/100 != 5 || !strings.Contains(string(body), tc.chat) {
				t.Errorf("chat: %d %s, want %q", resp.StatusCode, body, tc.chat)
			}
			code, out, e := runCLI(t, "", "status", "--url", n.URL())
			if code != 3 || !strings.Contains(out, tc.url) || !strings.Contains(out, "URL") || !strings.Contains(e, "the node is unavailable") {
				t.Errorf("status: %d %q %q", code, out, e)
			}
		})
	}
}

// moltbot models lists what a node's providers offer; models pull asks
// the workspace's Ollama (a fake speaking /api/pull's NDJSON progress) to
// pull, prints the progress by status and every 10%, and names Ollama's
// refusal; --model on start puts a model first, naming the flag when the
// config has no such provider.
func TestModelsListPullAndStartModel(t *testing.T) {
	var pulled []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/pull":
			var req struct{ Model string }
			json.NewDecoder(r.Body).Decode(&req)
			pulled = append(pulled, req.Model)
			w.Header().Set("Content-Type", "application/x-ndjson")
			if req.Model == "nope" {
				io.WriteString(w, `{"error":"pull model manifest: file does not exist"}`+"\n")
				return
			}
			io.WriteString(w, `{"status":"pulling manifest"}`+"\n")
			for _, c := range []int{0, 100, 150, 500, 1000} {
				fmt.Fprintf(w, `{"status":"pulling abcdef012345","digest":"sha256:abcdef0123456789","total":1000,"completed":%d}`+"\n", c)
			}
			io.WriteString(w, `{"status":"success"}`+"\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(`providers:
  - {name: sim, type: sim, models: [sim]}
  - {name: local, type: ollama, url: "`+fake.URL+`"}
models: {primary: sim/sim}
`), 0o600)
	code, out, e := runCLI(t, "", "models", "pull", "--workspace", ws, "qwen2.5:0.5b")
	want := "pulling qwen2.5:0.5b into the Ollama at " + fake.URL + "\npulling manifest\n" +
		"pulling abcdef012345 0% of 1000 B\npulling abcdef012345 10% of 1000 B\n" +
		"pulling abcdef012345 50% of 1000 B\npulling abcdef012345 100% of 1000 B\nsuccess\n" +
		"qwen2.5:0.5b is ready: moltbot start --model local/qwen2.5:0.5b\n"
	if code != 0 || out != want || len(pulled) != 1 || pulled[0] != "qwen2.5:0.5b" {
		t.Errorf("pull: %d %q %q (pulled %v)", code, out, e, pulled)
	}
	if code, _, e := runCLI(t, "", "models", "pull", "--workspace", ws, "nope"); code != 1 || !strings.Contains(e, "pull model manifest: file does not exist") {
		t.Errorf("pull nope: %d %q", code, e)
	}
	if code, _, e := runCLI(t, "", "models", "pull", "--workspace", ws, "--provider", "sim", "x"); code != 2 || !strings.Contains(e, `--provider "sim"`) {
		t.Errorf("pull --provider sim: %d %q", code, e)
	}

	n, _ := startNodeIn(t, t.TempDir(), `server: {host: 127.0.0.1, port: 0}
providers:
  - {name: sim, type: sim, models: [sim, other]}
models: {primary: sim/sim}
`, slog.LevelInfo)
	code, out, e = runCLI(t, "", "models", "--url", strings.TrimPrefix(n.URL(), "http://"))
	if code != 0 || !strings.Contains(out, "MODEL") || !strings.Contains(out, "sim/other") || !strings.Contains(out, "moltbot") {
		t.Errorf("models: %d %q %q", code, out, e)
	}
	if code, _, e := runCLI(t, "", "start", "--workspace", ws, "--model", "nope/x"); code != 2 || !strings.Contains(e, `--model "nope/x" (models.primary): provider "nope" is not defined`) {
		t.Errorf("start --model nope/x: %d %q", code, e)
	}
}
