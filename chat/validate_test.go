package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

func user(s string) moltbot.Message { return moltbot.Message{Role: moltbot.RoleUser, Content: s} }

func calls(text string, ids ...string) moltbot.Message {
	m := moltbot.Message{Role: moltbot.RoleAssistant, Content: text}
	if text != "" {
		m.Parts = append(m.Parts, moltbot.Part{Type: moltbot.PartText, Text: text})
	}
	for _, id := range ids {
		m.Parts = append(m.Parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: id, Name: "get_weather", Arguments: `{"city":"Paris"}`})
	}
	return m
}

func result(id, content string) moltbot.Message {
	return moltbot.Message{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: id, Content: content}}}
}

func image(mime string, n int) moltbot.Part {
	return moltbot.Part{Type: moltbot.PartImage, MIME: mime, Data: []byte(strings.Repeat("x", n))}
}

// The tool-call history: every result answers a call made before it and
// every call is answered before the next message that is not a result.
func TestValidMessagesTools(t *testing.T) {
	s := New(newFake(), nil, Config{MaxMessageBytes: 64, MaxImageBytes: 100})
	withImage := moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "what is it?"}, image("image/png", 10)}}
	withImage.Content = moltbot.TextOf(withImage.Parts)
	onlyImage := moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{image("image/webp", 10)}}
	for _, msgs := range [][]moltbot.Message{
		{user("hi")},
		{user("weather?"), calls("", "c1"), result("c1", "sunny")},
		{user("weather?"), calls("let me see", "c1", "c2"), result("c2", ""), result("c1", "rain"), user("thanks")},
		{user("a"), calls("", "c1"), result("c1", "x"), calls("", "c2"), result("c2", "y"), {Role: moltbot.RoleAssistant, Content: "done"}},
		// Ids unique within a reply only, as some servers number them.
		{user("a"), calls("", "call_0"), result("call_0", "x"), user("b"), calls("", "call_0", "call_1"), result("call_1", "y"), result("call_0", "z")},
		{withImage},
		{onlyImage},
	} {
		if err := s.validMessages(msgs); err != nil {
			t.Errorf("%+v: %v", msgs, err)
		}
	}
	noName := calls("", "c1")
	noName.Parts[0].Name = "get weather"
	noID := calls("", "")
	empty := moltbot.Message{Role: moltbot.RoleAssistant}
	imageInAssistant := calls("x")
	imageInAssistant.Parts = append(imageInAssistant.Parts, image("image/png", 1))
	cases := []struct {
		name  string
		msgs  []moltbot.Message
		code  string
		param string
		msg   string
	}{
		{"result without its call", []moltbot.Message{user("a"), result("c9", "x")}, moltbot.EInvalid, "messages[1].tool_call_id", "answers no tool call"},
		{"result before its call", []moltbot.Message{user("a"), result("c1", "x"), calls("", "c1")}, moltbot.EInvalid, "messages[1].tool_call_id", "answers no tool call"},
		{"answered twice", []moltbot.Message{user("a"), calls("", "c1"), result("c1", "x"), result("c1", "y")}, moltbot.EInvalid, "messages[3].tool_call_id", "answered twice"},
		{"unanswered, then a user", []moltbot.Message{user("a"), calls("", "c1", "c2"), result("c1", "x"), user("b")}, moltbot.EInvalid, "messages", "not answered: c2"},
		{"unanswered at the end", []moltbot.Message{user("a"), calls("", "c1")}, moltbot.EInvalid, "messages", "the end of messages"},
		{"result of an older call", []moltbot.Message{user("a"), calls("", "c1"), result("c1", "x"), calls("", "c2"), result("c1", "y")}, moltbot.EInvalid, "messages[4].tool_call_id", "answers no tool call"},
		{"same id twice", []moltbot.Message{user("a"), calls("", "c1", "c1")}, moltbot.EInvalid, "messages[1].tool_calls[1].id", "used twice in one message"},
		{"tool without id", []moltbot.Message{user("a"), {Role: moltbot.RoleTool, Content: "x"}}, moltbot.EInvalid, "messages[1].tool_call_id", "needs tool_call_id"},
		{"call without id", []moltbot.Message{user("a"), noID}, moltbot.EInvalid, "messages[1].tool_calls[0].id", "needs its id"},
		{"bad call name", []moltbot.Message{user("a"), noName}, moltbot.EInvalid, "messages[1].tool_calls[0].function.name", "1 to 64"},
		{"empty assistant", []moltbot.Message{user("a"), empty}, moltbot.EInvalid, "messages[1].content", "must not be empty"},
		{"empty user", []moltbot.Message{user("")}, moltbot.EInvalid, "messages[0].content", "must not be empty"},
		{"image in an assistant message", []moltbot.Message{user("a"), imageInAssistant}, moltbot.EInvalid, "messages[1].content", "not image"},
		{"big image", []moltbot.Message{{Role: moltbot.RoleUser, Parts: []moltbot.Part{image("image/png", 101)}}}, moltbot.ETooLarge, "messages[0].content[0]", "max_image_bytes"},
		{"svg", []moltbot.Message{{Role: moltbot.RoleUser, Parts: []moltbot.Part{image("image/svg+xml", 1)}}}, moltbot.EInvalid, "messages[0].content[0]", "not accepted"},
		{"big result", []moltbot.Message{user("a"), calls("", "c1"), result("c1", strings.Repeat("x", 65))}, moltbot.ETooLarge, "messages[2].content", "max_message_bytes"},
	}
	for _, tc := range cases {
		err := s.validMessages(tc.msgs)
		var me *moltbot.Error
		if !errors.As(err, &me) || me.Code != tc.code || me.Param != tc.param || !strings.Contains(me.Message, tc.msg) {
			t.Errorf("%s: %v (param %q), want %s on %s saying %q", tc.name, err, paramOf(err), tc.code, tc.param, tc.msg)
		}
	}
	many := []moltbot.Message{{Role: moltbot.RoleUser}}
	for range MaxImages + 1 {
		many[0].Parts = append(many[0].Parts, image("image/gif", 1))
	}
	if err := s.validMessages(many); paramOf(err) != "messages[0].content" {
		t.Errorf("too many images: %v", err)
	}
}

func paramOf(err error) string {
	var me *moltbot.Error
	if errors.As(err, &me) {
		return me.Param
	}
	return ""
}

// Checking a plain text chat costs no allocation (it is on every request).
func TestValidMessagesAllocs(t *testing.T) {
	s := New(newFake(), nil, Config{})
	msgs := []moltbot.Message{{Role: moltbot.RoleSystem, Content: "be brief"}, user("hi"), {Role: moltbot.RoleAssistant, Content: "hello"}, user("again")}
	if n := testing.AllocsPerRun(100, func() {
		if err := s.validMessages(msgs); err != nil {
			t.Fatal(err)
		}
		if err := validOptions(moltbot.ChatOptions{MaxTokens: 4}); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestValidOptionsTools(t *testing.T) {
	obj := json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}}}`)
	tool := func(name string) moltbot.Tool { return moltbot.Tool{Name: name, Parameters: obj} }
	yes, pp, big := true, 2.5, -2.0
	ok := []moltbot.ChatOptions{
		{Tools: []moltbot.Tool{tool("get_weather"), {Name: "no-params_1"}}},
		{Tools: []moltbot.Tool{tool("a")}, ToolChoice: &moltbot.ToolChoice{Mode: "function", Name: "a"}, ParallelToolCalls: &yes},
		{Tools: []moltbot.Tool{tool("a")}, ToolChoice: &moltbot.ToolChoice{Mode: "required"}},
		{ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Name: "answer", Schema: obj, Strict: true}},
		{ResponseFormat: &moltbot.ResponseFormat{Type: "json_object"}},
		{PresencePenalty: &big, User: "u-1"},
	}
	for _, o := range ok {
		if err := validOptions(o); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	var lots []moltbot.Tool
	for i := range MaxTools + 1 {
		lots = append(lots, tool(fmt.Sprintf("t%d", i)))
	}
	for param, o := range map[string]moltbot.ChatOptions{
		"tools":                              {Tools: lots},
		"tools[1].function.name":             {Tools: []moltbot.Tool{tool("a"), tool("a")}},
		"tools[0].function.name":             {Tools: []moltbot.Tool{tool(strings.Repeat("a", 65))}},
		"tools[0].function.parameters":       {Tools: []moltbot.Tool{{Name: "a", Parameters: json.RawMessage(`[1]`)}}},
		"tool_choice":                        {Tools: []moltbot.Tool{tool("a")}, ToolChoice: &moltbot.ToolChoice{Mode: "function", Name: "b"}},
		"parallel_tool_calls":                {ParallelToolCalls: &yes},
		"response_format.json_schema.name":   {ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Schema: obj}},
		"response_format.json_schema.schema": {ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Name: "x", Schema: json.RawMessage(`"s"`)}},
		"response_format.type":               {ResponseFormat: &moltbot.ResponseFormat{Type: "yaml"}},
		"presence_penalty":                   {PresencePenalty: &pp},
		"frequency_penalty":                  {FrequencyPenalty: &pp},
		"user":                               {User: strings.Repeat("u", 257)},
	} {
		if got := paramOf(validOptions(o)); got != param {
			t.Errorf("%s: refused on %q", param, got)
		}
	}
	if got := paramOf(validOptions(moltbot.ChatOptions{ToolChoice: &moltbot.ToolChoice{Mode: "none"}})); got != "tool_choice" {
		t.Errorf("tool_choice without tools: %q", got)
	}
	if got := paramOf(validOptions(moltbot.ChatOptions{Tools: []moltbot.Tool{tool("a")}, ToolChoice: &moltbot.ToolChoice{Mode: "sometimes"}})); got != "tool_choice" {
		t.Errorf("a mode that is none: %q", got)
	}
}

func TestValidTurn(t *testing.T) {
	s := New(newFake(), nil, Config{MaxMessageBytes: 64, MaxImageBytes: 100})
	res := func(id, c string) moltbot.Part {
		return moltbot.Part{Type: moltbot.PartToolResult, CallID: id, Content: c}
	}
	parts := []moltbot.Part{{Type: moltbot.PartText, Text: "this?"}, image("image/jpeg", 5)}
	for _, in := range []moltbot.TurnInput{
		{Content: "x"},
		{ToolResults: []moltbot.Part{res("c1", "sunny"), res("c2", "")}},
		{Content: "thanks", ToolResults: []moltbot.Part{res("c1", "x")}},
		{Content: "this?", Parts: parts},
		{Parts: parts[1:]},
	} {
		if err := s.validTurn(&in); err != nil {
			t.Errorf("%+v: %v", in, err)
		}
	}
	for param, in := range map[string]moltbot.TurnInput{
		"content":                      {},
		"tool_results[1].tool_call_id": {ToolResults: []moltbot.Part{res("c1", "x"), res("c1", "y")}},
		"tool_results[0].tool_call_id": {ToolResults: []moltbot.Part{res("", "x")}},
		"tool_results[0].content":      {ToolResults: []moltbot.Part{res("c1", strings.Repeat("x", 65))}},
		"content[1]":                   {Content: "this?", Parts: []moltbot.Part{parts[0], image("image/jpeg", 101)}},
	} {
		if got := paramOf(s.validTurn(&in)); got != param {
			t.Errorf("%s: refused on %q", param, got)
		}
	}
}
