package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/slack/fakeslack"
)

// countHost is a Host that counts what it takes (no memory per message:
// a benchmark sends many).
type countHost struct {
	channeltest.Host
	n atomic.Int64
}

func (h *countHost) Accept(context.Context, channels.Message) error { h.n.Add(1); return nil }

// BenchmarkParseEvent: one app_mention payload decoded and made a
// Message (what each event costs before the Host).
func BenchmarkParseEvent(b *testing.B) {
	fake := fakeslack.New(botToken, appToken)
	defer fake.Close()
	payload := fake.Callback(mention("1700000001.000100", "<@UFAKEBOT> what is the weather like in Paris tomorrow?"))
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var cb eventCallback
		if err := json.Unmarshal(payload, &cb); err != nil {
			b.Fatal(err)
		}
		if _, why := message(&cb, fakeslack.UserID); why != dropNone {
			b.Fatal(why)
		}
	}
}

// BenchmarkHTTPEvent: a signed Events API request through ServeHTTP to
// an accepted message and the 200 (signature, parse, Accept).
func BenchmarkHTTPEvent(b *testing.B) {
	fake := fakeslack.New(botToken, appToken)
	defer fake.Close()
	h := &countHost{}
	ad, _ := New(channels.Config{Name: "team", Options: map[string]string{"mode": "http", "bot_token": botToken, "signing_secret": secret, "api_url": fake.URL()}}, h)
	a := ad.(*Adapter)
	a.self = fakeslack.UserID
	now := time.Now()
	a.now = func() time.Time { return now }
	body := fake.Callback(mention("1700000001.000100", "<@UFAKEBOT> what is the weather like in Paris tomorrow?"))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, fakeslack.Request("/", secret, now.Unix(), body, 0))
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
	if h.n.Load() != int64(b.N) {
		b.Fatalf("accepted %d of %d", h.n.Load(), b.N)
	}
}

// BenchmarkSocketEnvelope: events_api envelopes over a loopback Socket
// Mode connection to their acks. serial: one at a time, so ns/op is the
// event-to-ack time; pipelined: 64 in flight, so ns/op is the inverse of
// the throughput (events/s). Both include the fake's side of the socket.
func BenchmarkSocketEnvelope(b *testing.B) {
	for _, depth := range []int{1, 64} {
		name := "serial"
		if depth > 1 {
			name = fmt.Sprintf("pipelined-%d", depth)
		}
		b.Run(name, func(b *testing.B) {
			fake := fakeslack.New(botToken, appToken)
			defer fake.Close()
			h := &countHost{}
			ad, _ := New(channels.Config{Name: "team", Options: map[string]string{"bot_token": botToken, "app_token": appToken, "api_url": fake.URL()}}, h)
			a := ad.(*Adapter)
			a.inflight = 128
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { a.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			c := fake.Conn(wait)
			if c == nil {
				b.Fatal("no connection")
			}
			payload := fake.Callback(mention("1700000001.000100", "<@UFAKEBOT> what is the weather like in Paris tomorrow?"))
			b.ReportAllocs()
			b.ResetTimer()
			sent, acked := 0, 0
			for acked < b.N {
				for sent < b.N && sent-acked < depth {
					if _, err := c.Event(payload); err != nil {
						b.Fatal(err)
					}
					sent++
				}
				if _, ok := c.Ack(wait); !ok {
					b.Fatal("no ack")
				}
				acked++
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkSend: a 300-character reply posted by chat.postMessage to a
// loopback fake (unpaced: the Limiter's pacing is Slack's 1/s), the
// fake's side included.
func BenchmarkSend(b *testing.B) {
	fake := fakeslack.New(botToken, appToken)
	defer fake.Close()
	ad, _ := New(channels.Config{Name: "team", Options: map[string]string{"bot_token": botToken, "app_token": appToken, "api_url": fake.URL()}}, &countHost{})
	a := ad.(*Adapter)
	a.lim = channels.Limiter{}
	m := reply(strings.Repeat("The weather in Paris tomorrow: mild & dry <maybe>. ", 6))
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Send(context.Background(), "C0GENERAL/1700000001.000100", m); err != nil {
			b.Fatal(err)
		}
	}
}
