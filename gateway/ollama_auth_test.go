package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ollama/ollama/api"
	ollamaauth "github.com/ollama/ollama/auth"

	"github.com/moltbot/moltbot/auth"
)

// ollamaKey makes an ed25519 key and writes it where the ollama CLI keeps
// its own (~/.ollama/id_ed25519, in OpenSSH's format) under a new HOME,
// which the test sets: ollama's auth.Sign and api.Client (OLLAMA_AUTH=1)
// then sign with it. It returns the public key's line.
func ollamaKey(t *testing.T) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(home, ".ollama"), 0o700)
	if err := os.WriteFile(filepath.Join(home, ".ollama", "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// ollamaProof is the holder of the key ollamaKey wrote letting tenant use
// it (what ssh-keygen -Y sign makes; auth.OllamaProofCommand).
func ollamaProof(t *testing.T, tenant string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(os.Getenv("HOME"), ".ollama", "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := auth.SignOllamaProof(signer, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return proof
}

// signed sends method path (with ?ts=ts) signed over challenge, exactly as
// ollama's client signs, and returns the status and the error's message.
func signed(t *testing.T, base, method, path, challenge string, ts int64) (int, string) {
	t.Helper()
	token, err := ollamaauth.Sign(context.Background(), []byte(challenge))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, base+path+"?ts="+strconv.FormatInt(ts, 10), nil)
	req.Header.Set("Authorization", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&eb)
	return resp.StatusCode, eb.Error
}

func TestOllamaAuth(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	line := ollamaKey(t)
	u, _ := url.Parse(e.url)
	ctx := context.Background()
	cli := api.NewClient(u, http.DefaultClient)

	// The probes the CLI asks first are open.
	if err := cli.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := cli.Version(ctx); err != nil || v != ollamaAPIVersion {
		t.Fatal(v, err)
	}
	// Everything else needs a credential, and says how to send one.
	code, body, h := e.do(t, "", "GET", "/api/tags", "")
	var eb struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &eb); code != 401 || !strings.Contains(eb.Error, "Bearer") || !strings.Contains(eb.Error, "OLLAMA_AUTH=1") ||
		!strings.Contains(eb.Error, "--ollama-key") || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("%d %s %v", code, body, h)
	}
	if _, err := cli.List(ctx); !isStatus(err, 401, "") {
		t.Fatalf("unsigned: %v", err)
	}

	// A bearer key works as it does on /v1 (Open WebUI, the libraries).
	code, body, _ = e.do(t, "chatA", "POST", "/api/chat", `{"model":"moltbot","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 || !strings.Contains(body, `"done":true`) {
		t.Fatalf("bearer: %d %s", code, body)
	}

	// The CLI's signature, once an admin of a registers its key (through
	// the admin API, as moltbot keys create --ollama-key does).
	t.Setenv("OLLAMA_AUTH", "1")
	if _, err := cli.List(ctx); !isStatus(err, 401, "") {
		t.Fatalf("signed by an unknown key: %v", err)
	}
	code, body, _ = e.do(t, "adminA", "POST", "/v1/admin/keys", fmt.Sprintf(`{"name":"laptop","ollama_key":%q,"ollama_proof":%q}`, line+" me@laptop", ollamaProof(t, "a")))
	var info auth.KeyInfo
	if json.Unmarshal([]byte(body), &info); code != 201 || info.Kind != "ollama" || info.Tenant != "a" || info.Scope != "chat" ||
		info.OllamaKey != line || !strings.HasPrefix(info.Fingerprint, "SHA256:") || strings.Contains(body, `"key":`) {
		t.Fatalf("register: %d %s", code, body)
	}
	if _, err := cli.List(ctx); err != nil {
		t.Fatalf("signed: %v", err)
	}
	var text strings.Builder
	err := cli.Chat(ctx, &api.ChatRequest{Model: "moltbot", Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(r api.ChatResponse) error {
		text.WriteString(r.Message.Content)
		return nil
	})
	if err != nil || text.Len() == 0 {
		t.Fatalf("signed chat: %v", err)
	}
	if _, err := cli.Show(ctx, &api.ShowRequest{Model: "moltbot"}); err != nil {
		t.Fatal(err)
	}
	// The key lists as tenant a's; it cannot be registered twice, nor
	// rotated, nor hold the admin scope (its signature does not cover the body).
	code, body, _ = e.do(t, "adminA", "GET", "/v1/admin/keys", "")
	if code != 200 || !strings.Contains(body, `"kind":"ollama"`) || !strings.Contains(body, info.Fingerprint) {
		t.Fatalf("list: %s", body)
	}
	// Another tenant's admin cannot take the key without its holder's
	// proof for that tenant (a's proof, seen, does not do), nor without one.
	for _, proof := range []string{ollamaProof(t, "a"), ""} {
		if code, body, _ = e.do(t, "adminB", "POST", "/v1/admin/keys", fmt.Sprintf(`{"ollama_key":%q,"ollama_proof":%q}`, line, proof)); code != 400 || !strings.Contains(body, "ollama_proof") {
			t.Fatalf("squatted with proof %q: %d %s", proof, code, body)
		}
	}
	if code, body, _ = e.do(t, "adminB", "POST", "/v1/admin/keys", fmt.Sprintf(`{"ollama_key":%q,"ollama_proof":%q}`, line, ollamaProof(t, "b"))); code != 409 {
		t.Fatalf("twice: %d %s", code, body)
	}
	if code, body, _ = e.do(t, "adminA", "POST", "/v1/admin/keys/"+info.ID+"/rotate", `{}`); code != 400 || !strings.Contains(body, "Ollama public key") {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if code, body, _ = e.do(t, "op", "POST", "/v1/admin/keys", `{"scope":"admin","ollama_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}`); code != 400 || !strings.Contains(body, "chat scope") {
		t.Fatalf("admin scope: %d %s", code, body)
	}
	if code, body, _ = e.do(t, "op", "POST", "/v1/admin/keys", `{"ollama_key":"ssh-rsa AAAA"}`); code != 400 || !strings.Contains(body, "ollama_key") {
		t.Fatalf("not a key: %d %s", code, body)
	}

	// What a signature binds: method, path and time.
	now := time.Now().Unix()
	for _, tc := range []struct {
		method, path, challenge string
		ts                      int64
		code                    int
		msg                     string
	}{
		{"GET", "/api/tags", "GET,/api/tags?ts=" + strconv.FormatInt(now, 10), now, 200, ""},
		{"GET", "/api/ps", "GET,/api/tags?ts=" + strconv.FormatInt(now, 10), now, 401, "does not verify"},
		{"POST", "/api/tags", "GET,/api/tags?ts=" + strconv.FormatInt(now, 10), now, 401, "does not verify"},
		{"GET", "/api/tags", "GET,/api/tags?ts=" + strconv.FormatInt(now-1, 10), now, 401, "does not verify"},
		{"GET", "/api/tags", "GET,/api/tags?ts=" + strconv.FormatInt(now-600, 10), now - 600, 401, "at most 5m0s"},
		{"GET", "/api/tags", "GET,/api/tags?ts=" + strconv.FormatInt(now+600, 10), now + 600, 401, "at most 5m0s"},
		{"GET", "/api/tags", "GET,/api/tags?ts=" + strconv.FormatInt(now-200, 10), now - 200, 200, ""},
	} {
		if code, msg := signed(t, e.url, tc.method, tc.path, tc.challenge, tc.ts); code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s signed %q: %d %q, want %d %q", tc.method, tc.path, tc.challenge, code, msg, tc.code, tc.msg)
		}
	}
	// A signature with no ts, or a header that is neither: 401.
	req, _ := http.NewRequest("GET", e.url+"/api/tags", nil)
	token, _ := ollamaauth.Sign(ctx, []byte("GET,/api/tags?ts="+strconv.FormatInt(now, 10)))
	req.Header.Set("Authorization", token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("no ts: %v %v", resp, err)
	}
	// Revoked: the signature stops working at once.
	if code, body, _ = e.do(t, "adminA", "DELETE", "/v1/admin/keys/"+info.ID, ""); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if _, err := cli.List(ctx); !isStatus(err, 401, "") {
		t.Fatalf("revoked: %v", err)
	}
	// Once revoked, the public key may be registered again (here for b).
	if code, body, _ = e.do(t, "adminB", "POST", "/v1/admin/keys", fmt.Sprintf(`{"ollama_key":%q,"ollama_proof":%q}`, line, ollamaProof(t, "b"))); code != 201 {
		t.Fatalf("again: %d %s", code, body)
	}
	if _, err := cli.List(ctx); err != nil {
		t.Fatalf("registered again: %v", err)
	}
	// No API key secret opens an Ollama key's record.
	req, _ = http.NewRequest("GET", e.url+"/api/tags", nil)
	req.Header.Set("Authorization", "Bearer mb_"+info.ID+"_"+strings.Repeat("a", 32))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("as an API key: %v %v", resp, err)
	}
	// The failures are counted by reason.
	_, metricsText, _ := e.do(t, "op", "GET", "/metrics", "")
	for _, want := range []string{`reason="bad_signature"`, `reason="expired"`, `reason="unknown_key"`, `reason="revoked"`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
