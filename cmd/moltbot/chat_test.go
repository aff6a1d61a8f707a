package main

import (
	"log/slog"
	"strings"
	"testing"
)

// The chat's commands when input is not a terminal: /help, /? and an
// unknown command are answered by the chat and never reach the node;
// "//text" sends "/text"; /history prints the turns; /bye quits before
// the rest of the input.
func TestChatCommandsPiped(t *testing.T) {
	n, _ := startNodeIn(t, t.TempDir(), `server: {host: 127.0.0.1, port: 0}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 4}}
models: {primary: sim/sim}
`, slog.LevelWarn)
	in := "/help\n/?\n/nope\n//etc/hosts is a file\n/history\n/bye\nnever sent\n"
	code, out, stderr := runCLI(t, in, "chat", "--url", n.URL())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Count(stderr, "Commands:") != 2 || !strings.Contains(stderr, "unknown command /nope; /help lists them") {
		t.Fatalf("help or unknown command:\n%s", stderr)
	}
	if strings.Count(out, "[simulated]") != 1 || !strings.Contains(stderr, "> /etc/hosts is a file\n[simulated]") {
		t.Fatalf("//text or /history:\nstdout %q\nstderr %q", out, stderr)
	}
	id := strings.Fields(strings.SplitN(stderr, "\n", 2)[0])[1]
	got := getConv(t, n.URL(), id).Messages
	if len(got) != 2 || got[0].Content != "/etc/hosts is a file" {
		t.Fatalf("the node got %+v; want the one message", got)
	}
}
