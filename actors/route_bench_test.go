package actors

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// sixteen is a provider that answers every call at once with 16 tokens
// and usage, without I/O: what is measured is the runtime's own work.
type sixteen struct{}

var sixteenTokens = func() (t [16]string) {
	for i := range t {
		t[i] = " token"
	}
	return t
}()

func (sixteen) Chat(_ context.Context, _ *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	for _, tok := range sixteenTokens {
		if err := fn(inference.Delta{Text: tok}); err != nil {
			return inference.Result{}, err
		}
	}
	return inference.Result{Model: "m", FinishReason: "stop", Usage: moltbot.Usage{PromptTokens: 40, CompletionTokens: 16}}, nil
}

func (sixteen) Models(context.Context) ([]string, error) { return []string{"m"}, nil }

// BenchmarkRouterComplete is a stateless completion through the router and
// the providers as the floor makes it (a chain of two, metrics on, the
// first model answering at once), with a provider that does no I/O: the
// per-call cost of route.(*Router).Chat and provider.(*Set).Call above the
// model's client.
func BenchmarkRouterComplete(b *testing.B) {
	met := metrics.New("bench")
	var specs []ProviderSpec
	for _, name := range []string{"a", "b"} {
		specs = append(specs, ProviderSpec{Name: name, Type: "fake", Provider: sixteen{}, MaxInFlight: 256, MaxQueue: 1024, Timeout: 2 * time.Minute})
	}
	rt, err := New(Config{Providers: specs, Chain: []moltbot.ModelRef{{Provider: "a", Model: "m"}, {Provider: "b", Model: "m"}},
		Store: storage.NewMemory(), Metrics: met, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), HealthInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "hello there"}}
	n := 0
	for _, stream := range []bool{false, true} {
		var fn moltbot.StreamFunc
		if stream {
			fn = func(moltbot.Chunk) error { n++; return nil }
		}
		b.Run(map[bool]string{false: "plain", true: "stream"}[stream], func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				comp, err := rt.Complete(ctx, msgs, moltbot.ChatOptions{}, fn)
				if err != nil || comp.Usage.CompletionTokens != 16 {
					b.Fatal(comp, err)
				}
			}
		})
	}
}
