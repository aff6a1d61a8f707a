package widget

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
)

// A visitor token checked (HMAC-SHA256 and the parse): every API call
// pays it once.
func BenchmarkTokenVerify(b *testing.B) {
	s := newSigner("support", []byte(testSecret))
	tok := s.sign(newVisitorID(), time.Now().Add(time.Hour))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// A visitor's first message through the widget's handler (origin, token,
// rate limit, body, the conversation made, the turn streamed as SSE into
// a recorder), against BenchmarkChatFirstTurn: the same work through the
// chat service alone. The difference is what the widget adds.
func BenchmarkWidgetFirstMessage(b *testing.B) {
	o := testOptions()
	o[optRate] = "1000000/s"
	f := newFixture(b, o)
	// One request, its body and token set again each time: the harness's
	// own allocations (httptest.NewRequest's reader) stay out.
	r := httptest.NewRequest("POST", "/api/messages", nil)
	r.Header.Set("Origin", shop)
	r.Header.Set("Content-Type", "application/json")
	const body = `{"content":"hello there"}`
	b.ReportAllocs()
	for b.Loop() {
		r.Header.Set("Authorization", "Bearer "+f.w.sign.sign(newVisitorID(), time.Now().Add(time.Hour)))
		r.Body = io.NopCloser(strings.NewReader(body))
		rec := httptest.NewRecorder()
		f.w.ServeHTTP(rec, r)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "event: done") {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkChatFirstTurn(b *testing.B) {
	f := newFixture(b, testOptions())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		v := newVisitorID()
		p := f.w.principal("default", v)
		if _, err := f.chat.Create(ctx, p, moltbot.NewConversation{ID: f.w.conversation(v)}); err != nil {
			b.Fatal(err)
		}
		st, err := f.chat.Turn(ctx, p, chat.TurnRequest{Conversation: f.w.conversation(v), Stream: true, Input: moltbot.TurnInput{Content: "hello there"}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
