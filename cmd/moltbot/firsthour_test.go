package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
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
