package ollama

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// reply16 is a 16-token /api/chat stream as Ollama (and moltbot sim) write it.
var reply16 = func() []byte {
	var b strings.Builder
	for i := 0; i < 16; i++ {
		b.WriteString(line(fmt.Sprintf(" tok%d", i), false))
	}
	b.WriteString(line("", true))
	return []byte(b.String())
}()

// memTransport answers every request from memory: a benchmark through it
// measures the provider, not a network stack.
type memTransport struct{ body []byte }

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	h := http.Header{"Content-Type": []string{"application/x-ndjson"}}
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: h, Body: io.NopCloser(bytes.NewReader(m.body)), Request: r, ContentLength: -1}, nil
}

var benchReq = &inference.Request{Model: "llama3.2",
	Messages: []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: "You are a helpful assistant."},
		{Role: moltbot.RoleUser, Content: "Hello! What can you do for me today?"}},
	ChatOptions: moltbot.ChatOptions{MaxTokens: 64}}

func benchChat(b *testing.B, c *Client) {
	b.Helper()
	ctx := context.Background()
	n := 0
	fn := func(inference.Delta) error { n++; return nil }
	b.ReportAllocs()
	for b.Loop() {
		n = 0
		if _, err := c.Chat(ctx, benchReq, fn); err != nil {
			b.Fatal(err)
		}
		if n != 16 {
			b.Fatalf("%d tokens, want 16", n)
		}
	}
}

// BenchmarkChat is one streamed call of 16 tokens through the provider:
// "memory" from an in-memory transport (the provider's own cost), "loopback"
// from an httptest server (B/op then includes the server's side too).
func BenchmarkChat(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		c, err := New(Config{Name: "local", BaseURL: "http://ollama", HTTP: &http.Client{Transport: memTransport{reply16}}})
		if err != nil {
			b.Fatal(err)
		}
		benchChat(b, c)
	})
	b.Run("loopback", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Write(reply16)
		}))
		defer srv.Close()
		c, err := New(Config{Name: "local", BaseURL: srv.URL})
		if err != nil {
			b.Fatal(err)
		}
		benchChat(b, c)
	})
}

// blockedTransport answers with the first token line, then holds the stream
// open until release is closed: a call in flight, as behind a slow model.
type blockedTransport struct {
	release chan struct{}
}

func (bt blockedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(line("first", false)))
		select {
		case <-bt.release:
			pw.Write([]byte(line("", true)))
			pw.Close()
		case <-r.Context().Done():
			pw.CloseWithError(r.Context().Err())
		}
	}()
	h := http.Header{"Content-Type": []string{"application/x-ndjson"}}
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: h, Body: pr, Request: r, ContentLength: -1}, nil
}

// heapPerCallInFlight starts n calls that each hold their stream open after
// the first token and returns the live heap they hold, per call.
func heapPerCallInFlight(tb testing.TB, n int) float64 {
	tb.Helper()
	bt := blockedTransport{release: make(chan struct{})}
	c, err := New(Config{Name: "local", BaseURL: "http://ollama", HTTP: &http.Client{Transport: bt}})
	if err != nil {
		tb.Fatal(err)
	}
	var before, during runtime.MemStats
	runtime.GC()
	runtime.GC() // and the sync.Pools' victim caches: every reader is counted
	runtime.ReadMemStats(&before)
	var started, wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			_, err := c.Chat(context.Background(), benchReq, func(inference.Delta) error {
				if first {
					first = false
					started.Done()
				}
				return nil
			})
			if first {
				started.Done()
			}
			errs <- err
		}()
	}
	started.Wait()
	runtime.GC()
	runtime.ReadMemStats(&during)
	close(bt.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return float64(int64(during.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// BenchmarkCallInFlight reports the live heap one call holds while its
// stream is open (64 calls at once), as heap-B/call.
func BenchmarkCallInFlight(b *testing.B) {
	var sum float64
	for b.Loop() {
		sum += heapPerCallInFlight(b, 64)
	}
	b.ReportMetric(sum/float64(b.N), "heap-B/call")
}
