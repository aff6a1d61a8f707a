package actors

import (
	"errors"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/pb"
)

// Between the domain types and the pb messages that carry them across
// nodes: errors, options, messages, completions, turn results.

func toPBError(err error) *pb.Error {
	if err == nil {
		return nil
	}
	if errors.Is(err, conv.ErrMoved) || errors.Is(err, conv.ErrStale) {
		return &pb.Error{Code: "moved", Message: moltbot.ErrorMessage(err)}
	}
	var e *moltbot.Error
	if errors.As(err, &e) {
		return &pb.Error{Code: e.Code, Message: e.Error(), Param: e.Param, RetryAfterMs: e.RetryAfter.Milliseconds()}
	}
	return &pb.Error{Code: moltbot.EInternal, Message: err.Error()}
}

func fromPBError(e *pb.Error) error {
	if e == nil {
		return nil
	}
	if e.Code == "moved" {
		return conv.Moved()
	}
	return &moltbot.Error{Code: e.Code, Message: e.Message, Param: e.Param, RetryAfter: time.Duration(e.RetryAfterMs) * time.Millisecond}
}

func retriable(err error) bool {
	return errors.Is(err, conv.ErrMoved) || errors.Is(err, errOwnerGone)
}

func toPBOptions(o moltbot.ChatOptions) *pb.Options {
	out := &pb.Options{Model: o.Model, MaxTokens: int32(o.MaxTokens), Temperature: o.Temperature, TopP: o.TopP, Stop: o.Stop, Seed: o.Seed,
		PresencePenalty: o.PresencePenalty, FrequencyPenalty: o.FrequencyPenalty, User: o.User, ParallelToolCalls: o.ParallelToolCalls}
	for _, t := range o.Tools {
		out.Tools = append(out.Tools, &pb.Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict})
	}
	if c := o.ToolChoice; c != nil {
		out.ToolChoiceMode, out.ToolChoiceName = c.Mode, c.Name
	}
	if f := o.ResponseFormat; f != nil {
		out.ResponseFormat = &pb.ResponseFormat{Type: f.Type, Name: f.Name, Schema: f.Schema, Strict: f.Strict}
	}
	return out
}

func fromPBOptions(o *pb.Options) moltbot.ChatOptions {
	if o == nil {
		return moltbot.ChatOptions{}
	}
	out := moltbot.ChatOptions{Model: o.Model, MaxTokens: int(o.MaxTokens), Temperature: o.Temperature, TopP: o.TopP, Stop: o.Stop, Seed: o.Seed,
		PresencePenalty: o.PresencePenalty, FrequencyPenalty: o.FrequencyPenalty, User: o.User, ParallelToolCalls: o.ParallelToolCalls}
	for _, t := range o.Tools {
		out.Tools = append(out.Tools, moltbot.Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict})
	}
	if o.ToolChoiceMode != "" {
		out.ToolChoice = &moltbot.ToolChoice{Mode: o.ToolChoiceMode, Name: o.ToolChoiceName}
	}
	if f := o.ResponseFormat; f != nil {
		out.ResponseFormat = &moltbot.ResponseFormat{Type: f.Type, Name: f.Name, Schema: f.Schema, Strict: f.Strict}
	}
	return out
}

func toPBParts(parts []moltbot.Part) []*pb.Part {
	if parts == nil {
		return nil
	}
	out := make([]*pb.Part, len(parts))
	for i, p := range parts {
		out[i] = &pb.Part{Type: string(p.Type), Text: p.Text, Mime: p.MIME, Data: p.Data, Ref: p.Ref, CallId: p.CallID, Name: p.Name,
			Arguments: p.Arguments, Content: p.Content}
	}
	return out
}

func fromPBParts(parts []*pb.Part) []moltbot.Part {
	if len(parts) == 0 {
		return nil
	}
	out := make([]moltbot.Part, len(parts))
	for i, p := range parts {
		out[i] = moltbot.Part{Type: moltbot.PartType(p.Type), Text: p.Text, MIME: p.Mime, Data: p.Data, Ref: p.Ref, CallID: p.CallId, Name: p.Name,
			Arguments: p.Arguments, Content: p.Content}
	}
	return out
}

func toPBDelta(d *moltbot.ToolCallDelta) *pb.ToolCallDelta {
	if d == nil {
		return nil
	}
	return &pb.ToolCallDelta{Index: int32(d.Index), Id: d.ID, Name: d.Name, Arguments: d.Arguments}
}

func fromPBDelta(d *pb.ToolCallDelta) *moltbot.ToolCallDelta {
	if d == nil {
		return nil
	}
	return &moltbot.ToolCallDelta{Index: int(d.Index), ID: d.Id, Name: d.Name, Arguments: d.Arguments}
}

func toPBMessage(m *moltbot.Message) *pb.Message {
	return &pb.Message{Role: string(m.Role), Content: m.Content, Model: m.Model, Created: m.Created, Incomplete: m.Incomplete, Id: m.ID,
		Parts: toPBParts(m.Parts), Citations: toPBCitations(m.Citations)}
}

func toPBCitations(cs []moltbot.Citation) []*pb.Citation {
	if len(cs) == 0 {
		return nil
	}
	out := make([]*pb.Citation, len(cs))
	for i, c := range cs {
		out[i] = &pb.Citation{N: int32(c.N), Kb: c.KB, Document: c.Document, Heading: c.Heading, Chunk: c.Chunk, Score: c.Score, Snippet: c.Snippet}
	}
	return out
}

// fromPBCitations reads a peer's citations, at most MaxCitations of them.
func fromPBCitations(cs []*pb.Citation) []moltbot.Citation {
	if len(cs) == 0 {
		return nil
	}
	out := make([]moltbot.Citation, 0, min(len(cs), moltbot.MaxCitations))
	for _, c := range cs[:min(len(cs), moltbot.MaxCitations)] {
		out = append(out, moltbot.Citation{N: int(c.N), KB: c.Kb, Document: c.Document, Heading: c.Heading, Chunk: c.Chunk, Score: c.Score, Snippet: c.Snippet})
	}
	return out
}

func fromPBMessage(m *pb.Message) moltbot.Message {
	return moltbot.Message{ID: m.Id, Role: moltbot.Role(m.Role), Content: m.Content, Model: m.Model, Created: m.Created, Incomplete: m.Incomplete,
		Parts: fromPBParts(m.Parts), Citations: fromPBCitations(m.Citations)}
}

func toPBCompletion(c *moltbot.Completion) *pb.Completion {
	if c == nil {
		return nil
	}
	out := &pb.Completion{Content: c.Content, Served: c.Served.String(), Usage: &pb.Usage{PromptTokens: int32(c.Usage.PromptTokens),
		CompletionTokens: int32(c.Usage.CompletionTokens)}, FinishReason: c.FinishReason, Failovers: int32(c.Failovers), TtftUs: c.TTFT.Microseconds()}
	for _, tc := range c.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, &pb.ToolCall{Id: tc.ID, Name: tc.Name, Arguments: tc.Arguments})
	}
	out.Citations = toPBCitations(c.Citations)
	return out
}

func fromPBResult(r *pb.TurnResult) (*TurnResult, error) {
	if r.Error != nil {
		return nil, fromPBError(r.Error)
	}
	out := &TurnResult{Version: r.Version, Replayed: r.Replayed}
	cache := ""
	switch r.Cache {
	case 1, 3:
		cache = moltbot.CacheHit
	case 2:
		cache = moltbot.CacheMiss
	}
	if m := r.Message; m != nil {
		out.Message = fromPBMessage(m)
	}
	if c := r.Completion; c != nil {
		ref, _ := moltbot.ParseModelRef(c.Served)
		out.Completion = &moltbot.Completion{Content: c.Content, Served: ref, FinishReason: c.FinishReason, Failovers: int(c.Failovers),
			TTFT: time.Duration(c.TtftUs) * time.Microsecond, Cache: cache, Citations: fromPBCitations(c.Citations)}
		for _, tc := range c.ToolCalls {
			out.Completion.ToolCalls = append(out.Completion.ToolCalls, moltbot.ToolCall{ID: tc.Id, Name: tc.Name, Arguments: tc.Arguments})
		}
		if c.Usage != nil {
			out.Completion.Usage = moltbot.Usage{PromptTokens: int(c.Usage.PromptTokens), CompletionTokens: int(c.Usage.CompletionTokens)}
		}
	}
	return out, nil
}
