//go:build unix

package main

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// authNode is an in-process node with auth on, in a workspace made by
// moltbot init; op is the operator key from admin.key.
type authNode struct {
	*Node
	ws, op string
	logs   *syncBuf
}

func startAuthNode(t *testing.T, ws string) *authNode {
	t.Helper()
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	return restartAuthNode(t, ws)
}

// restartAuthNode starts a node on an existing workspace.
func restartAuthNode(t *testing.T, ws string) *authNode {
	t.Helper()
	cfgText := `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: true}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 3}}
models: {primary: sim/sim}
`
	path := filepath.Join(ws, "moltbot.yaml")
	st, _ := os.Stat(path)
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if st != nil {
		os.Chmod(path, st.Mode().Perm()) // keep the mode the test gave it
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(logs, nil))}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	waitReady(t, n.URL())
	b, err := os.ReadFile(filepath.Join(ws, adminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return &authNode{Node: n, ws: ws, op: strings.TrimSpace(string(b)), logs: logs}
}

// cli runs a command against the node with the workspace's operator key.
func (a *authNode) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, "", append(args, "--workspace", a.ws, "--url", a.URL())...)
}

// Issue #10, finding 10: the workspace is private. Under the usual umask
// 022, init made its directories 0750 and moltbot.yaml 0640, and Pebble's
// files (conversations, token signing keys) were 0644; and a workspace left
// open by an older build is tightened at start, with a log line.
func TestWorkspaceIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	ws := filepath.Join(t.TempDir(), "ws")
	a := startAuthNode(t, ws)
	// Make data: a conversation, a token (so a signing key), a key.
	if code, body := authedDo(t, "POST", a.URL()+"/v1/conversations", a.op, `{"system":"s"}`); code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	if code, _, e := a.cli(t, "keys", "create", "--scope", "admin"); code != 0 {
		t.Fatal(e)
	}
	if code, body := authedDo(t, "GET", a.URL()+"/.well-known/jwks.json", "", ""); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	a.Shutdown(context.Background())
	if n := testutil.CheckPrivate(t, ws); n < 8 {
		t.Fatalf("only %d files checked", n)
	}
	// As an older build left it: open directories and files.
	filepath.WalkDir(ws, func(path string, d fs.DirEntry, err error) error {
		if d.IsDir() {
			os.Chmod(path, 0o755)
		} else {
			os.Chmod(path, 0o644)
		}
		return nil
	})
	b := restartAuthNode(t, ws)
	testutil.CheckPrivate(t, ws)
	logs := b.logs.String()
	for _, want := range []string{"made it private", `"path":"` + filepath.Join(ws, "moltbot.yaml"), `"path":"` + filepath.Join(ws, adminKeyFile)} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
	if bytes.Contains([]byte(logs), []byte(b.op)) {
		t.Fatal("the operator key is in the log")
	}
}

// Issue #10, finding 8, from the CLI: --grace 0s stops the old key at once;
// a second rotation of it fails naming the successor; no --grace is the
// node's default (24 h).
func TestKeysRotateGraceCLI(t *testing.T) {
	a := startAuthNode(t, t.TempDir())
	code, out, e := a.cli(t, "keys", "create", "--name", "ci")
	if code != 0 {
		t.Fatal(e)
	}
	key := strings.TrimSpace(out)
	id := strings.Split(key, "_")[1]
	code, out, e = a.cli(t, "keys", "rotate", id, "--grace", "0s")
	next := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(next, "mb_") {
		t.Fatalf("rotate: %d %s %s", code, out, e)
	}
	if c, _ := authedGet(t, a.URL()+"/v1/models", key); c != 401 {
		t.Fatalf("--grace 0s: the old key answers %d", c)
	}
	nextID := strings.Split(next, "_")[1]
	if code, _, e := a.cli(t, "keys", "rotate", id); code != 1 || !strings.Contains(e, "409") || !strings.Contains(e, nextID) {
		t.Fatalf("second rotation: %d %s", code, e)
	}
	if code, _, e := a.cli(t, "keys", "rotate", nextID, "--grace", "-1s"); code != 2 {
		t.Fatalf("negative grace: %d %s", code, e)
	}
	if code, _, e := a.cli(t, "keys", "rotate", nextID); code != 0 {
		t.Fatal(e)
	}
	if c, _ := authedGet(t, a.URL()+"/v1/models", next); c != 200 {
		t.Fatalf("no --grace: the old key answers %d at once", c)
	}
}

// Issue #10, finding 12, from the CLI: moltbot init's operator key, API
// actions and a SIGHUP reload are in `moltbot audit`; it is the operator's.
func TestAuditCommand(t *testing.T) {
	a := startAuthNode(t, t.TempDir())
	opID := strings.Split(a.op, "_")[1]
	if code, _, e := a.cli(t, "tenants", "create", "acme"); code != 0 {
		t.Fatal(e)
	}
	code, out, e := a.cli(t, "keys", "create", "--tenant", "acme", "--scope", "admin")
	if code != 0 {
		t.Fatal(e)
	}
	acmeKey := strings.TrimSpace(out)
	a.reloadOnSignal()
	code, out, e = a.cli(t, "audit")
	if code != 0 {
		t.Fatalf("audit: %d %s", code, e)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"ACTOR", "ACTION"},
		{" cli ", "key.create", "key:" + opID, "ok", "local"},
		{"default/" + opID, "tenant.create", "tenant:acme", "ok", "127.0.0.1"},
		{"default/" + opID, "key.create", "ok", "scope=admin"},
		// skills/ holds the intents moltbot init writes: its reload is audited.
		{" signal ", "skills.reload", "skills", "ok", "local", "SIGHUP"},
		{" signal ", "config.reload", "config", "ok", "local", "SIGHUP"},
	}
	if len(lines) != len(want) {
		t.Fatalf("audit:\n%s", out)
	}
	for i, w := range want {
		for _, s := range w {
			if !strings.Contains(lines[i], s) {
				t.Errorf("line %d lacks %q:\n%s", i, s, out)
			}
		}
	}
	if strings.Contains(out, acmeKey[12:]) || strings.Contains(out, a.op[12:]) {
		t.Fatal("a secret is in the audit log")
	}
	code, out, _ = a.cli(t, "audit", "--json", "--since", "1h", "--limit", "2")
	if code != 0 || !strings.Contains(out, `"more":true`) || strings.Count(out, `"action"`) != 2 {
		t.Fatalf("audit --json: %d %s", code, out)
	}
	if code, _, e := runCLI(t, "", "audit", "--url", a.URL(), "--admin-key-file", writeKey(t, acmeKey)); code != 1 || !strings.Contains(e, "403") {
		t.Fatalf("a tenant admin read the audit log: %d %s", code, e)
	}
	if code, _, _ := a.cli(t, "audit", "--since", "yesterday"); code != 2 {
		t.Fatalf("bad --since: %d", code)
	}
}

func writeKey(t *testing.T, key string) string {
	p := filepath.Join(t.TempDir(), "k")
	os.WriteFile(p, []byte(key), 0o600)
	return p
}
