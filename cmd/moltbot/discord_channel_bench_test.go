// The Discord adapter through a whole node (the channels core, the
// outbox) against fakediscord.

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels/discord/fakediscord"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// discordBenchNode is a node with one discord channel against f (the
// simulator answering at once, the inbox synced).
func discordBenchNode(b *testing.B, f *fakediscord.Server) *Node {
	ws := filepath.Join(b.TempDir(), "ws")
	os.MkdirAll(ws, 0o700)
	path := filepath.Join(ws, "moltbot.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`server: {host: 127.0.0.1, port: 0, max_connections_per_client: 256}
log: {level: warn, format: json}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 16}}
models: {primary: sim/sim}
conversations: {max_context_tokens: 1024}
channels:
  - {name: dc, type: discord, token: test-token, api_url: %q, public_key: %q, require_mention: "false"}
`, f.API(), f.PublicKeyHex())), 0o600)
	cfg, err := configs.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := n.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}

// BenchmarkDiscordInteractionAccept: signed slash commands POSTed to a
// node's /channels/dc/ (16 clients at once): each op is one interaction
// answered {"type":5} (deferred: taken into the inbox, synced); it reports
// the time to that answer (Discord allows 3 s) and waits at the end for
// every follow-up to reach the fake (turns/s).
//
//	go test -run '^$' -bench DiscordInteractionAccept -benchtime 1000x ./cmd/moltbot/
func BenchmarkDiscordInteractionAccept(b *testing.B) {
	f := fakediscord.New(fakediscord.Options{BucketLimit: 1 << 30})
	defer f.Close()
	n := discordBenchNode(b, f)
	url := n.URL() + "/channels/dc/"
	reqs := make([][]byte, b.N)
	for i := range reqs {
		id, token := f.Interaction(time.Hour)
		reqs[i] = []byte(fmt.Sprintf(`{"type":2,"id":%q,"application_id":%q,"token":%q,"channel_id":%q,"member":{"user":{"id":"%d","username":"u"}},"data":{"name":"ask","type":1,"options":[{"name":"text","type":3,"value":"where is my order %d?"}]}}`,
			id, fakediscord.AppID, token, fakediscord.DMID, 1500000000000000000+i%512, i))
	}
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	start := time.Now()
	b.SetParallelism(8) // 16 clients on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := seq.Add(1) - 1
			req := f.SignedRequest(url, reqs[i], time.Now())
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"type":5}` {
				b.Errorf("interaction %d: %s %s", i, resp.Status, body)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	accepted := time.Since(start)
	testutil.Eventually(b, 5*time.Minute, "every follow-up", func() bool { return len(f.Created()) >= b.N })
	b.StopTimer()
	all := time.Since(start)
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ack-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ack-ms")
	}
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
	b.ReportMetric(float64(b.N)/all.Seconds(), "turns/s")
}

// BenchmarkDiscordGatewayTurns: MESSAGE_CREATEs over the Gateway to a
// node, from 512 users in DMs: each op is one message taken (the
// channel's accepted counter) and, at the end, answered in the fake
// (turns/s). The Gateway has no acknowledgement: what is measured is how
// fast one connection's messages become durable turns.
//
//	go test -run '^$' -bench DiscordGatewayTurns -benchtime 1000x ./cmd/moltbot/
func BenchmarkDiscordGatewayTurns(b *testing.B) {
	f := fakediscord.New(fakediscord.Options{BucketLimit: 1 << 30})
	defer f.Close()
	n := discordBenchNode(b, f)
	testutil.Eventually(b, 30*time.Second, "connected", func() bool {
		st, _ := n.chans.StatusOf("dc")
		return st.State == "connected"
	})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		f.MessageCreate(fakediscord.Message{ID: strconv.Itoa(1400000000000000000 + i), Channel: fakediscord.DMID,
			Author: strconv.Itoa(1500000000000000000 + i%512), Content: "where is my order?"})
	}
	testutil.Eventually(b, 5*time.Minute, "every message taken", func() bool {
		st, _ := n.chans.StatusOf("dc")
		return st.Counters.Accepted >= uint64(b.N)
	})
	taken := time.Since(start)
	testutil.Eventually(b, 5*time.Minute, "every reply", func() bool { return len(f.Created()) >= b.N })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/taken.Seconds(), "taken/s")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "turns/s")
}
