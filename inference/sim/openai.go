package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/jsonw"
)

func openaiError(w http.ResponseWriter, status int, typ, msg string) {
	openaiErrorParam(w, status, typ, msg, "")
}

// openaiErrorParam writes an error that names the request field (param).
func openaiErrorParam(w http.ResponseWriter, status int, typ, msg, param string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(openaiwire.AppendError(nil, msg, typ, param, ""), '\n'))
}

// openaiFailure writes an injected failure with the type OpenAI gives its status.
func openaiFailure(w http.ResponseWriter, status int) {
	typ := "server_error"
	if status == http.StatusTooManyRequests {
		typ = "rate_limit_error"
	}
	openaiError(w, status, typ, "simulated failure")
}

func (s *Server) openaiChat(w http.ResponseWriter, r *http.Request) {
	var req openaiwire.ChatRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		var fe *openaiwire.FieldError
		param := ""
		if errors.As(err, &fe) {
			param = fe.Param
		}
		openaiErrorParam(w, http.StatusBadRequest, "invalid_request_error", "invalid request: "+err.Error(), param)
		return
	}
	if req.Model == "" {
		openaiError(w, http.StatusBadRequest, "invalid_request_error", "model is required")
		return
	}
	if len(req.Messages) == 0 {
		openaiError(w, http.StatusBadRequest, "invalid_request_error", "messages must not be empty")
		return
	}
	plain := openaiPlain(&req)
	var rich *inference.Request
	var rerr *RequestError
	if plain {
		rerr = s.Engine.check(&inference.Request{Model: req.Model})
	} else if rich, rerr = openaiToRequest(&req); rerr == nil {
		rerr = s.Engine.check(rich)
	}
	if rerr != nil {
		openaiErrorParam(w, http.StatusBadRequest, "invalid_request_error", rerr.Msg, rerr.Param)
		return
	}
	if fail, status, retry := s.Engine.Fail(); fail {
		setRetryAfter(w, retry)
		openaiFailure(w, status)
		return
	}
	maxTok := 0
	if req.MaxTokens != nil {
		maxTok = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil && *req.MaxCompletionTokens > 0 {
		maxTok = *req.MaxCompletionTokens
	}
	if !plain {
		rich.MaxTokens = maxTok
		s.openaiRich(w, r, &req, rich)
		return
	}
	msgs := make([]moltbot.Message, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = moltbot.Message{Role: moltbot.Role(m.Role), Content: m.Content.Text()}
	}
	now := time.Now()
	id := "chatcmpl-sim" + jsonInt(now.UnixNano())
	created := now.Unix()
	const fingerprint = "moltbot-sim"
	bp := s.buf()
	defer s.put(bp)
	if !req.Stream {
		var text strings.Builder
		rep, err := s.Engine.Generate(r.Context(), msgs, maxTok, func(tok string) error {
			text.WriteString(tok)
			return nil
		})
		if errors.Is(err, ErrDropped) {
			panic(http.ErrAbortHandler)
		}
		if err != nil {
			return
		}
		b := openaiwire.AppendHead((*bp)[:0], id, openaiwire.ObjectCompletion, created, req.Model, fingerprint)
		b = openaiwire.AppendMessage(b, text.String(), rep.FinishReason, rep.Usage)
		b = append(b, '\n')
		*bp = b
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	burst := s.burst() // see ollamaChat
	sent := 0
	send := func(b []byte) error {
		*bp = b
		if _, err := w.Write(b); err != nil {
			return err
		}
		sent++
		if fl != nil && (!burst || sent == 1) {
			fl.Flush()
		}
		return nil
	}
	first := true
	rep, err := s.Engine.Generate(r.Context(), msgs, maxTok, func(tok string) error {
		b := append((*bp)[:0], "data: "...)
		b = openaiwire.AppendHead(b, id, openaiwire.ObjectChunk, created, req.Model, fingerprint)
		b = openaiwire.AppendDelta(b, tok, first)
		first = false
		return send(append(b, "\n\n"...))
	})
	if errors.Is(err, ErrDropped) {
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		return
	}
	b := append((*bp)[:0], "data: "...)
	b = openaiwire.AppendHead(b, id, openaiwire.ObjectChunk, created, req.Model, fingerprint)
	b = openaiwire.AppendFinish(b, rep.FinishReason)
	b = append(b, "\n\n"...)
	if req.IncludeUsage() {
		b = append(b, "data: "...)
		b = openaiwire.AppendHead(b, id, openaiwire.ObjectChunk, created, req.Model, fingerprint)
		b = openaiwire.AppendUsageChunk(b, rep.Usage)
		b = append(b, "\n\n"...)
	}
	b = append(b, "data: [DONE]\n\n"...)
	send(b)
}

func jsonInt(v int64) string { return string(jsonw.Int(nil, v)) }

// openaiPlain reports whether the request is text only (see Plain); the
// rest take openaiToRequest and openaiRich.
func openaiPlain(req *openaiwire.ChatRequest) bool {
	if len(req.Tools) > 0 || req.ToolChoice != nil || req.ParallelToolCalls != nil ||
		req.ResponseFormat != nil && req.ResponseFormat.Type != moltbot.FormatText {
		return false
	}
	for i := range req.Messages {
		if m := &req.Messages[i]; m.Role == "tool" || len(m.ToolCalls) > 0 || m.Content.NotText() >= 0 {
			return false
		}
	}
	return true
}

// openaiToolName is what OpenAI takes as a function's name.
func openaiToolName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// openaiToRequest reads an OpenAI chat request as moltbot's, checking
// what OpenAI checks: image parts are data: URLs (or links), a tool message
// answers a call of the assistant message before it and every call is
// answered, tool_choice and parallel_tool_calls come with tools, a format
// is text, json_object or json_schema (with a name).
func openaiToRequest(in *openaiwire.ChatRequest) (*inference.Request, *RequestError) {
	req := &inference.Request{Model: in.Model, Messages: make([]moltbot.Message, len(in.Messages))}
	for i := range in.Messages {
		m := &in.Messages[i]
		role := moltbot.Role(m.Role)
		if role == "developer" {
			role = moltbot.RoleSystem
		}
		out := moltbot.Message{Role: role}
		if role == moltbot.RoleTool {
			if m.ToolCallID == "" {
				return nil, reqErr(fmt.Sprintf("messages[%d].tool_call_id", i), "Missing required parameter: 'messages[%d].tool_call_id'.", i)
			}
			out.Parts = []moltbot.Part{{Type: moltbot.PartToolResult, CallID: m.ToolCallID, Content: m.Content.Text()}}
			req.Messages[i] = out
			continue
		}
		rich := len(m.ToolCalls) > 0
		for j, p := range m.Content {
			at := fmt.Sprintf("messages[%d].content[%d]", i, j)
			switch p.Type {
			case "text":
				if p.Text == nil {
					return nil, reqErr(at+".text", "Missing required parameter: '%s.text'.", at)
				}
				out.Parts = append(out.Parts, moltbot.Part{Type: moltbot.PartText, Text: *p.Text})
			case "image_url":
				if p.ImageURL == nil || p.ImageURL.URL == "" {
					return nil, reqErr(at+".image_url", "Missing required parameter: '%s.image_url.url'.", at)
				}
				mime, data, err := decodeDataURL(p.ImageURL.URL)
				if err != nil {
					return nil, reqErr(at+".image_url.url", "Invalid '%s.image_url.url': %v.", at, err)
				}
				out.Parts = append(out.Parts, moltbot.Part{Type: moltbot.PartImage, MIME: mime, Data: data})
				rich = true
			default:
				return nil, reqErr(at+".type", "Invalid value: '%s'. Supported values are: 'text' and 'image_url'.", p.Type)
			}
		}
		for j, c := range m.ToolCalls {
			at := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
			switch {
			case c.ID == "":
				return nil, reqErr(at+".id", "Missing required parameter: '%s.id'.", at)
			case c.Type != "function":
				return nil, reqErr(at+".type", "Invalid value: '%s'. Supported values are: 'function'.", c.Type)
			case c.Function.Name == "":
				return nil, reqErr(at+".function.name", "Missing required parameter: '%s.function.name'.", at)
			}
			out.Parts = append(out.Parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
		}
		out.Content = moltbot.TextOf(out.Parts)
		if !rich {
			out.Parts = nil
		}
		req.Messages[i] = out
	}
	if err := pairToolCalls(req.Messages); err != nil {
		return nil, err
	}
	for i, t := range in.Tools {
		switch {
		case t.Type != "function":
			return nil, reqErr(fmt.Sprintf("tools[%d].type", i), "Invalid value: '%s'. Supported values are: 'function'.", t.Type)
		case !openaiToolName(t.Function.Name):
			return nil, reqErr(fmt.Sprintf("tools[%d].function.name", i), "Invalid 'tools[%d].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.", i)
		}
		req.Tools = append(req.Tools, moltbot.Tool{Name: t.Function.Name, Description: t.Function.Description,
			Parameters: t.Function.Parameters, Strict: t.Function.Strict != nil && *t.Function.Strict})
	}
	if c := in.ToolChoice; c != nil {
		if len(req.Tools) == 0 {
			return nil, reqErr("tool_choice", "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
		}
		switch c.Mode {
		case moltbot.ToolChoiceNone, moltbot.ToolChoiceAuto, moltbot.ToolChoiceRequired, moltbot.ToolChoiceFunction:
		default:
			return nil, reqErr("tool_choice", "Invalid value: '%s'. Supported values are: 'none', 'auto' and 'required'.", c.Mode)
		}
		req.ToolChoice = &moltbot.ToolChoice{Mode: c.Mode, Name: c.Name}
	}
	if in.ParallelToolCalls != nil {
		if len(req.Tools) == 0 {
			return nil, reqErr("parallel_tool_calls", "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.")
		}
		req.ParallelToolCalls = in.ParallelToolCalls
	}
	if f := in.ResponseFormat; f != nil {
		switch f.Type {
		case moltbot.FormatText:
		case moltbot.FormatJSONObject:
			req.ResponseFormat = &moltbot.ResponseFormat{Type: f.Type}
		case moltbot.FormatJSONSchema:
			if f.JSONSchema == nil {
				return nil, reqErr("response_format.json_schema", "Missing required parameter: 'response_format.json_schema'.")
			}
			if f.JSONSchema.Name == "" {
				return nil, reqErr("response_format.json_schema.name", "Missing required parameter: 'response_format.json_schema.name'.")
			}
			req.ResponseFormat = &moltbot.ResponseFormat{Type: f.Type, Name: f.JSONSchema.Name, Schema: f.JSONSchema.Schema,
				Strict: f.JSONSchema.Strict != nil && *f.JSONSchema.Strict}
		default:
			return nil, reqErr("response_format.type", "Invalid value: '%s'. Supported values are: 'text', 'json_object' and 'json_schema'.", f.Type)
		}
	}
	return req, nil
}

// pairToolCalls checks, as OpenAI does, that each tool message answers a
// call of the assistant message before it and that every call is answered
// before the next message of another kind.
func pairToolCalls(msgs []moltbot.Message) *RequestError {
	var pending []string
	unanswered := func(i int) *RequestError {
		return reqErr(fmt.Sprintf("messages[%d].role", i), "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: %s", strings.Join(pending, ", "))
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Role == moltbot.RoleTool {
			id := m.Parts[0].CallID
			k := slices.Index(pending, id)
			if k < 0 {
				return reqErr(fmt.Sprintf("messages[%d].role", i), "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.")
			}
			pending = slices.Delete(pending, k, k+1)
			continue
		}
		if len(pending) > 0 {
			return unanswered(i)
		}
		for _, p := range m.Parts {
			if p.Type == moltbot.PartToolCall {
				pending = append(pending, p.CallID)
			}
		}
	}
	if len(pending) > 0 {
		return unanswered(len(msgs) - 1)
	}
	return nil
}

// decodeDataURL reads an image_url: a data: URL of an image in base64, or
// an http(s) link, which the simulator counts but does not fetch (no MIME,
// no data).
func decodeDataURL(u string) (mime string, data []byte, err error) {
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return "", nil, nil
	}
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return "", nil, errors.New("expected a data: URL (data:image/png;base64,...) or an http(s) URL")
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return "", nil, errors.New("a data: URL needs a comma before its data")
	}
	mime, ok = strings.CutSuffix(meta, ";base64")
	if !ok {
		return "", nil, errors.New("the image data must be base64 (data:image/png;base64,...)")
	}
	if !strings.HasPrefix(mime, "image/") {
		return "", nil, fmt.Errorf("%q is not an image type", mime)
	}
	data, err = base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return "", nil, fmt.Errorf("invalid base64 image data: %v", err)
	}
	if len(data) == 0 {
		return "", nil, errors.New("the image is empty")
	}
	return mime, data, nil
}

// openaiRich answers a request with tools, a format or images: streamed,
// text and JSON go out as content deltas, a tool call as delta.tool_calls
// (its id, type and name with empty arguments, then the arguments in
// pieces), and the finish reason is "tool_calls" when the model called.
func (s *Server) openaiRich(w http.ResponseWriter, r *http.Request, wreq *openaiwire.ChatRequest, req *inference.Request) {
	now := time.Now()
	id := "chatcmpl-sim" + jsonInt(now.UnixNano())
	created := now.Unix()
	const fingerprint = "moltbot-sim"
	out := newStreamWriter(w, s.burst())
	var text strings.Builder
	var calls []moltbot.ToolCall
	first := true
	rep, err := s.Engine.Respond(r.Context(), req, func(d inference.Delta) error {
		if !wreq.Stream {
			if d.ToolCall != nil {
				calls = moltbot.AddDelta(calls, d.ToolCall)
			}
			text.WriteString(d.Text)
			return nil
		}
		out.header("text/event-stream")
		b := append(out.b[:0], "data: "...)
		b = openaiwire.AppendHead(b, id, openaiwire.ObjectChunk, created, req.Model, fingerprint)
		if d.ToolCall != nil {
			b = appendToolCallDelta(b, d.ToolCall, first)
		} else {
			b = openaiwire.AppendDelta(b, d.Text, first)
		}
		first = false
		return out.send(append(b, "\n\n"...))
	})
	if errors.Is(err, ErrDropped) {
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			openaiErrorParam(w, http.StatusBadRequest, "invalid_request_error", re.Msg, re.Param)
		}
		return // or the client left
	}
	if !wreq.Stream {
		b := openaiwire.AppendHead(out.b[:0], id, openaiwire.ObjectCompletion, created, req.Model, fingerprint)
		b = appendMessageWithCalls(b, text.String(), calls, rep.FinishReason, rep.Usage)
		out.header("application/json")
		out.send(append(b, '\n'))
		return
	}
	out.header("text/event-stream")
	b := append(out.b[:0], "data: "...)
	b = openaiwire.AppendHead(b, id, openaiwire.ObjectChunk, created, req.Model, fingerprint)
	b = openaiwire.AppendFinish(b, rep.FinishReason)
	b = append(b, "\n\n"...)
	if wreq.IncludeUsage() {
		b = append(b, "data: "...)
		b = openaiwire.AppendHead(b, id, openaiwire.ObjectChunk, created, req.Model, fingerprint)
		b = openaiwire.AppendUsageChunk(b, rep.Usage)
		b = append(b, "\n\n"...)
	}
	out.send(append(b, "data: [DONE]\n\n"...))
}

// appendToolCallDelta appends a chunk's choice with a piece of a tool call
// and closes the chunk: the first piece of a call has its id, type and
// name (and content null, with the role, when first in the reply), later
// ones only more arguments.
func appendToolCallDelta(b []byte, d *moltbot.ToolCallDelta, first bool) []byte {
	b = append(b, `{"index":0,"delta":{`...)
	if first {
		b = append(b, `"role":"assistant","content":null,`...)
	}
	b = append(b, `"tool_calls":[{"index":`...)
	b = jsonw.Int(b, int64(d.Index))
	if d.ID != "" {
		b = append(b, `,"id":`...)
		b = jsonw.String(b, d.ID)
		b = append(b, `,"type":"function","function":{"name":`...)
		b = jsonw.String(b, d.Name)
		b = append(b, `,"arguments":`...)
	} else {
		b = append(b, `,"function":{"arguments":`...)
	}
	b = jsonw.String(b, d.Arguments)
	return append(b, `}}]},"logprobs":null,"finish_reason":null}]}`...)
}

// appendMessageWithCalls is openaiwire.AppendMessage with tool calls:
// content is null when the model only called.
func appendMessageWithCalls(b []byte, content string, calls []moltbot.ToolCall, reason string, u moltbot.Usage) []byte {
	if len(calls) == 0 {
		return openaiwire.AppendMessage(b, content, reason, u)
	}
	b = append(b, `{"index":0,"message":{"role":"assistant","content":`...)
	if content == "" {
		b = append(b, "null"...)
	} else {
		b = jsonw.String(b, content)
	}
	b = append(b, `,"tool_calls":[`...)
	for i, c := range calls {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = jsonw.String(b, c.ID)
		b = append(b, `,"type":"function","function":{"name":`...)
		b = jsonw.String(b, c.Name)
		b = append(b, `,"arguments":`...)
		b = jsonw.String(b, c.Arguments)
		b = append(b, `}}`...)
	}
	b = append(b, `]},"logprobs":null,"finish_reason":`...)
	b = jsonw.String(b, reason)
	b = append(b, `}],`...)
	b = openaiwire.AppendUsage(b, u)
	return append(b, '}')
}

// openaiEmbeddings is POST /v1/embeddings: input is a string or a list of
// strings (token arrays are refused: the simulator embeds text), vectors
// are floats or, with encoding_format "base64", little-endian float32s in
// base64; dimensions shortens them.
func (s *Server) openaiEmbeddings(w http.ResponseWriter, r *http.Request) {
	req, rerr := parseOpenAIEmbedding(http.MaxBytesReader(w, r.Body, maxBody))
	if rerr != nil {
		openaiErrorParam(w, http.StatusBadRequest, "invalid_request_error", rerr.Msg, rerr.Param)
		return
	}
	dims := 0
	if req.Dimensions != nil {
		dims = *req.Dimensions
	}
	vecs, err := Embed(req.Model, req.Input, dims)
	if err != nil {
		re := err.(*RequestError)
		openaiErrorParam(w, http.StatusBadRequest, "invalid_request_error", re.Msg, re.Param)
		return
	}
	if !s.embedFaults(w, r, func(status int) { openaiFailure(w, status) }) {
		return
	}
	b := make([]byte, 0, 64+len(vecs)*(64+12*ModelDimensions(req.Model)))
	b = append(b, `{"object":"list","data":[`...)
	var raw []byte
	for i, v := range vecs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = jsonw.Int(b, int64(i))
		b = append(b, `,"embedding":`...)
		if req.EncodingFormat == "base64" {
			raw = raw[:0]
			for _, f := range v {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	n := int64(embedTokens(req.Input))
	b = append(b, `],"model":`...)
	b = jsonw.String(b, req.Model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = jsonw.Int(b, n)
	b = append(b, `,"total_tokens":`...)
	b = jsonw.Int(b, n)
	b = append(b, "}}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// embeddingRequest is POST /v1/embeddings's body as the simulator reads it.
type embeddingRequest struct {
	Model          string
	Input          []string
	EncodingFormat string
	Dimensions     *int
}

// parseOpenAIEmbedding reads and checks an embeddings request; an error
// names the field.
func parseOpenAIEmbedding(r io.Reader) (*embeddingRequest, *RequestError) {
	var body struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
		Dimensions     *int            `json:"dimensions"`
		User           string          `json:"user"`
	}
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return nil, reqErr("", "invalid request: %v", err)
	}
	if body.Model == "" {
		return nil, reqErr("model", "you must provide a model parameter")
	}
	req := &embeddingRequest{Model: body.Model, EncodingFormat: body.EncodingFormat, Dimensions: body.Dimensions}
	in := bytes.TrimSpace(body.Input)
	switch {
	case len(in) == 0 || string(in) == "null":
		return nil, reqErr("input", "Missing required parameter: 'input'.")
	case in[0] == '"':
		var s string
		if err := json.Unmarshal(in, &s); err != nil {
			return nil, reqErr("input", "input: %v", err)
		}
		req.Input = []string{s}
	default:
		if err := json.Unmarshal(in, &req.Input); err != nil {
			return nil, reqErr("input", "input must be a string or an array of strings (the simulator does not take token arrays)")
		}
	}
	if len(req.Input) == 0 {
		return nil, reqErr("input", "input must not be empty")
	}
	for i, s := range req.Input {
		if s == "" {
			return nil, reqErr("input", "input[%d] must not be an empty string", i)
		}
	}
	switch body.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, reqErr("encoding_format", "Invalid value: '%s'. Supported values are: 'float' and 'base64'.", body.EncodingFormat)
	}
	if d := body.Dimensions; d != nil && *d < 1 {
		return nil, reqErr("dimensions", "dimensions must be at least 1, got %d", *d)
	}
	return req, nil
}

// openaiModels is GET /v1/models: the chat models, then the embedding
// models; in Anthropic's shape for a client that sends anthropic-version.
func (s *Server) openaiModels(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("anthropic-version") != "" {
		s.anthropicModels(w)
		return
	}
	out := openaiwire.ModelList{Object: "list", Data: []openaiwire.Model{}}
	for _, m := range s.allModels() {
		out.Data = append(out.Data, openaiwire.Model{ID: m, Object: "model", OwnedBy: "moltbot-sim"})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
