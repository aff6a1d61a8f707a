package acceptance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// ollamaCLI returns the ollama binary the test runs: MOLTBOT_OLLAMA_CLI,
// else where make acceptance-ollama-cli builds it; it skips the test
// when there is none.
func ollamaCLI(t *testing.T) string {
	t.Helper()
	path := os.Getenv("MOLTBOT_OLLAMA_CLI")
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skipf("no MOLTBOT_OLLAMA_CLI and no home directory: %v", err)
		}
		path = filepath.Join(home, ".cache", "moltbot-ollama", "bin", "ollama")
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no ollama CLI at %s: make acceptance-ollama-cli builds it from its Go module (about 8 minutes cold), or set MOLTBOT_OLLAMA_CLI", path)
	}
	return path
}

// ollamaHome makes a HOME whose ~/.ollama/id_ed25519 is a new key (in
// OpenSSH's format, as the CLI keeps its own) and returns it and the
// public key's file.
func ollamaHome(t *testing.T) (home, pubFile string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	home = t.TempDir()
	dir := filepath.Join(home, ".ollama")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pubFile = filepath.Join(dir, "id_ed25519.pub")
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatal(err)
	}
	return home, pubFile
}

// The ollama CLI itself (built from its Go module) pointed at a node, auth
// on: its key registered for the tenant (moltbot keys create
// --ollama-key), requests signed (OLLAMA_AUTH=1).
func TestOllamaCLI(t *testing.T) {
	cli := ollamaCLI(t)
	n := startNode(t, ollamaChain)
	home, pub := ollamaHome(t)
	// The key's holder proves the key is meant for the tenant with the
	// command moltbot keys create --help gives (ssh-keygen -Y sign).
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("no ssh-keygen on PATH: the ollama key's proof is made with it")
	}
	sign := exec.Command("sh", "-c", "printf 'moltbot: register this ollama key for tenant default\\n' | ssh-keygen -Y sign -f ~/.ollama/id_ed25519 -n moltbot-ollama-key > proof.sig")
	sign.Dir, sign.Env = home, []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	if out, err := sign.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v %s", err, out)
	}
	run(t, n.bin, "keys", "create", "--workspace", n.ws, "--name", "ollama-cli", "--ollama-key", pub, "--ollama-proof", filepath.Join(home, "proof.sig"))

	ollama := func(t *testing.T, auth bool, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), clientLimit)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, args...)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "OLLAMA_HOST=" + strings.TrimPrefix(n.url, "http://"), "TERM=dumb"}
		if auth {
			cmd.Env = append(cmd.Env, "OLLAMA_AUTH=1")
		}
		cmd.Stdin = strings.NewReader("")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil && auth {
			t.Fatalf("ollama %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String(), err
	}

	t.Run("list", func(t *testing.T) {
		out, _ := ollama(t, true, "list")
		if !strings.Contains(out, "moltbot:latest") || !strings.Contains(out, "ol/llama3.2:latest") {
			t.Errorf("ollama list:\n%s", out)
		}
	})

	t.Run("show", func(t *testing.T) {
		out, _ := ollama(t, true, "show", "moltbot")
		for _, want := range []string{"architecture", "moltbot", "completion", "tools", "vision"} {
			if !strings.Contains(out, want) {
				t.Errorf("ollama show moltbot: no %q in\n%s", want, out)
			}
		}
	})

	t.Run("run", func(t *testing.T) {
		// What the node answers the same chat on its Ollama API.
		code, body := n.do(t, "POST", "/api/chat", `{"model":"moltbot","stream":false,"messages":[{"role":"user","content":"hello"}]}`)
		var want struct{ Message struct{ Content string } }
		if json.Unmarshal(body, &want); code != 200 || !strings.HasPrefix(want.Message.Content, simLabel) {
			t.Fatalf("/api/chat: %d %s", code, body)
		}
		out, _ := ollama(t, true, "run", "moltbot", "hello")
		if strings.TrimSpace(out) != want.Message.Content {
			t.Errorf("ollama run moltbot hello printed %q, want %q", out, want.Message.Content)
		}
		// ps lists the model that served the tenant.
		if out, _ := ollama(t, true, "ps"); !strings.Contains(out, "ol/llama3.2") {
			t.Errorf("ollama ps after a run:\n%s", out)
		}
	})

	t.Run("unsigned", func(t *testing.T) {
		if out, err := ollama(t, false, "list"); err == nil {
			t.Errorf("ollama list without OLLAMA_AUTH succeeded against a node with auth on:\n%s", out)
		}
	})
}
