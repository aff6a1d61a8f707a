package gateway

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
)

// burstRuntime streams n tokens, says so, then waits to be released.
type burstRuntime struct {
	n                int
	emitted, release chan struct{}
}

func (b *burstRuntime) Complete(ctx context.Context, msgs []moltbot.Message, o moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	for i := 0; i < b.n; i++ {
		if err := fn(moltbot.Chunk{Content: "t", Served: moltbot.ModelRef{Provider: "p", Model: "m"}}); err != nil {
			return nil, err
		}
	}
	close(b.emitted)
	<-b.release
	return &moltbot.Completion{Content: strings.Repeat("t", b.n), Served: moltbot.ModelRef{Provider: "p", Model: "m"}, FinishReason: "stop"}, nil
}
func (b *burstRuntime) Create(context.Context, string, moltbot.NewConversation) (*moltbot.Conversation, error) {
	return nil, nil
}
func (b *burstRuntime) Get(context.Context, string, string) (*moltbot.Conversation, error) {
	return nil, nil
}
func (b *burstRuntime) Delete(context.Context, string, string, string) error { return nil }
func (b *burstRuntime) Turn(context.Context, string, string, moltbot.TurnInput, moltbot.StreamFunc) (*moltbot.TurnResult, error) {
	return nil, nil
}
func (b *burstRuntime) Subscribe(ctx context.Context, _, _ string, fn func(moltbot.Event)) error {
	fn(moltbot.Event{Kind: moltbot.EventSubscribed})
	<-ctx.Done()
	return nil
}
func (b *burstRuntime) ResolveModel(string) error   { return nil }
func (b *burstRuntime) Models() []moltbot.ModelInfo { return nil }

type countingWriter struct {
	*httptest.ResponseRecorder
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.ResponseRecorder.Write(p)
}

// Tokens that wait together leave in one write: a burst of 8 and the
// finish are at most two writes, not nine.
func TestRelayWritesABurstOnce(t *testing.T) {
	rt := &burstRuntime{n: 8, emitted: make(chan struct{}), release: make(chan struct{})}
	svc := chat.New(rt, nil, chat.Config{})
	st, err := svc.Complete(context.Background(), moltbot.Anonymous(), chat.CompletionRequest{Stream: true,
		Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	<-rt.emitted
	s := &Server{}
	w := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
	done := make(chan struct{})
	go func() {
		s.relay(w, st, newChunkWriter(w, "chatcmpl-1", 1), false)
		close(done)
	}()
	close(rt.release)
	<-done
	body := w.Body.String()
	if strings.Count(body, `"content":"t"`) != 8 || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("body:\n%s", body)
	}
	// 2 when the finish came after the burst was written, 1 when it was
	// queued by then too; one write per token (9) is the bug.
	if w.writes > 2 {
		t.Errorf("%d writes, want at most 2 (the burst, then the finish)", w.writes)
	}
}
