package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/openaiwire"
)

// OpenAI's chat completions request, field by field (docs/API.md has the
// table): each field is honoured (carried into moltbot.ChatOptions or the
// messages), accepted at its neutral value only (n 1, logprobs false,
// store false, ...), or refused with a 400 whose param names it. A few
// hints that change neither what a model says nor what is kept
// (prompt_cache_key, stream_options.include_obfuscation, an image's
// detail, a message's name) are accepted and not carried; docs/API.md
// says so. A member that is no field of the request is refused by name
// (decode, openaiwire.UnknownField), so that a typo or a field from a
// newer API is never silently dropped.

// textOf is a content that may only be text (a system prompt, a tool
// result); param names the field.
func textOf(c openaiwire.Content, param string) (string, error) {
	if i := c.NotText(); i >= 0 {
		return "", invalid(fmt.Sprintf("%s[%d]", param, i), "%s[%d]: only text parts are accepted here, got type %q", param, i, c[i].Type)
	}
	return c.Text(), nil
}

// options reads the sampling fields both APIs share; their ranges are the
// chat service's to check (it refuses the turn), except what only the
// wire can tell: a max_tokens sent as 0.
func options(model string, maxTokens, maxCompletion *int, temp, topP *float64, st openaiwire.Stop, seed *int64) (moltbot.ChatOptions, error) {
	o := moltbot.ChatOptions{Model: model, Temperature: temp, TopP: topP, Stop: st, Seed: seed}
	for _, f := range [...]struct {
		name string
		v    *int
	}{{"max_tokens", maxTokens}, {"max_completion_tokens", maxCompletion}} {
		if f.v != nil && *f.v < 1 {
			return o, invalid(f.name, "%s must be at least 1, got %d", f.name, *f.v)
		}
	}
	if maxTokens != nil {
		o.MaxTokens = *maxTokens
	}
	if maxCompletion != nil {
		o.MaxTokens = *maxCompletion
	}
	return o, nil
}

// toolOptions adds a request's tools, tool_choice, parallel_tool_calls and
// response_format to o, as the domain has them.
func toolOptions(o *moltbot.ChatOptions, tools []openaiwire.Tool, choice *openaiwire.ToolChoice, parallel *bool, format *openaiwire.ResponseFormat) error {
	if tools != nil {
		o.Tools = make([]moltbot.Tool, len(tools))
	}
	for i, t := range tools {
		if t.Type != "function" {
			return invalid(fmt.Sprintf("tools[%d].type", i), `tools[%d].type must be "function", got %q`, i, t.Type)
		}
		f := t.Function
		o.Tools[i] = moltbot.Tool{Name: f.Name, Description: f.Description, Strict: f.Strict != nil && *f.Strict}
		if !openaiwire.IsNull(f.Parameters) {
			o.Tools[i].Parameters = f.Parameters
		}
	}
	if choice != nil {
		o.ToolChoice = &moltbot.ToolChoice{Mode: choice.Mode, Name: choice.Name}
	}
	o.ParallelToolCalls = parallel
	if format != nil {
		rf := &moltbot.ResponseFormat{Type: format.Type}
		if format.Type == moltbot.FormatJSONSchema {
			js := format.JSONSchema
			if js == nil {
				return invalid("response_format.json_schema", `response_format of type "json_schema" needs json_schema: {"name":...,"schema":{...}}`)
			}
			rf.Name, rf.Strict = js.Name, js.Strict != nil && *js.Strict
			if !openaiwire.IsNull(js.Schema) {
				rf.Schema = js.Schema
			}
		}
		o.ResponseFormat = rf
	}
	return nil
}

// requestOptions is the request's options, every field carried.
func requestOptions(req *openaiwire.ChatRequest) (moltbot.ChatOptions, error) {
	o, err := options(req.Model, req.MaxTokens, req.MaxCompletionTokens, req.Temperature, req.TopP, req.Stop, req.Seed)
	if err != nil {
		return o, err
	}
	o.PresencePenalty, o.FrequencyPenalty = req.PresencePenalty, req.FrequencyPenalty
	if req.User != nil {
		o.User = *req.User
	}
	// safety_identifier is OpenAI's newer name for the end user's id.
	if x := req.Extras; x != nil && x.SafetyIdentifier != nil {
		if o.User != "" && o.User != *x.SafetyIdentifier {
			return o, invalid("safety_identifier", "safety_identifier and user both name the end user and differ; send one")
		}
		o.User = *x.SafetyIdentifier
	}
	return o, toolOptions(&o, req.Tools, req.ToolChoice, req.ParallelToolCalls, req.ResponseFormat)
}

// refuseUnsupported answers the fields moltbot takes at their neutral value
// only: another value is a 400 that names the field and says why.
func refuseUnsupported(req *openaiwire.ChatRequest) error {
	if req.N != nil && *req.N != 1 {
		return invalid("n", "only n=1 is supported: moltbot returns one choice")
	}
	x := req.Extras
	if x == nil {
		return nil
	}
	switch {
	case x.Logprobs != nil && *x.Logprobs:
		return invalid("logprobs", "logprobs are not returned: not every model behind moltbot gives them")
	case x.TopLogprobs != nil && *x.TopLogprobs != 0:
		return invalid("top_logprobs", "top_logprobs is not supported: logprobs are not returned")
	case len(x.LogitBias) > 0:
		return invalid("logit_bias", "logit_bias is not supported: token ids belong to one model's tokenizer, and a request may be served by another")
	case x.Store != nil && *x.Store:
		return invalid("store", "store is not supported: moltbot keeps no completions; keep a dialogue with the conversations API (/v1/conversations)")
	case len(x.Metadata) > 0:
		return invalid("metadata", "metadata is kept with stored completions, which moltbot does not keep (store)")
	case x.ServiceTier != nil && *x.ServiceTier != "auto" && *x.ServiceTier != "default":
		return invalid("service_tier", `service_tier %q is not supported; leave it out, or use "auto" or "default"`, *x.ServiceTier)
	case !openaiwire.IsNull(x.Audio):
		return invalid("audio", "audio replies are not supported: moltbot replies with text")
	case !openaiwire.IsNull(x.Prediction):
		return invalid("prediction", "predicted outputs are not supported")
	case x.ReasoningEffort != nil:
		return invalid("reasoning_effort", "reasoning_effort is not carried to models; leave it out")
	case x.Verbosity != nil && *x.Verbosity != "medium":
		return invalid("verbosity", `verbosity %q is not carried to models; leave it out (or "medium")`, *x.Verbosity)
	case !openaiwire.IsNull(x.WebSearchOptions):
		return invalid("web_search_options", "web search is not supported: the node searches nothing itself; offer a search tool (tools) instead")
	case !openaiwire.IsNull(x.Functions):
		return invalid("functions", "functions is deprecated and not supported: send tools")
	case !openaiwire.IsNull(x.FunctionCall):
		return invalid("function_call", "function_call is deprecated and not supported: send tool_choice")
	case x.PromptCacheKey != nil && len(*x.PromptCacheKey) > 1024:
		return invalid("prompt_cache_key", "prompt_cache_key is %d bytes; at most 1024 are allowed", len(*x.PromptCacheKey))
	}
	for i, m := range x.Modalities {
		if m != "text" {
			return invalid(fmt.Sprintf("modalities[%d]", i), `only text replies are supported (modalities ["text"]), got %q`, m)
		}
	}
	return nil
}

// toMessages converts a request's messages to the domain's: content parts
// to Parts (text and images, an image decoded from its data URL), an
// assistant's tool_calls to tool_call parts, a tool message to one
// tool_result part. A message of text only stays text (Parts nil): the
// plain path allocates nothing more.
func (s *Server) toMessages(in []openaiwire.Message) ([]moltbot.Message, error) {
	out := make([]moltbot.Message, len(in))
	maxImage := s.chat.Config().MaxImageBytes
	for i := range in {
		m := &in[i]
		role := moltbot.Role(m.Role)
		switch m.Role {
		case "developer":
			role = moltbot.RoleSystem
		case "function":
			return nil, invalid(fmt.Sprintf("messages[%d].role", i), `messages[%d]: the "function" role is deprecated and not supported: send a "tool" message with tool_call_id`, i)
		}
		if err := messageExtras(m, i); err != nil {
			return nil, err
		}
		if len(m.ToolCalls) > 0 && role != moltbot.RoleAssistant {
			return nil, invalid(fmt.Sprintf("messages[%d].tool_calls", i), "messages[%d]: only an assistant message has tool_calls", i)
		}
		if m.ToolCallID != "" && role != moltbot.RoleTool {
			return nil, invalid(fmt.Sprintf("messages[%d].tool_call_id", i), "messages[%d]: only a tool message has tool_call_id", i)
		}
		msg := &out[i]
		msg.Role = role
		if role == moltbot.RoleTool {
			text, err := textOf(m.Content, fmt.Sprintf("messages[%d].content", i))
			if err != nil {
				return nil, err
			}
			if m.ToolCallID != "" {
				msg.Parts = []moltbot.Part{{Type: moltbot.PartToolResult, CallID: m.ToolCallID, Content: text}}
			}
			continue
		}
		if m.Content.NotText() < 0 {
			msg.Content = m.Content.Text()
			if m.MessageExtras != nil && m.Refusal != nil && msg.Content == "" {
				msg.Content = *m.Refusal // what the assistant said, sent back
			}
		} else {
			parts, err := contentParts(m.Content, role, i, maxImage)
			if err != nil {
				return nil, err
			}
			msg.Parts, msg.Content = parts, moltbot.TextOf(parts)
		}
		if len(m.ToolCalls) > 0 {
			if err := addCalls(msg, m.ToolCalls, i); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// messageExtras refuses what a client may send back with a reply that
// moltbot cannot take: the deprecated function_call, an audio reply.
func messageExtras(m *openaiwire.Message, i int) error {
	x := m.MessageExtras
	switch {
	case x == nil:
		return nil
	case !openaiwire.IsNull(x.FunctionCall):
		return invalid(fmt.Sprintf("messages[%d].function_call", i), "messages[%d]: function_call is deprecated and not supported: send tool_calls", i)
	case !openaiwire.IsNull(x.Audio):
		return invalid(fmt.Sprintf("messages[%d].audio", i), "messages[%d]: audio replies are not supported", i)
	}
	return nil
}

// contentParts converts a content that is more than text: text parts and
// (in a user message) images given as data URLs, at most maxImage bytes
// each.
func contentParts(c openaiwire.Content, role moltbot.Role, i, maxImage int) ([]moltbot.Part, error) {
	parts := make([]moltbot.Part, 0, len(c))
	for j, p := range c {
		at := fmt.Sprintf("messages[%d].content[%d]", i, j)
		switch {
		case p.Type == "text" && p.Text != nil:
			parts = append(parts, moltbot.Part{Type: moltbot.PartText, Text: *p.Text})
		case p.Type == "text":
			return nil, invalid(at+".text", "%s: a text part needs text", at)
		case p.Type == "image_url" && role != moltbot.RoleUser:
			return nil, invalid(at, "%s: only a user message holds images", at)
		case p.Type == "image_url":
			img, err := imagePart(p.ImageURL, at, maxImage)
			if err != nil {
				return nil, err
			}
			parts = append(parts, img)
		default:
			return nil, invalid(at+".type", `%s: only "text" and "image_url" parts are supported, got type %q`, at, p.Type)
		}
	}
	return parts, nil
}

// imagePart decodes an image part's data URL (at names the part).
func imagePart(u *openaiwire.ImageURL, at string, maxImage int) (moltbot.Part, error) {
	if u == nil || u.URL == "" {
		return moltbot.Part{}, invalid(at+".image_url", `%s: an image part needs image_url: {"url":"data:image/png;base64,..."}`, at)
	}
	switch u.Detail {
	case "", "auto", "low", "high":
	default:
		return moltbot.Part{}, invalid(at+".image_url.detail", `%s.image_url.detail must be "auto", "low" or "high", got %q`, at, u.Detail)
	}
	mime, data, err := openaiwire.DecodeImageURL(u.URL, maxImage)
	if err != nil {
		var ie *openaiwire.ImageError
		if errors.As(err, &ie) && ie.TooLarge {
			return moltbot.Part{}, &moltbot.Error{Code: moltbot.ETooLarge, Param: at + ".image_url",
				Message: fmt.Sprintf("%s.image_url: %s (conversations.max_image_bytes)", at, err)}
		}
		return moltbot.Part{}, invalid(at+".image_url", "%s.image_url: %s", at, err)
	}
	return moltbot.Part{Type: moltbot.PartImage, MIME: mime, Data: data}, nil
}

// addCalls makes msg an assistant message with tool calls: its text (if
// any) as a text part, then one tool_call part per call.
func addCalls(msg *moltbot.Message, calls []openaiwire.ToolCall, i int) error {
	if msg.Parts == nil && msg.Content != "" {
		msg.Parts = []moltbot.Part{{Type: moltbot.PartText, Text: msg.Content}}
	}
	for j, c := range calls {
		if c.Type != "" && c.Type != "function" {
			return invalid(fmt.Sprintf("messages[%d].tool_calls[%d].type", i, j), `messages[%d].tool_calls[%d].type must be "function", got %q`, i, j, c.Type)
		}
		msg.Parts = append(msg.Parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
	}
	return nil
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req openaiwire.ChatRequest
	if err := s.decodeChat(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := refuseUnsupported(&req); err != nil {
		writeError(w, err)
		return
	}
	msgs, err := s.toMessages(req.Messages)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := requestOptions(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	w, r, ok := s.withCache(w, r)
	if !ok {
		return
	}
	creq := chat.CompletionRequest{Messages: msgs, Options: opts, Stream: req.Stream}
	if !req.Stream {
		res, err := s.chat.CompleteWhole(r.Context(), principal(r), creq)
		if err != nil {
			writeError(w, err)
			return
		}
		s.writeCompletion(w, s.newID("chatcmpl-"), time.Now().Unix(), res.Completion)
		return
	}
	st, err := s.chat.Complete(r.Context(), principal(r), creq)
	if err != nil {
		writeError(w, err)
		return
	}
	s.relay(w, st, newChunkWriter(w, s.newID("chatcmpl-"), time.Now().Unix()), req.IncludeUsage())
}

// fingerprint is the system_fingerprint of every completion and chunk.
const fingerprint = "moltbot"

// writeCompletion writes a chat.completion object.
func (s *Server) writeCompletion(w http.ResponseWriter, id string, created int64, comp *moltbot.Completion) {
	served := comp.Served.String()
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["X-Moltbot-Provider"] = []string{served}
	h["X-Moltbot-Failovers"] = countValue(comp.Failovers)
	bp := bodyBufs.Get().(*[]byte)
	b := openaiwire.AppendHead((*bp)[:0], id, openaiwire.ObjectCompletion, created, served, fingerprint)
	b = openaiwire.AppendReply(b, comp.Content, comp.ToolCalls, comp.FinishReason, comp.Usage)
	b = appendCitations(b, comp.Citations)
	b = append(b, '\n')
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		bodyBufs.Put(bp)
	}
}

// bodyBufs hold completion bodies while they are written (w.Write copies).
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	out := openaiwire.ModelList{Object: "list"}
	created := s.started.Unix()
	for _, m := range s.chat.Models(principal(r)) {
		owner := m.Provider
		if owner == "" {
			owner = "moltbot"
		}
		out.Data = append(out.Data, openaiwire.Model{ID: m.ID, Object: "model", Created: created, OwnedBy: owner})
	}
	writeJSON(w, http.StatusOK, out)
}
