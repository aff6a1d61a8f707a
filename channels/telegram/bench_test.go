package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/telegram/faketelegram"
)

// nopHost accepts everything at once: the benchmarks measure the
// adapter's own cost from a request to its acknowledgement.
type nopHost struct{}

func (nopHost) Accept(context.Context, channels.Message) error { return nil }
func (nopHost) Get(string) ([]byte, bool)                      { return nil, false }
func (nopHost) Put(string, []byte) error                       { return nil }
func (nopHost) Log() *slog.Logger                              { return slog.New(slog.DiscardHandler) }
func (nopHost) Report(string, error)                           {}

// BenchmarkWebhookUpdate: one webhook POST (secret checked, body read,
// update parsed and filtered, Accept) to its 200, in process.
func BenchmarkWebhookUpdate(b *testing.B) {
	ad, err := New(channels.Config{Name: "tg", Type: "telegram", Options: map[string]string{
		"token": token, "mode": "webhook", "secret_token": "bench_secret"}}, nopHost{})
	if err != nil {
		b.Fatal(err)
	}
	a := ad.(*Adapter)
	a.me = me()
	u := faketelegram.Text(-100123, "supergroup", 7, false, "@moltbot_test_bot how do I reset my password? It says the link expired.", 1)
	u["message"].(map[string]any)["entities"] = []any{map[string]any{"type": "mention", "offset": 0, "length": 17}}
	u["update_id"] = 1
	body, _ := json.Marshal(u)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set(secretHeader, "bench_secret")
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkPollBatch: a full getUpdates batch (100 private messages)
// parsed, filtered and accepted, per update.
func BenchmarkPollBatch(b *testing.B) {
	ad, _ := New(channels.Config{Name: "tg", Type: "telegram", Options: map[string]string{"token": token}}, nopHost{})
	a := ad.(*Adapter)
	a.me = me()
	batch := make([]json.RawMessage, 100)
	for i := range batch {
		u := faketelegram.Text(int64(1000+i), "private", 7, false, "message number "+strconv.Itoa(i)+" with a few more words in it", int64(i+1))
		u["update_id"] = i + 1
		batch[i], _ = json.Marshal(u)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if next, err := a.take(ctx, batch, 0); err != nil || next != 101 {
			b.Fatal(next, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/update")
}

// BenchmarkBaselineRequest: the same request and recorder to a handler
// that only reads the body and answers 200, the floor under the above.
func BenchmarkBaselineRequest(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 305)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		readBody(w, r)
		w.Write([]byte("{}"))
	})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set(secretHeader, "bench_secret")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}
