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

// ctrlCReader: Ctrl-C (0x03) becomes an Enter that it flags, after what
// was typed before it in the same read (its own read), and what follows it
// comes next.
func TestChatCtrlCReader(t *testing.T) {
	c := &ctrlCReader{r: strings.NewReader("ab\rcd\x03ef\r")}
	var reads []string
	var flags []bool
	buf := make([]byte, 64)
	for {
		c.interrupted = false
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		reads, flags = append(reads, string(buf[:n])), append(flags, c.interrupted)
	}
	want := []string{"ab\rcd", "\r", "ef\r"}
	if strings.Join(reads, "|") != strings.Join(want, "|") || flags[0] || !flags[1] || flags[2] {
		t.Fatalf("reads %q flags %v; want %q, only the second flagged", reads, flags, want)
	}
	h := &chatHistory{skip: func() bool { return false }}
	for _, l := range []string{"a", "", "  ", "b", "b", "a"} {
		h.Add(l)
	}
	if h.Len() != 3 || h.At(0) != "a" || h.At(1) != "b" || h.At(2) != "a" {
		t.Fatalf("history %q: want a, b, a (newest first): no empty lines, none twice in a row", h.lines)
	}
}

// A message of several lines between """ and """ (Ollama's way) is one
// message with its line breaks; """one line""" is one too; the prompt
// says a message goes on ("... ").
func TestChatMultiLine(t *testing.T) {
	n, _ := startNodeIn(t, t.TempDir(), `server: {host: 127.0.0.1, port: 0}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 4}}
models: {primary: sim/sim}
`, slog.LevelWarn)
	in := "\"\"\"first line\n  second, indented\n\nlast\"\"\"\n\"\"\"all in one\"\"\"\n\"\"\"\nnever ended\n"
	code, _, stderr := runCLI(t, in, "chat", "--url", n.URL())
	if code != 0 || !strings.Contains(stderr, "... ") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	id := strings.Fields(strings.SplitN(stderr, "\n", 2)[0])[1]
	var users []string
	for _, m := range getConv(t, n.URL(), id).Messages {
		if m.Role == "user" {
			users = append(users, m.Content)
		}
	}
	if len(users) != 2 || users[0] != "first line\n  second, indented\n\nlast" || users[1] != "all in one" {
		t.Fatalf("the node got %q", users)
	}
}
