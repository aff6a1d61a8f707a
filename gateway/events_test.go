package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// GET /v1/conversations/{id}/events follows a conversation: the messages
// of a turn made by another client, its tokens, and the deletion.
func TestConversationEvents(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	_, body := do(t, "POST", e.url+"/v1/conversations", `{}`)
	var c conversationJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, "GET", e.url+"/v1/conversations/nope/events", ""); resp.StatusCode != 404 {
		t.Fatalf("following a missing conversation: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/conversations/"+c.ID+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	next := func(want string) string { // the data of the next event named want
		t.Helper()
		event := ""
		for lines.Scan() {
			l := lines.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: ") && event == want:
				return strings.TrimPrefix(l, "data: ")
			}
		}
		t.Fatalf("stream ended before a %s event: %v", want, lines.Err())
		return ""
	}
	next("subscribed") // the follower is in place: what follows reaches it
	// A streamed turn: followers see its tokens (a turn that does not
	// stream may restart on another model mid-reply, so its tokens are not
	// shown to anyone).
	if r, b := do(t, "POST", e.url+"/v1/conversations/"+c.ID+"/messages", `{"content":"hello","stream":true}`); r.StatusCode != 200 {
		t.Fatalf("turn: %d %s", r.StatusCode, b)
	}
	var m messageJSON
	json.Unmarshal([]byte(next("message")), &m)
	if m.Role != "user" || m.Content != "hello" || m.Created == 0 || m.Created > time.Now().Unix()+1 {
		t.Errorf("user message %+v", m)
	}
	if tok := next("token"); !strings.Contains(tok, `"model":"sim/sim"`) {
		t.Errorf("token %s", tok)
	}
	json.Unmarshal([]byte(next("message")), &m)
	if m.Role != "assistant" || m.Content == "" {
		t.Errorf("reply %+v", m)
	}
	if r, _ := do(t, "DELETE", e.url+"/v1/conversations/"+c.ID, ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	if end := next("error"); !strings.Contains(end, `"code":"not_found"`) {
		t.Errorf("end %s", end)
	}
}
