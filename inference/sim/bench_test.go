package sim

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/inference"
)

// The plain-text paths at zero delay are the floor of every benchmark that
// uses the simulator: tools, formats and images must not slow them down.

func BenchmarkServerOllamaStream(b *testing.B) {
	s := NewServer(Options{Tokens: 32, Seed: 1})
	body := `{"model":"m","messages":[{"role":"user","content":"hello there"}]}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/api/chat", strings.NewReader(body))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
	}
}

func BenchmarkProviderChat(b *testing.B) {
	p := NewProvider("sim", Options{Tokens: 32, Seed: 1})
	req := &inference.Request{Model: "sim", Messages: msgs("hello there")}
	fn := func(inference.Delta) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Chat(context.Background(), req, fn); err != nil {
			b.Fatal(err)
		}
	}
}
