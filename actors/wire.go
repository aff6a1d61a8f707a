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
	return &pb.Options{Model: o.Model, MaxTokens: int32(o.MaxTokens), Temperature: o.Temperature, TopP: o.TopP, Stop: o.Stop, Seed: o.Seed}
}

func fromPBOptions(o *pb.Options) moltbot.ChatOptions {
	if o == nil {
		return moltbot.ChatOptions{}
	}
	return moltbot.ChatOptions{Model: o.Model, MaxTokens: int(o.MaxTokens), Temperature: o.Temperature, TopP: o.TopP, Stop: o.Stop, Seed: o.Seed}
}

func toPBMessage(m *moltbot.Message) *pb.Message {
	return &pb.Message{Role: string(m.Role), Content: m.Content, Model: m.Model, Created: m.Created, Incomplete: m.Incomplete, Id: m.ID}
}

func toPBCompletion(c *moltbot.Completion) *pb.Completion {
	if c == nil {
		return nil
	}
	return &pb.Completion{Content: c.Content, Served: c.Served.String(), Usage: &pb.Usage{PromptTokens: int32(c.Usage.PromptTokens),
		CompletionTokens: int32(c.Usage.CompletionTokens)}, FinishReason: c.FinishReason, Failovers: int32(c.Failovers), TtftUs: c.TTFT.Microseconds()}
}

func fromPBResult(r *pb.TurnResult) (*TurnResult, error) {
	if r.Error != nil {
		return nil, fromPBError(r.Error)
	}
	out := &TurnResult{Version: r.Version, Replayed: r.Replayed}
	if m := r.Message; m != nil {
		out.Message = moltbot.Message{ID: m.Id, Role: moltbot.Role(m.Role), Content: m.Content, Model: m.Model, Created: m.Created, Incomplete: m.Incomplete}
	}
	if c := r.Completion; c != nil {
		ref, _ := moltbot.ParseModelRef(c.Served)
		out.Completion = &moltbot.Completion{Content: c.Content, Served: ref, FinishReason: c.FinishReason, Failovers: int(c.Failovers),
			TTFT: time.Duration(c.TtftUs) * time.Microsecond}
		if c.Usage != nil {
			out.Completion.Usage = moltbot.Usage{PromptTokens: int(c.Usage.PromptTokens), CompletionTokens: int(c.Usage.CompletionTokens)}
		}
	}
	return out, nil
}
