package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/internal/testutil"
	"golang.org/x/crypto/ssh"
)

func authedGet(t *testing.T, url, key string) (int, string) {
	t.Helper()
	return authedDo(t, "GET", url, key, "")
}

// A workspace from moltbot init, auth on: the operator key in admin.key
// drives the admin commands; tenants and keys are made from the CLI; a
// tenant's key chats; rotation, revocation, reload; no secret in the logs.
func TestAuthWorkflow(t *testing.T) {
	// A provider that needs a key: an OpenAI-compatible fake checking it.
	var mu sync.Mutex
	good := "sk-first"
	var seen []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		k := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		seen = append(seen, k)
		ok := k == good
		mu.Unlock()
		if r.URL.Path == "/v1/models" {
			fmt.Fprint(w, `{"data":[{"id":"m"}]}`)
			return
		}
		if !ok {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"message":"bad key"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	defer upstream.Close()

	ws := t.TempDir()
	if code, out, errOut := runCLI(t, "", "init", "--workspace", ws); code != 0 || !strings.Contains(out, "admin.key") {
		t.Fatalf("init: %d %s %s", code, out, errOut)
	}
	st, err := os.Stat(filepath.Join(ws, "admin.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key: %v %v", st, err)
	}
	port := testutil.FreePort(t)
	writeCfg := func(keys string, tenants ...string) {
		cfg := fmt.Sprintf(`server: {host: 127.0.0.1, port: %d}
log: {level: debug, format: json}
auth: {enabled: true}
providers:
  - {name: cloud, type: openai, url: "%s/v1", api_keys: [%s]}
models: {primary: cloud/m}
tenants: [%s]
`, port, upstream.URL, keys, strings.Join(tenants, ", "))
		os.WriteFile(filepath.Join(ws, "moltbot.yaml"), []byte(cfg), 0o600)
	}
	writeCfg(`"sk-first"`)
	node := startProc(t, "moltbot", "start", "--workspace", ws)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitReady(t, url)

	if code, _ := authedGet(t, url+"/v1/models", ""); code != 401 {
		t.Fatalf("no key: %d", code)
	}
	// Admin commands find the node and the operator key from the workspace.
	if code, out, e := runCLI(t, "", "status", "--workspace", ws); code != 0 || !strings.Contains(out, "cloud") {
		t.Fatalf("status: %d %s %s", code, out, e)
	}
	if code, _, e := runCLI(t, "", "tenants", "create", "acme", "-w", ws, "--rpm", "100"); code != 0 {
		t.Fatalf("tenants create: %s", e)
	}
	code, key, e := runCLI(t, "", "keys", "create", "--workspace", ws, "--tenant", "acme", "--name", "ci")
	key = strings.TrimSpace(key)
	if code != 0 || !strings.HasPrefix(key, "mb_") || !strings.Contains(e, "shown once") {
		t.Fatalf("keys create: %d %q %s", code, key, e)
	}
	if code, out, _ := runCLI(t, "", "tenants", "list", "--workspace", ws); code != 0 || !strings.Contains(out, "acme") {
		t.Fatalf("tenants list: %s", out)
	}
	// The ollama CLI's public key, from its file, as a credential of acme.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	wire := binary.BigEndian.AppendUint32(nil, 11)
	wire = binary.BigEndian.AppendUint32(append(wire, "ssh-ed25519"...), 32)
	pubFile := filepath.Join(t.TempDir(), "id_ed25519.pub")
	os.WriteFile(pubFile, []byte("ssh-ed25519 "+base64.StdEncoding.EncodeToString(append(wire, pub...))+" me@laptop\n"), 0o600)
	// Without the holder's proof for acme, refused, saying how to make one.
	if code, _, e := runCLI(t, "", "keys", "create", "--workspace", ws, "--tenant", "acme", "--ollama-key", pubFile); code != 2 || !strings.Contains(e, "ssh-keygen -Y sign") {
		t.Fatalf("keys create --ollama-key without a proof: %d %s", code, e)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	proof, err := auth.SignOllamaProof(signer, "acme")
	if err != nil {
		t.Fatal(err)
	}
	proofFile := filepath.Join(t.TempDir(), "proof.sig")
	os.WriteFile(proofFile, []byte(proof), 0o600)
	code, okID, e := runCLI(t, "", "keys", "create", "--workspace", ws, "--tenant", "acme", "--name", "laptop", "--ollama-key", pubFile, "--ollama-proof", proofFile)
	if code != 0 || len(strings.TrimSpace(okID)) != 8 || !strings.Contains(e, "OLLAMA_AUTH=1") {
		t.Fatalf("keys create --ollama-key: %d %q %s", code, okID, e)
	}
	if _, list, _ := runCLI(t, "", "keys", "list", "--workspace", ws, "--tenant", "acme"); !strings.Contains(list, "ollama SHA256:") {
		t.Fatalf("keys list: %s", list)
	}
	if code, body := authedGet(t, url+"/api/tags", ""); code != 401 || !strings.Contains(body, "--ollama-key") {
		t.Fatalf("/api/tags without a credential: %d %s", code, body)
	}
	// Chat as acme.
	code, out, e := runCLI(t, "hi\n", "chat", "--url", url, "--api-key", key)
	if code != 0 || !strings.Contains(out, "hello") {
		t.Fatalf("chat with the key: %d %q %q", code, out, e)
	}
	code, _, e = runCLI(t, "hi\n", "chat", "--url", url)
	if code == 0 || !strings.Contains(e, "401") {
		t.Fatalf("chat without a key: %d %q", code, e)
	}
	// A chat key cannot use the admin API.
	if code, _ := authedGet(t, url+"/v1/admin/status", key); code != 403 {
		t.Fatalf("chat key on admin: %d", code)
	}
	// Rotate, then revoke the successor.
	id := strings.Split(key, "_")[1]
	code, next, _ := runCLI(t, "", "keys", "rotate", id, "--workspace", ws, "--grace", "1h")
	next = strings.TrimSpace(next)
	if code != 0 || next == key {
		t.Fatalf("rotate: %d %q", code, next)
	}
	if c, _ := authedGet(t, url+"/v1/models", key); c != 200 {
		t.Fatal("old key refused during its grace")
	}
	_, list, _ := runCLI(t, "", "keys", "list", "--workspace", ws, "--tenant", "acme")
	if !strings.Contains(list, "expiring") || strings.Contains(list, key[12:]) {
		t.Fatalf("keys list: %s", list)
	}
	if code, _, _ := runCLI(t, "", "keys", "revoke", strings.Split(next, "_")[1], "--workspace", ws); code != 0 {
		t.Fatal("revoke")
	}
	if c, _ := authedGet(t, url+"/v1/models", next); c != 401 {
		t.Fatal("revoked key works")
	}
	// The provider's key changes: edit the file, SIGHUP, no restart.
	mu.Lock()
	good = "sk-second"
	mu.Unlock()
	writeCfg(`"sk-second"`, `{id: beta, limits: {requests_per_minute: 5}}`)
	node.cmd.Process.Signal(syscall.SIGHUP)
	admin, _ := os.ReadFile(filepath.Join(ws, "admin.key"))
	opKey := strings.TrimSpace(string(admin))
	// Poll as the operator: acme's 100 requests a minute would run out.
	testutil.Eventually(t, 10*time.Second, "reloaded key used", func() bool {
		req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"x"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+opKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Logf("waiting for the reload: %d %s", resp.StatusCode, b)
		}
		return resp.StatusCode == 200
	})
	// The file's tenants came with it; the API's stayed.
	_, tl, _ := runCLI(t, "", "tenants", "list", "--workspace", ws)
	if !strings.Contains(tl, "beta") || !strings.Contains(tl, "acme") {
		t.Fatalf("tenants after the reload: %s", tl)
	}
	// moltbot keys reload does the same through the API.
	if code, out, e := runCLI(t, "", "keys", "reload", "--workspace", ws); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("keys reload: %d %s %s", code, out, e)
	}
	// Nothing secret in the node's logs: API keys, the operator key, the
	// provider's keys.
	logs := node.out.String()
	for _, secret := range []string{key, next, opKey, "sk-first", "sk-second", key[12:]} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret is in the logs: %q", secret[:6])
		}
	}
	if !strings.Contains(logs, "api key created") {
		t.Fatal("the logs were not captured")
	}
	var jwks map[string]any
	_, body := authedGet(t, url+"/.well-known/jwks.json", "")
	if json.Unmarshal([]byte(body), &jwks) != nil {
		t.Fatalf("jwks: %s", body)
	}
}

// authedDo sends method url body with key (if any) and returns the status
// and body; status 0 when the node cannot be reached.
func authedDo(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Two node processes with auth on: keys, tenants, revocations and the
// service tokens of one node hold on the other.
func TestClusterAuth(t *testing.T) {
	nodes := clusterNodes(t, 2)
	ops := make([]string, 2)
	for i, n := range nodes {
		f, _ := os.OpenFile(filepath.Join(n.ws, "moltbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprint(f, "auth: {enabled: true, token_ttl: 5m}\n")
		f.Close()
		// init keeps the config and gives the workspace its operator key.
		if code, out, e := runCLI(t, "", "init", "--workspace", n.ws); code != 0 || !strings.Contains(out, "admin.key") {
			t.Fatalf("init: %d %s %s", code, out, e)
		}
		b, _ := os.ReadFile(filepath.Join(n.ws, "admin.key"))
		ops[i] = strings.TrimSpace(string(b))
		n.start(t)
	}
	n1, n2 := nodes[0], nodes[1]
	// Each node's operator key works on the other once the nodes have met.
	testutil.Eventually(t, 20*time.Second, "operator keys replicated", func() bool {
		c1, _ := authedGet(t, n2.url+"/v1/admin/cluster", ops[0])
		c2, _ := authedGet(t, n1.url+"/v1/admin/cluster", ops[1])
		return c1 == 200 && c2 == 200
	})
	// A tenant made on node 1, a key for it made on node 2.
	if code, _, e := runCLI(t, "", "tenants", "create", "acme", "--workspace", n1.ws); code != 0 {
		t.Fatalf("tenants create: %s", e)
	}
	var key string
	testutil.Eventually(t, 10*time.Second, "the tenant reaches node 2", func() bool {
		code, out, _ := runCLI(t, "", "keys", "create", "--workspace", n2.ws, "--tenant", "acme")
		key = strings.TrimSpace(out)
		return code == 0
	})
	var conv string
	testutil.Eventually(t, 10*time.Second, "node 2's key works on node 1", func() bool {
		code, body := authedDo(t, "POST", n1.url+"/v1/conversations", key, `{"system":"acme's"}`)
		var c convBody
		json.Unmarshal([]byte(body), &c)
		conv = c.ID
		return code == 201
	})
	// The conversation is acme's wherever it is asked for, and no one else's.
	if code, body := authedDo(t, "POST", n2.url+"/v1/conversations/"+conv+"/messages", key, `{"content":"hello"}`); code != 200 {
		t.Fatalf("turn through node 2: %d %s", code, body)
	}
	if code, _ := authedGet(t, n2.url+"/v1/conversations/"+conv, ops[1]); code != 404 {
		t.Fatalf("the default tenant sees acme's conversation: %d", code)
	}
	// A service token from node 2 is accepted by node 1, whose JWKS lists
	// node 2's signing key.
	id := strings.Split(key, "_")[1]
	req, _ := http.NewRequest("POST", n2.url+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	testutil.Eventually(t, 10*time.Second, "node 2's token accepted by node 1", func() bool {
		code, _ := authedGet(t, n1.url+"/v1/conversations/"+conv, tok.AccessToken)
		return code == 200
	})
	_, jwks1 := authedGet(t, n1.url+"/.well-known/jwks.json", "")
	_, jwks2 := authedGet(t, n2.url+"/.well-known/jwks.json", "")
	var j2 struct{ Keys []struct{ Kid string } }
	json.Unmarshal([]byte(jwks2), &j2)
	if len(j2.Keys) == 0 || !strings.Contains(jwks1, j2.Keys[0].Kid) {
		t.Fatalf("node 1's JWKS lacks node 2's key:\n%s\n%s", jwks1, jwks2)
	}
	// Revoked on node 1: refused by node 2, the key and its token.
	if code, _, e := runCLI(t, "", "keys", "revoke", id, "--workspace", n1.ws); code != 0 {
		t.Fatalf("revoke: %s", e)
	}
	testutil.Eventually(t, 10*time.Second, "the revocation reaches node 2", func() bool {
		c1, _ := authedGet(t, n2.url+"/v1/models", key)
		c2, _ := authedGet(t, n2.url+"/v1/models", tok.AccessToken)
		return c1 == 401 && c2 == 401
	})
	// Deleted on node 2: gone from node 1.
	if code, _, e := runCLI(t, "", "tenants", "delete", "acme", "--workspace", n2.ws); code != 0 {
		t.Fatalf("tenants delete: %s", e)
	}
	testutil.Eventually(t, 10*time.Second, "the deletion reaches node 1", func() bool {
		_, out, _ := runCLI(t, "", "tenants", "list", "--workspace", n1.ws)
		return strings.Contains(out, "default") && !strings.Contains(out, "acme")
	})
	// Made again on node 1: a new tenant. Its key, on either node, finds
	// nothing of the old acme's (issue #10, finding 4).
	if code, _, e := runCLI(t, "", "tenants", "create", "acme", "--workspace", n1.ws); code != 0 {
		t.Fatalf("tenants create again: %s", e)
	}
	var key2 string
	testutil.Eventually(t, 10*time.Second, "the new tenant reaches node 2", func() bool {
		code, out, _ := runCLI(t, "", "keys", "create", "--workspace", n2.ws, "--tenant", "acme")
		key2 = strings.TrimSpace(out)
		return code == 0
	})
	for _, n := range nodes {
		testutil.Eventually(t, 10*time.Second, "the new key works on "+n.url, func() bool {
			code, _ := authedGet(t, n.url+"/v1/models", key2)
			return code == 200
		})
		if code, body := authedGet(t, n.url+"/v1/conversations/"+conv, key2); code != 404 || strings.Contains(body, "acme's") {
			t.Fatalf("the new acme reads the old one's conversation on %s: %d %s", n.url, code, body)
		}
	}
}
