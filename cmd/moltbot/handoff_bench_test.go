package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/configs"
)

// BenchmarkHandoffTurn is a conversation's turn through the node's HTTP
// API (the simulator answering, storage synced): the hand-off off (the
// stage idles), on with no trigger firing (the bot answers), and a turn
// relayed while the conversation is queued (no model).
//
//	go test -run '^$' -bench HandoffTurn -benchtime 300x ./cmd/moltbot/
func BenchmarkHandoffTurn(b *testing.B) {
	for _, c := range []struct{ name, handoff, first string }{
		{"off", "", "hello"},
		{"on", "handoff: {enabled: true}\n", "hello"},
		{"relay", "handoff: {enabled: true, queue_timeout: 1h}\n", "转人工"},
	} {
		b.Run(c.name, func(b *testing.B) {
			ws := filepath.Join(b.TempDir(), "ws")
			os.MkdirAll(ws, 0o700)
			path := filepath.Join(ws, "moltbot.yaml")
			os.WriteFile(path, []byte(`server: {host: 127.0.0.1, port: 0}
log: {level: warn, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 16}}
models: {primary: sim/sim}
conversations: {max_context_tokens: 1024}
`+c.handoff), 0o600)
			cfg, err := configs.Load(path)
			if err != nil {
				b.Fatal(err)
			}
			n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
			if err := n.Start(); err != nil {
				b.Fatal(err)
			}
			defer n.Shutdown(context.Background())
			resp, err := http.Post(n.URL()+"/v1/conversations", "application/json", strings.NewReader(`{}`))
			if err != nil {
				b.Fatal(err)
			}
			var conv struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&conv)
			resp.Body.Close()
			say := func(text string) {
				resp, err := http.Post(n.URL()+"/v1/conversations/"+conv.ID+"/messages", "application/json", strings.NewReader(`{"content":"`+text+`"}`))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
			say(c.first)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				say("what is the status of my order, please?")
			}
		})
	}
}
