//go:build !race && !edge

// In-process nodes of a cluster build without the race detector (see
// actors/cluster_test.go: protoactor's remote start sets a gRPC global);
// make test runs this file's test without it.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// Two nodes of a cluster, each serving the channel with the same
// visitor_secret: a visitor's token from one works on the other, the
// conversation is one (written through either, read through either), and
// an events stream held on one node sees what is said through the other.
func TestWidgetCluster(t *testing.T) {
	var nodes []*Node
	var bases []string
	first := ""
	for i := 0; i < 2; i++ {
		port := freeTwin(t)
		bind := fmt.Sprintf("127.0.0.1:%d", port)
		join := ""
		if first != "" {
			join = fmt.Sprintf(", join: [%q]", first)
		} else {
			first = bind
		}
		text := fmt.Sprintf(`server: {host: 127.0.0.1, port: 0, shutdown_timeout: 2s}
log: {level: error}
providers: [{name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 4}}]
models: {primary: sim/sim}
cluster: {bind: %q%s, profile: test}
bots: [{name: support, tenant: default, system: "You help."}]
`, bind, join)
		cfg, err := configs.Parse("moltbot.yaml", []byte(text), nil)
		if err != nil {
			t.Fatal(err)
		}
		n := &Node{Config: cfg, Workspace: t.TempDir(), Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown(context.Background()) })
		waitReady(t, n.URL())
		nodes = append(nodes, n)
		bases = append(bases, serveWidget(t, n, channels.Config{Name: "help", Type: "widget", Bot: "support", Tenant: "default",
			Conversations: channels.PerUser, Options: map[string]string{"publishable_key": widgetKey, "origins": widgetOrigin,
				"visitor_secret": strings.Repeat("same-on-every-node-", 3)}}))
	}
	testutil.Eventually(t, 20*time.Second, "two alive members", func() bool {
		return members(t, nodes[0].URL()) == 2 && members(t, nodes[1].URL()) == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	call := func(base, method, path, tok, body string) *http.Response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+"api/"+path, rd)
		req.Header.Set("Origin", widgetOrigin)
		req.Header.Set("X-Widget-Key", widgetKey)
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := call(bases[0], "POST", "session", "", "{}")
	var s struct {
		Token, Visitor string
		New            bool
	}
	json.NewDecoder(res.Body).Decode(&s)
	res.Body.Close()
	// Renewed on the other node: the same visitor.
	res = call(bases[1], "POST", "session", s.Token, "{}")
	var s2 struct {
		Visitor string
		New     bool
	}
	json.NewDecoder(res.Body).Decode(&s2)
	res.Body.Close()
	if s2.New || s2.Visitor != s.Visitor {
		t.Fatalf("the other node's session: %+v, was %+v", s2, s)
	}
	say := func(base, text string) {
		t.Helper()
		res := call(base, "POST", "messages", s.Token, `{"content":`+jsonString(text)+`}`)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), "event: done") {
			t.Fatalf("%q: %d %s", text, res.StatusCode, b)
		}
	}
	say(bases[0], "said on the first node")
	// The events stream on the second node.
	res = call(bases[1], "GET", "events", s.Token, "")
	if res.StatusCode != 200 {
		t.Fatalf("events on the second node: %d", res.StatusCode)
	}
	defer res.Body.Close()
	follow := make(chan widgetEvent, 64)
	go readWidgetEvents(res.Body, follow)
	if ev := <-follow; ev.kind != "subscribed" {
		t.Fatalf("first event: %+v", ev)
	}
	say(bases[0], "said on the first node again")
	for seen := false; !seen; {
		select {
		case ev, ok := <-follow:
			if !ok {
				t.Fatal("the events stream ended")
			}
			seen = ev.kind == "message" && strings.Contains(ev.data, "said on the first node again")
		case <-ctx.Done():
			t.Fatal("the second node's follower did not see the first node's turn")
		}
	}
	say(bases[1], "said on the second node")
	for i, base := range bases {
		res := call(base, "GET", "history", s.Token, "")
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || strings.Count(string(b), `"role":"user"`) != 3 || strings.Count(string(b), `"role":"assistant"`) != 3 ||
			!strings.Contains(string(b), "said on the second node") {
			t.Fatalf("node %d's history: %d %s", i, res.StatusCode, b)
		}
	}
}
