package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/internal/testutil"
)

// The README's quick tour, every command in order, as written: a node as
// `make run` starts it (the demo preset), curl's requests, the terminal
// chat, status, and the simulator standing in for Ollama. Only the ports
// change (free ones for 3000 and 11434), `./bin/moltbot` is this test's
// binary, the `c_...` placeholder is the id the create answered, and the
// client commands find the node through $MOLTBOT_URL (as a user on
// another port would). A line the test does not know fails it: a change
// of the tour must come with its test.
func TestQuickTourREADME(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	var lines []string
	for _, l := range readmeBlock(t, "## Quick tour") { // a line ending in \ goes on in the next
		if n := len(lines); n > 0 && strings.HasSuffix(lines[n-1], "\\") {
			lines[n-1] = strings.TrimSuffix(lines[n-1], "\\") + " " + l
			continue
		}
		lines = append(lines, l)
	}
	port, simPort := testutil.FreePort(t), testutil.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	t.Setenv("OLLAMA_HOST", fmt.Sprintf("127.0.0.1:%d", simPort)) // the demo's Ollama, as Ollama's tools find it
	t.Setenv("MOLTBOT_URL", url)
	node := startProc(t, "moltbot", "start", "--workspace", t.TempDir(), "--preset", "demo", "--port", fmt.Sprint(port), "--log-format", "text")
	waitReady(t, url)
	_ = node
	subst := func(l string) string {
		l = strings.ReplaceAll(l, "localhost:3000", fmt.Sprintf("localhost:%d", port))
		return strings.ReplaceAll(l, "127.0.0.1:11434", fmt.Sprintf("127.0.0.1:%d", simPort))
	}
	run := func(stdin string, name string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(name, args...)
		if name == "./bin/moltbot" {
			cmd = exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), "MOLTBOT_TEST_MAIN=1")
		}
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if err != nil {
			code = -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
		return out.String(), errb.String(), code
	}
	conv := ""
	simStarted := false
	for _, l := range lines {
		l = subst(l)
		switch {
		case strings.HasPrefix(l, "curl "):
			l = strings.ReplaceAll(l, "c_...", conv)
			if strings.Contains(l, "c_...") || (strings.Contains(l, "/v1/conversations/") && conv == "") {
				t.Fatalf("a conversation command before one was created: %s", l)
			}
			out, e, code := run("", "sh", "-c", l)
			if code != 0 || strings.Contains(out, `"error"`) || out == "" {
				t.Fatalf("%s: exit %d %q %q", l, code, out, e)
			}
			if strings.HasSuffix(l, `-d '{"system":"You are terse."}'`) {
				var c struct{ ID string }
				if err := json.Unmarshal([]byte(out), &c); err != nil || !strings.HasPrefix(c.ID, "c_") {
					t.Fatalf("create: %q %v", out, err)
				}
				conv = c.ID
			}
			if strings.Contains(l, "/chat/completions") && !strings.Contains(out, "[simulated]") {
				t.Errorf("%s: no reply: %q", l, out)
			}
		case l == "./bin/moltbot chat":
			out, e, code := run("hello\n/bye\n", "./bin/moltbot", "chat")
			if code != 0 || !strings.Contains(out, "[simulated]") {
				t.Errorf("chat: %d %q %q", code, out, e)
			}
		case l == "./bin/moltbot status":
			out, e, code := run("", "./bin/moltbot", "status")
			if code != 0 || !strings.Contains(out, ": ready") || !strings.Contains(out, "chain: local/llama3.2 -> sim/sim") {
				t.Errorf("status: %d %q %q", code, out, e)
			}
		case strings.HasPrefix(l, "./bin/moltbot sim "):
			sim := startProc(t, append([]string{"moltbot"}, strings.Fields(l)[1:]...)...)
			_ = sim
			simStarted = true
			// The node's health check finds the demo's model there; the
			// chain's primary serves from then on.
			last := ""
			defer func() { t.Logf("last answer: %s", last) }()
			testutil.Eventually(t, 30*time.Second, "the demo's model served by the simulator standing in for Ollama", func() bool {
				resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"moltbot","messages":[{"role":"user","content":"hi"}]}`))
				if err != nil {
					return false
				}
				resp.Body.Close()
				last = fmt.Sprint(resp.StatusCode, " ", resp.Header)
				return resp.StatusCode == 200 && resp.Header.Get("X-Moltbot-Provider") == "local/llama3.2" && resp.Header.Get("X-Moltbot-Failovers") == "0"
			})
		default:
			t.Fatalf("the quick tour has a line this test does not know: %q", l)
		}
	}
	if conv == "" || !simStarted {
		t.Fatalf("the tour made no conversation (%q) or started no simulator (%v)", conv, simStarted)
	}
}
