package h1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRealOllama runs the calls the ollama provider makes against a real
// Ollama server (MOLTBOT_H1_OLLAMA: its base URL, serving the model
// MOLTBOT_H1_OLLAMA_MODEL, default "tiny"; the test skips without it:
// /work/shared/tools/real-ollama/build.sh builds one): streamed and whole
// chats, the model list, a 404, a stream closed early, all on keep-alive
// connections, every reply read the way net/http reads it.
func TestRealOllama(t *testing.T) {
	base := os.Getenv("MOLTBOT_H1_OLLAMA")
	if base == "" {
		t.Skip("MOLTBOT_H1_OLLAMA is not set (a real Ollama's base URL)")
	}
	model := os.Getenv("MOLTBOT_H1_OLLAMA_MODEL")
	if model == "" {
		model = "tiny"
	}
	var dials atomic.Int32
	d := &net.Dialer{}
	tr := &Transport{Fallback: &fallback{}, Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, n, a)
	}}
	c := &http.Client{Transport: tr}
	call := func(method, path, body string) (*http.Response, []byte) {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, r)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return resp, b
	}
	for i := range 3 {
		resp, b := call("POST", "/api/chat", `{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		if resp.StatusCode != 200 || len(lines) < 2 || !bytes.Contains(lines[len(lines)-1], []byte(`"done":true`)) {
			t.Fatalf("stream %d: %s %q", i, resp.Status, b)
		}
		if len(resp.TransferEncoding) != 1 || resp.ContentLength != -1 {
			t.Fatalf("stream %d: framing %v %d", i, resp.TransferEncoding, resp.ContentLength)
		}
	}
	if resp, b := call("POST", "/api/chat", `{"model":"`+model+`","stream":false,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 || resp.ContentLength != int64(len(b)) {
		t.Fatalf("whole: %s %d %q", resp.Status, resp.ContentLength, b)
	}
	if resp, b := call("GET", "/api/tags", ""); resp.StatusCode != 200 || !bytes.Contains(b, []byte(model)) {
		t.Fatalf("tags: %s %q", resp.Status, b)
	}
	if resp, _ := call("POST", "/api/chat", `{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 404 {
		t.Fatalf("unknown model: %s", resp.Status)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections for six calls in a row (want 1, kept alive)", n)
	}
	// A stream closed after its first line: its connection is not reused.
	req, _ := http.NewRequest("POST", base+"/api/chat", strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, _ := call("GET", "/api/tags", ""); resp.StatusCode != 200 || dials.Load() != 2 {
		t.Fatalf("after an early close: %s, %d connections (want 2)", resp.Status, dials.Load())
	}
	if resp, _ := call("GET", "/api/version", ""); resp.StatusCode != 200 || dials.Load() != 2 {
		t.Fatalf("%s, %d connections (want 2)", resp.Status, dials.Load())
	}
}
