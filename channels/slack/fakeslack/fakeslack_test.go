package fakeslack

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// harness is the Node project that holds npm @slack/socket-mode (make
// test installs it: acceptance-deps runs npm ci there).
const harness = "../../../test/channels/slack"

// wait bounds every wait (a backstop, not a timing assertion).
const wait = 30 * time.Second

// TestSocketModeClient checks the fake against Slack's own Socket Mode
// client, npm @slack/socket-mode: it must open a connection with
// apps.connections.open, take the hello, receive an events_api envelope
// and acknowledge it, and after the fake's disconnect frame fetch a fresh
// URL and connect again, where events flow as before.
func TestSocketModeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH: npm @slack/socket-mode is not run against the fake (Node 20+, then make acceptance-deps)")
	}
	if _, err := os.Stat(filepath.Join(harness, "node_modules", "@slack", "socket-mode", "package.json")); err != nil {
		t.Skip("npm @slack/socket-mode is not installed: make acceptance-deps (npm ci in test/channels/slack)")
	}
	s := New("xoxb-node-bot", "xapp-node-app")
	defer s.Close()
	// The client expects Slack's pings (it gives up on a server silent for
	// 30 s); a second apart keeps it content.
	s.PingEvery(time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "socketmode.mjs", s.URL(), "xapp-node-app")
	cmd.Dir = harness
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Process.Kill()
		cmd.Wait()
	}()
	lines := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var v map[string]any
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				lines <- v
			}
		}
		close(lines)
	}()
	next := func(key string) map[string]any {
		t.Helper()
		for {
			select {
			case v, ok := <-lines:
				if !ok {
					t.Fatalf("the Node client ended before printing %q", key)
				}
				if _, has := v[key]; has {
					return v
				}
			case <-time.After(wait):
				t.Fatalf("the Node client printed no %q", key)
			}
		}
	}

	c := s.Conn(wait)
	if c == nil {
		t.Fatal("the Node client did not connect")
	}
	next("connected")
	ev := Event{Type: "app_mention", User: "U0ALICE", Text: "<@" + UserID + "> hi", TS: "1700000001.000100", Channel: "C0GENERAL"}
	id, err := c.Event(s.Callback(ev))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Ack(wait); !ok || got != id {
		t.Fatalf("ack %q (%v), want %q", got, ok, id)
	}
	if v := next("envelope_id"); v["envelope_id"] != id || v["event"] != "app_mention" || v["type"] != "events_api" {
		t.Fatalf("the client saw %v", v)
	}

	if err := c.Disconnect("refresh_requested"); err != nil {
		t.Fatal(err)
	}
	c2 := s.Conn(wait)
	if c2 == nil {
		t.Fatal("the Node client did not reconnect after disconnect")
	}
	if c2.URL == c.URL || s.Opens() != 2 {
		t.Fatalf("reconnected to %s after %s with %d apps.connections.open", c2.URL, c.URL, s.Opens())
	}
	next("connected")
	ev.TS = "1700000002.000100"
	id2, err := c2.Event(s.Callback(ev))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c2.Ack(wait); !ok || got != id2 {
		t.Fatalf("after reconnecting: ack %q (%v), want %q", got, ok, id2)
	}
}
