//go:build !race && !edge

package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// callingModel calls the first tool offered, its call streamed in two
// pieces, unless the last message is a tool result; then (or without
// tools) it says what it was given: the options and parts that crossed.
type callingModel struct {
	mu   sync.Mutex
	last inference.Request
}

func (m *callingModel) Models(context.Context) ([]string, error) { return nil, nil }

func (m *callingModel) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	m.mu.Lock()
	m.last = *req
	m.mu.Unlock()
	if len(req.Tools) > 0 && req.Messages[len(req.Messages)-1].Role != moltbot.RoleTool {
		for _, d := range []*moltbot.ToolCallDelta{{Index: 0, ID: "call_x", Name: req.Tools[0].Name, Arguments: `{"q":`}, {Index: 0, Arguments: `"moltbot"}`}} {
			if err := fn(inference.Delta{ToolCall: d}); err != nil {
				return inference.Result{}, err
			}
		}
		return inference.Result{FinishReason: "tool_calls"}, nil
	}
	var saw []string
	for _, msg := range req.Messages {
		for _, p := range msg.Parts {
			switch p.Type {
			case moltbot.PartToolCall:
				saw = append(saw, "call "+p.CallID+" "+p.Arguments)
			case moltbot.PartToolResult:
				saw = append(saw, "result "+p.CallID+" "+p.Content)
			case moltbot.PartImage:
				saw = append(saw, fmt.Sprintf("image %s %d", p.MIME, len(p.Data)))
			}
		}
	}
	if err := fn(inference.Delta{Text: strings.Join(saw, "; ")}); err != nil {
		return inference.Result{}, err
	}
	return inference.Result{FinishReason: "stop"}, nil
}

// A turn forwarded to the conversation's owner carries its options (tools,
// tool_choice, response_format, penalties), its parts (an image) and its
// tool results; the owner's tool-call chunks reach the caller and a
// follower on another node; the stored reply keeps its calls, and every
// node reads the same history with its parts.
func TestClusterToolTurns(t *testing.T) {
	model := &callingModel{}
	nodes := []*tnode{startNodeWith(t, nodeOpts{provider: model})}
	nodes = append(nodes, startNodeWith(t, nodeOpts{seed: nodes[0].cl.ID(), provider: model}))
	converge(t, nodes)
	c, err := nodes[0].rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owner := ownerNode(nodes, "default", c.ID)
	via := nodes[0]
	if via == owner {
		via = nodes[1]
	}
	evs := newEvents()
	go func() { _ = via.rt.Subscribe(ctx(t), "default", c.ID, evs.add) }()
	evs.until(t, "subscribed", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventSubscribed })

	pp, yes := 0.5, true
	opts := moltbot.ChatOptions{PresencePenalty: &pp, User: "u1", ParallelToolCalls: &yes,
		Tools:          []moltbot.Tool{{Name: "search", Description: "find", Parameters: json.RawMessage(`{"type":"object"}`), Strict: true}},
		ToolChoice:     &moltbot.ToolChoice{Mode: moltbot.ToolChoiceFunction, Name: "search"},
		ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "r", Schema: json.RawMessage(`{"type":"object"}`)}}
	var pieces []moltbot.ToolCallDelta
	res, err := via.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "look it up", Options: opts}, func(ch moltbot.Chunk) error {
		if ch.ToolCall != nil {
			pieces = append(pieces, *ch.ToolCall)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	model.mu.Lock()
	got := model.last.ChatOptions
	model.mu.Unlock()
	if *got.PresencePenalty != 0.5 || got.User != "u1" || !*got.ParallelToolCalls || len(got.Tools) != 1 || !got.Tools[0].Strict ||
		string(got.Tools[0].Parameters) != `{"type":"object"}` || *got.ToolChoice != *opts.ToolChoice || got.ResponseFormat.Name != "r" {
		t.Errorf("options on the owner: %+v", got)
	}
	want := moltbot.ToolCall{ID: "call_x", Name: "search", Arguments: `{"q":"moltbot"}`}
	if len(pieces) != 2 || pieces[0].ID != "call_x" || pieces[1].Arguments != `"moltbot"}` {
		t.Errorf("pieces %+v", pieces)
	}
	if c := res.Completion; len(c.ToolCalls) != 1 || c.ToolCalls[0] != want || c.FinishReason != "tool_calls" {
		t.Errorf("completion %+v", c)
	}
	if p := res.Message.Parts; len(p) != 1 || p[0].Type != moltbot.PartToolCall || p[0].CallID != "call_x" {
		t.Errorf("stored reply %+v", res.Message)
	}
	evs.until(t, "a piece of the call", func(ev moltbot.Event) bool {
		return ev.Kind == moltbot.EventToolCall && ev.ToolCall.ID == "call_x" && ev.ToolCall.Name == "search"
	})
	evs.until(t, "the reply with its call", func(ev moltbot.Event) bool {
		return ev.Kind == moltbot.EventMessage && ev.Message.Role == moltbot.RoleAssistant && len(ev.Message.Parts) == 1
	})

	// The results and an image, forwarded.
	img := "\x89PNG\r\n\x1a\n" + strings.Repeat("\x00", 5000)
	parts := []moltbot.Part{{Type: moltbot.PartText, Text: "and this"}, {Type: moltbot.PartImage, MIME: "image/png", Data: []byte(img)}}
	in := moltbot.TurnInput{Content: "and this", Parts: parts, ExternalID: "e-1",
		ToolResults: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_x", Content: "found it"}}}
	res, err = via.rt.Turn(ctx(t), "default", c.ID, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if say := `call call_x {"q":"moltbot"}; result call_x found it; image image/png 5008`; res.Message.Content != say {
		t.Errorf("the owner's model got %q, want %q", res.Message.Content, say)
	}
	// The same external id again: replayed, not run.
	again, err := via.rt.Turn(ctx(t), "default", c.ID, in, nil)
	if err != nil || !again.Replayed || again.Message.ID != res.Message.ID {
		t.Errorf("retry: %+v %v", again, err)
	}
	for i, n := range nodes {
		conv, err := n.rt.Get(ctx(t), "default", c.ID)
		if err != nil {
			t.Fatal(err)
		}
		m := conv.Messages
		// user, assistant (call), tool, user (image), assistant
		if len(m) != 5 || m[1].Parts[0].Name != "search" || m[2].Role != moltbot.RoleTool || m[2].Parts[0].Content != "found it" ||
			m[3].Parts[1].MIME != "image/png" || string(m[3].Parts[1].Data) != img || m[3].ExternalID() != "e-1" {
			t.Errorf("node %d holds %+v", i, m)
		}
	}
}
