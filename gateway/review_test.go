package gateway

// Findings of the review of the seam, one test each.

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/auth"
)

// A credential is checked when a request starts; a request that lasts as
// long as its client wants (GET .../events) must not outlive it: a revoked
// key (or an expired token, a deleted tenant) stops reading the
// conversation, instead of following it for good.
func TestReviewEventsEndWithTheCredential(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	secret, info, err := e.auth.CreateKey("a", "follower", auth.ScopeChat, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.keys["follower"] = secret
	code, body, _ := e.do(t, "adminA", "POST", "/v1/conversations", `{}`)
	var c conversationJSON
	if err := json.Unmarshal([]byte(body), &c); err != nil || code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/conversations/"+c.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	events := make(chan [2]string, 64) // event, data
	go func() {
		defer close(events)
		lines := bufio.NewScanner(resp.Body)
		event := ""
		for lines.Scan() {
			l := lines.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: "):
				events <- [2]string{event, strings.TrimPrefix(l, "data: ")}
			}
		}
	}()
	if ev := <-events; ev[0] != "subscribed" {
		t.Fatalf("first event %v", ev)
	}
	if _, err := e.auth.RevokeKey("a", info.ID); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.do(t, "follower", "GET", "/v1/conversations/"+c.ID, ""); code != 401 {
		t.Fatalf("the revoked key still reads: %d", code)
	}
	time.Sleep(1100 * time.Millisecond) // a re-check may wait a second
	if code, body, _ := e.do(t, "adminA", "POST", "/v1/conversations/"+c.ID+"/messages", `{"content":"after the revocation"}`); code != 200 {
		t.Fatalf("turn: %d %s", code, body)
	}
	for ev := range events {
		if strings.Contains(ev[1], "after the revocation") {
			t.Fatal("a revoked key still follows the conversation: it read a message written after its revocation")
		}
		if ev[0] == "error" {
			if !strings.Contains(ev[1], `"code":"unauthorized"`) && !strings.Contains(ev[1], "revoked") {
				t.Errorf("the stream ended with %s", ev[1])
			}
			return
		}
	}
	t.Fatal("the stream ended without saying why")
}

// A client that streams retries a turn with the same Idempotency-Key (its
// first request's connection dropped): the replay runs no model, so no
// token comes; the stream must still carry the stored reply, not an empty
// one.
func TestReviewStreamedReplayCarriesTheReply(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	_, body := do(t, "POST", e.url+"/v1/conversations", `{}`)
	var c conversationJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	post := func(body string) *http.Response {
		req, _ := http.NewRequest("POST", e.url+"/v1/conversations/"+c.ID+"/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "k-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	content := func(resp *http.Response) string {
		t.Helper()
		defer resp.Body.Close()
		var text strings.Builder
		for _, f := range sseFrames(t, resp.Body) {
			var ch struct {
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if json.Unmarshal([]byte(f), &ch) == nil && len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		return text.String()
	}
	first := content(post(`{"content":"hi","stream":true}`))
	if first == "" {
		t.Fatal("the first stream is empty")
	}
	r := post(`{"content":"hi","stream":true}`)
	replayed := r.Header.Get("X-Moltbot-Replayed")
	if again := content(r); again != first {
		t.Fatalf("the retry streamed %q; the stored reply is %q", again, first)
	}
	if replayed != "true" {
		t.Errorf("X-Moltbot-Replayed %q", replayed)
	}
}
