package discord

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/discord/fakediscord"
)

// BenchmarkGatewayMessages: MESSAGE_CREATEs sent by the fake over a live
// Gateway connection to accepted messages (channeltest's Host, in memory:
// the adapter's cost, not the core's durable write). ns/op is per event.
func BenchmarkGatewayMessages(b *testing.B) {
	f := fakediscord.New(fakediscord.Options{})
	defer f.Close()
	h := &channeltest.Host{Accepted: make(chan channels.Message, 1024)}
	a, err := newAdapter(channels.Config{Name: "dc", Options: map[string]string{"token": "test-token", "api_url": f.API()}}, h)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	if _, ok := f.Wait("identify", 10*time.Second); !ok {
		b.Fatal("no identify")
	}
	for h.State() != channels.StateConnected {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := range b.N {
			f.MessageCreate(fakediscord.Message{ID: strconv.Itoa(1400000000000000000 + i), Channel: fakediscord.DMID, Content: "hello there"})
		}
	}()
	for range b.N {
		<-h.Accepted
	}
}

// BenchmarkHandle: one MESSAGE_CREATE's d parsed, filtered and accepted
// (the worker's part, no network).
func BenchmarkHandle(b *testing.B) {
	h := &channeltest.Host{}
	a, _ := newAdapter(channels.Config{Options: map[string]string{"token": "t"}}, h)
	a.self = "900"
	ctx := context.Background()
	b.ReportAllocs()
	for i := range b.N {
		d := fmt.Appendf(nil, `{"id":"%d","channel_id":"22","guild_id":"33","type":0,"author":{"id":"44","username":"ann"},"content":"<@900> what is the weather like today?","mentions":[{"id":"900"}],"attachments":[],"timestamp":"2026-12-02T03:00:00.000000+00:00"}`, 1000+i)
		a.handle(ctx, d)
	}
}

// BenchmarkInteraction: a signed slash command through ServeHTTP to its
// deferred response: the Ed25519 check, the parse, the sealed address,
// Accept (in memory). Discord wants the answer within 3 s.
func BenchmarkInteraction(b *testing.B) {
	f := fakediscord.New(fakediscord.Options{})
	defer f.Close()
	h := &channeltest.Host{}
	a, _ := newAdapter(channels.Config{Options: map[string]string{"token": "t", "public_key": f.PublicKeyHex()}}, h)
	now := time.Now()
	reqs := make([]*http.Request, b.N) // signed before the clock starts
	for i := range reqs {
		reqs[i] = f.SignedRequest("/", command(strconv.Itoa(1400000000000000000+i), "aW50ZXJhY3Rpb246dG9rZW4", "what is moltbot?"), now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, reqs[i])
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// Baselines beside them, run under the same load: what the Ed25519 check
// alone and the JSON decoding of a MESSAGE_CREATE alone cost.
func BenchmarkBaselineVerify(b *testing.B) {
	f := fakediscord.New(fakediscord.Options{})
	defer f.Close()
	body := command("1400000000000000000", "aW50ZXJhY3Rpb246dG9rZW4", "what is moltbot?")
	r := f.SignedRequest("/", body, time.Now())
	sig, ts := r.Header.Get("X-Signature-Ed25519"), r.Header.Get("X-Signature-Timestamp")
	now := time.Now()
	b.ReportAllocs()
	for range b.N {
		if !verify(f.Public, sig, ts, body, now) {
			b.Fatal("bad")
		}
	}
}

func BenchmarkBaselineUnmarshal(b *testing.B) {
	d := []byte(`{"id":"1000","channel_id":"22","guild_id":"33","type":0,"author":{"id":"44","username":"ann"},"content":"<@900> what is the weather like today?","mentions":[{"id":"900"}],"attachments":[],"timestamp":"2026-12-02T03:00:00.000000+00:00"}`)
	b.ReportAllocs()
	for range b.N {
		var m wireMessage
		if json.Unmarshal(d, &m) != nil {
			b.Fatal("bad")
		}
	}
}
