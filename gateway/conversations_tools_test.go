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

func getConversation(t *testing.T, url, id string) conversationJSON {
	t.Helper()
	resp, body := do(t, "GET", url+"/v1/conversations/"+id, "")
	var c conversationJSON
	if err := json.Unmarshal(body, &c); resp.StatusCode != 200 || err != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	return c
}

// A conversation keeps a reply's tool calls, takes the results as the next
// turn (nothing else is said before them), keeps images, and shows them
// all in OpenAI's shape; after a restart (the store alone) it is the same.
func TestConversationTools(t *testing.T) {
	e := newToolEnv(t, nil, nil)
	url := e.url + "/v1/conversations/"
	if resp, body := do(t, "POST", e.url+"/v1/conversations", `{"id":"tc","system":"use tools"}`); resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body := do(t, "POST", url+"tc/messages", `{"content":"weather?","tools":[`+weatherTool+`],"tool_choice":"required"}`)
	var tr turnResponse
	if err := json.Unmarshal(body, &tr); resp.StatusCode != 200 || err != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if tr.FinishReason != "tool_calls" || len(tr.Message.ToolCalls) != 2 || tr.Message.ToolCalls[0].ID != "call_1" || tr.Message.Content != "Let me check." {
		t.Fatalf("%s", body)
	}
	if o := e.model.last().ChatOptions; len(o.Tools) != 1 || o.ToolChoice.Mode != "required" {
		t.Errorf("the model got %+v", o)
	}
	// The calls wait for their results: anything else is refused.
	for _, c := range []struct{ body, param string }{
		{`{"content":"and tomorrow?"}`, "tool_results"},
		{`{"tool_results":[{"tool_call_id":"call_1","content":"sunny"}]}`, "tool_results"},
		{`{"tool_results":[{"tool_call_id":"call_9","content":"sunny"},{"tool_call_id":"call_1","content":"x"}]}`, "tool_results[0].tool_call_id"},
		{`{"tool_results":[{"tool_call_id":"call_1","content":"a"},{"tool_call_id":"call_1","content":"b"}]}`, "tool_results[1].tool_call_id"},
		{`{"tool_results":[{"tool_call_id":"call_1","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, "tool_results[0].content[0]"},
		{`{"content":"","tool_results":[]}`, "content"},
	} {
		resp, b := do(t, "POST", url+"tc/messages", c.body)
		var eb errBody
		json.Unmarshal(b, &eb)
		if resp.StatusCode != 400 || eb.Error.Param == nil || *eb.Error.Param != c.param {
			t.Errorf("%s: %d %s", c.body, resp.StatusCode, b)
		}
	}
	// The results, a big one (kept apart in storage), and an idempotency
	// key: the retry gets the stored reply.
	big := strings.Repeat("r", 6000)
	results := `{"tool_results":[{"tool_call_id":"call_1b","content":"snow"},{"tool_call_id":"call_1","content":"` + big + `"}],"tools":[` + weatherTool + `],"tool_choice":"none"}`
	req, _ := http.NewRequest("POST", url+"tc/messages", strings.NewReader(results))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "k-1")
	var first turnResponse
	for i := range 2 {
		req.Body, _ = req.GetBody()
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got turnResponse
		json.NewDecoder(r.Body).Decode(&got)
		r.Body.Close()
		if r.StatusCode != 200 || (i == 1) != (r.Header.Get("X-Moltbot-Replayed") == "true") {
			t.Fatalf("try %d: %d %+v", i, r.StatusCode, got)
		}
		if i == 0 {
			first = got
		} else if got.Message.ID != first.Message.ID || got.Message.Content != first.Message.Content {
			t.Errorf("the retry got %+v, not %+v", got.Message, first.Message)
		}
	}
	want := `saw: call call_1 get_weather{"city":"Paris"}; call call_1b get_weather{"city":"Oslo"}; result call_1b 4; result call_1 6000`
	if first.Message.Content != want || first.FinishReason != "stop" {
		t.Errorf("reply %+v", first)
	}
	// An image, big enough to be kept apart too, with a caption.
	img := png + strings.Repeat("\x01", 5000)
	turn := `{"content":[{"type":"text","text":"and this?"},{"type":"image_url","image_url":{"url":"` + dataURL("image/png", img) + `"}}]}`
	if resp, b := do(t, "POST", url+"tc/messages", turn); resp.StatusCode != 200 || !strings.Contains(string(b), "image image/png 5033") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if resp, b := do(t, "POST", url+"tc/messages", `{"content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}`); resp.StatusCode != 400 ||
		!strings.Contains(string(b), `"param":"content[0].image_url"`) {
		t.Errorf("a link: %d %s", resp.StatusCode, b)
	}
	check := func(c conversationJSON) {
		t.Helper()
		m := c.Messages
		// system, user, assistant (calls), tool, tool, assistant, user (image), assistant
		if len(m) != 8 {
			t.Fatalf("%d messages: %+v", len(m), m)
		}
		if m[2].Role != "assistant" || len(m[2].ToolCalls) != 2 || m[2].ToolCalls[1].ID != "call_1b" || m[2].ToolCalls[1].Type != "function" ||
			m[2].ToolCalls[1].Function.Arguments != `{"city":"Oslo"}` || m[2].Content != "Let me check." {
			t.Errorf("the reply that called tools: %+v", m[2])
		}
		if m[3].Role != "tool" || m[3].ToolCallID != "call_1b" || m[3].Content != "snow" || m[4].ToolCallID != "call_1" || m[4].Content != big {
			t.Errorf("the results: %+v %+v", m[3].Message, m[4].ToolCallID)
		}
		if m[5].Content != want || m[5].ToolCalls != nil {
			t.Errorf("the answer %+v", m[5])
		}
		if p := m[6].Parts; m[6].Content != "and this?" || len(p) != 2 || p[0].Type != "text" || *p[0].Text != "and this?" || p[1].Type != "image_url" ||
			p[1].ImageURL.URL != dataURL("image/png", img) {
			t.Errorf("the image message %+v", m[6])
		}
	}
	before := getConversation(t, e.url, "tc")
	check(before)
	// A restart: a new node over the same store.
	e.stop()
	e2 := newToolEnv(t, e.store, e.model)
	after := getConversation(t, e2.url, "tc")
	check(after)
	b1, _ := json.Marshal(before.Messages)
	b2, _ := json.Marshal(after.Messages)
	if string(b1) != string(b2) {
		t.Errorf("after a restart:\n%s\nbefore:\n%s", b2, b1)
	}
	// The next turn's context holds the calls, their results and the
	// image: the model sees the whole history.
	if resp, b := do(t, "POST", e2.url+"/v1/conversations/tc/messages", `{"content":"thanks"}`); resp.StatusCode != 200 ||
		!strings.Contains(string(b), `result call_1 6000; image image/png 5033`) {
		t.Errorf("%d %s", resp.StatusCode, b)
	}
}

// A streamed turn sends the tool calls as delta.tool_calls and stores
// them; a follower of the conversation sees them as tool_call events.
func TestConversationToolsStream(t *testing.T) {
	e := newToolEnv(t, nil, nil)
	if resp, body := do(t, "POST", e.url+"/v1/conversations", `{"id":"ts"}`); resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/conversations/ts/events", nil)
	ev, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Body.Close()
	lines := bufio.NewScanner(ev.Body)
	next := func(want string) string {
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
		t.Fatalf("no %s event: %v", want, lines.Err())
		return ""
	}
	next("subscribed")
	resp, err := http.Post(e.url+"/v1/conversations/ts/messages", "application/json", strings.NewReader(
		`{"stream":true,"content":"weather?","tools":[`+weatherTool+`],"parallel_tool_calls":false}`))
	if err != nil {
		t.Fatal(err)
	}
	frames := sseFrames(t, resp.Body)
	resp.Body.Close()
	all := strings.Join(frames, "\n")
	if !strings.Contains(all, `"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]`) ||
		!strings.Contains(all, `"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]`) || !strings.Contains(all, `"finish_reason":"tool_calls"`) {
		t.Errorf("frames %s", all)
	}
	if d := next("tool_call"); d != `{"index":0,"id":"call_1","name":"get_weather","arguments":"","model":"tm/m"}` {
		t.Errorf("first piece %s", d)
	}
	if d := next("tool_call"); d != `{"index":0,"arguments":"{\"city\":","model":"tm/m"}` {
		t.Errorf("next piece %s", d)
	}
	var m messageJSON
	next("tool_call")
	json.Unmarshal([]byte(next("message")), &m)
	if m.Role != "assistant" || len(m.ToolCalls) != 1 || m.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
		t.Errorf("stored reply %+v", m)
	}
	c := getConversation(t, e.url, "ts")
	if len(c.Messages) != 2 || len(c.Messages[1].ToolCalls) != 1 || c.Messages[1].Parts != nil || c.Messages[1].Content != "Let me check." {
		t.Errorf("%+v", c.Messages)
	}
}
