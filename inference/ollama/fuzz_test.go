package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/ollama/ollama/api"
)

// FuzzStream feeds arbitrary NDJSON to the Ollama client: it ends with a
// result or an *inference.Error, never a panic or a hang, and an HTTP error
// status is never a success.
func FuzzStream(f *testing.F) {
	f.Add([]byte(line("a", false)+line("b", false)+line("", true)), 200)
	f.Add([]byte(line("a", false)+`{"error":"boom"}`+"\n"), 200)
	f.Add([]byte(`{"error":"model not found"}`), 404)
	f.Add([]byte("not json\n"), 200)
	f.Add([]byte("\r\n \n"+line("a", false)+strings.Repeat("x", 600)), 200)
	f.Add([]byte(""), 500)
	f.Add([]byte(toolLine(`{"id":"call_a","function":{"index":0,"name":"f","arguments":{"a":1}}},{"function":{"name":"g","arguments":{}}}`)+line("", true)), 200)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		c, err := New(Config{Name: "f", BaseURL: "http://fuzz", MaxLineBytes: 512,
			HTTP: &http.Client{Transport: testutil.BodyTransport{Status: status, ContentType: "application/x-ndjson", Body: body}}})
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		_, err = c.Chat(context.Background(), &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}},
			func(d inference.Delta) error { s := d.Text; text.WriteString(s); return nil })
		if err != nil {
			if _, ok := inference.AsError(err); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
		}
		if status >= 400 && (err == nil || text.Len() > 0) {
			t.Fatalf("status %d: text %q, err %v", status, text.String(), err)
		}
	})
}

// oldChat is the provider as it was, on ollama/api's streaming client, with
// tool calls as the provider gives them (a delta per whole call, indexed
// across the reply, its id or call_<index>): the reference for
// FuzzChatMatchesAPIClient.
func oldChat(ctx context.Context, hc *http.Client, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	u, _ := url.Parse("http://fuzz")
	c := &Client{name: "f"}
	var res inference.Result
	done := false
	calls := 0
	var fnErr error
	err := api.NewClient(u, hc).Chat(ctx, apiRequest(req), func(r api.ChatResponse) error {
		if r.Model != "" {
			res.Model = r.Model
		}
		if r.Message.Content != "" {
			if err := fn(inference.Delta{Text: r.Message.Content}); err != nil {
				fnErr = err
				return err
			}
		}
		for _, tc := range r.Message.ToolCalls {
			id := tc.ID
			if id == "" {
				id = fmt.Sprintf("call_%d", calls)
			}
			args, _ := json.Marshal(tc.Function.Arguments)
			if err := fn(inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: calls, ID: id, Name: tc.Function.Name, Arguments: string(args)}}); err != nil {
				fnErr = err
				return err
			}
			calls++
		}
		if r.Done {
			done = true
			res.FinishReason = r.DoneReason
			if res.FinishReason == "" {
				res.FinishReason = "stop"
			}
			res.Usage = moltbot.Usage{PromptTokens: r.PromptEvalCount, CompletionTokens: r.EvalCount}
		}
		return nil
	})
	if fnErr != nil {
		return res, fnErr
	}
	if err != nil {
		return res, c.classify(ctx, err)
	}
	if !done {
		return res, inference.StreamEnded("f")
	}
	return res, nil
}

// FuzzChatMatchesAPIClient runs the same 200 stream through Chat and through
// ollama/api's client (the provider as it was): the same text, the same
// result, the same kind of error and, for an {"error"} line, its message.
// Streams where the two differ on purpose are left out: blank lines (api
// fails on them, Chat skips them) and lines after the done line (Chat stops
// there).
func FuzzChatMatchesAPIClient(f *testing.F) {
	f.Add([]byte(line("Hel", false) + line("lo", false) + line("", true)))
	f.Add([]byte(line("a", false) + `{"error":"out of memory"}` + "\n"))
	f.Add([]byte(line("a", false) + "{\"done\":true,\"done_reason\":\"length\",\"eval_count\":3}\r\n"))
	f.Add([]byte(`{"model":"m","message":{"content":"x"}}` + "\n" + `{"Done":true}`))
	f.Add([]byte(line("a", false) + `{"done":"yes"}`))
	f.Add([]byte(line("a", false)))
	f.Add([]byte(line("a", false) + toolLine(`{"id":"call_a","function":{"index":0,"name":"f","arguments":{"a":[1,{"b":"é"}]}}},{"function":{"index":1,"name":"g","arguments":{}}}`) +
		toolLine(`{"function":{"name":"h","arguments":{"z":1,"a":2}}}`) + line("", true)))
	f.Add([]byte(toolLine(`{"function":{"name":"f","arguments":null}}`) + line("", true)))
	f.Fuzz(func(t *testing.T, body []byte) {
		lines := bytes.Split(body, []byte{'\n'})
		if len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1] // bufio.ScanLines: no empty last line
		}
		for i, l := range lines {
			l = bytes.TrimSuffix(l, []byte{'\r'})
			if blank(l) {
				return
			}
			var r api.ChatResponse
			if msg, err := decodeSlow(l, &r); err == nil && msg == "" && r.Done && i != len(lines)-1 {
				return
			}
		}
		hc := &http.Client{Transport: testutil.BodyTransport{Status: 200, ContentType: "application/x-ndjson", Body: body}}
		c, err := New(Config{Name: "f", BaseURL: "http://fuzz", HTTP: hc})
		if err != nil {
			t.Fatal(err)
		}
		req := &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}}
		var got, want strings.Builder
		record := func(b *strings.Builder) inference.DeltaFunc {
			return func(d inference.Delta) error {
				if c := d.ToolCall; c != nil {
					fmt.Fprintf(b, "[call %d %q %q %s]", c.Index, c.ID, c.Name, c.Arguments)
				}
				b.WriteString(d.Text)
				return nil
			}
		}
		gres, gerr := c.Chat(context.Background(), req, record(&got))
		wres, werr := oldChat(context.Background(), hc, req, record(&want))
		if got.String() != want.String() {
			t.Fatalf("%q: text %q, api client %q", body, got.String(), want.String())
		}
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: err %v, api client %v", body, gerr, werr)
		}
		if gerr == nil {
			if gres != wres {
				t.Fatalf("%q: %+v, api client %+v", body, gres, wres)
			}
			return
		}
		ge, ok1 := inference.AsError(gerr)
		we, ok2 := inference.AsError(werr)
		if !ok1 || !ok2 || ge.Kind != we.Kind {
			t.Fatalf("%q: err %v, api client %v", body, gerr, werr)
		}
		// Beyond the kind, the message of an {"error"} line or of a stream
		// that ended early is the same; a malformed line is described anew.
		if !strings.HasPrefix(ge.Message, "malformed stream line") && ge.Message != we.Message {
			t.Fatalf("%q: message %q, api client %q", body, ge.Message, we.Message)
		}
	})
}
