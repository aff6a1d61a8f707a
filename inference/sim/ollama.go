package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// chatMessage is an Ollama message (the OpenAI side reads openaiwire's).
type chatMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // a string; a list of parts is read too
	// Images are base64 (no data: prefix), for a vision model.
	Images     []string         `json:"images"`
	ToolCalls  []ollamaToolCall `json:"tool_calls"`
	ToolName   string           `json:"tool_name"`    // a tool message's tool
	ToolCallID string           `json:"tool_call_id"` // the call a tool message answers (newer clients)
}

// ollamaToolCall is a call in an assistant message: arguments are an
// object, not a JSON text as at OpenAI.
type ollamaToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int             `json:"index"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// ollamaTool is an entry of a request's tools, OpenAI's shape.
type ollamaTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

func (m chatMessage) text() string {
	switch c := m.Content.(type) {
	case string:
		return c
	case []any:
		var b strings.Builder
		for _, part := range c {
			if p, ok := part.(map[string]any); ok {
				if t, ok := p["text"].(string); ok {
					b.WriteString(t)
				}
			}
		}
		return b.String()
	}
	return ""
}

func toMessages(in []chatMessage) []moltbot.Message {
	out := make([]moltbot.Message, len(in))
	for i, m := range in {
		out[i] = moltbot.Message{Role: moltbot.Role(m.Role), Content: m.text()}
	}
	return out
}

type ollamaRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Stream   *bool         `json:"stream"`
	// Format is "json" or a JSON Schema object.
	Format  json.RawMessage `json:"format"`
	Tools   []ollamaTool    `json:"tools"`
	Options struct {
		NumPredict int `json:"num_predict"`
	} `json:"options"`
}

// plain reports whether the request is text only (see Plain).
func (r *ollamaRequest) plain() bool {
	if len(r.Tools) > 0 || noFormat(r.Format) != nil {
		return false
	}
	for i := range r.Messages {
		if m := &r.Messages[i]; len(m.Images) > 0 || len(m.ToolCalls) > 0 || m.Role == "tool" {
			return false
		}
	}
	return true
}

// noFormat is nil when Ollama's format asks for nothing: absent, null or "".
func noFormat(f json.RawMessage) json.RawMessage {
	f = bytes.TrimSpace(f)
	if len(f) == 0 || string(f) == "null" || string(f) == `""` {
		return nil
	}
	return f
}

// ollamaToRequest reads an Ollama chat request as moltbot's: images
// decoded, tool calls and results as parts, the format as a response format.
func ollamaToRequest(in *ollamaRequest) (*inference.Request, *RequestError) {
	req := &inference.Request{Model: in.Model, Messages: make([]moltbot.Message, len(in.Messages))}
	req.MaxTokens = in.Options.NumPredict
	for i := range in.Messages {
		m := &in.Messages[i]
		text := m.text()
		out := moltbot.Message{Role: moltbot.Role(m.Role), Content: text}
		if m.Role == "tool" {
			out.Content = ""
			out.Parts = []moltbot.Part{{Type: moltbot.PartToolResult, CallID: m.ToolCallID, Name: m.ToolName, Content: text}}
			req.Messages[i] = out
			continue
		}
		if len(m.Images) > 0 || len(m.ToolCalls) > 0 {
			if text != "" {
				out.Parts = append(out.Parts, moltbot.Part{Type: moltbot.PartText, Text: text})
			}
			for j, img := range m.Images {
				data, err := base64.StdEncoding.DecodeString(img)
				if err != nil || len(data) == 0 {
					if err == nil {
						err = errors.New("empty")
					}
					return nil, reqErr(fmt.Sprintf("messages[%d].images[%d]", i, j), "invalid image in messages[%d].images[%d]: %v", i, j, err)
				}
				out.Parts = append(out.Parts, moltbot.Part{Type: moltbot.PartImage, MIME: http.DetectContentType(data), Data: data})
			}
			for j, c := range m.ToolCalls {
				args := bytes.TrimSpace(c.Function.Arguments)
				if len(args) == 0 || string(args) == "null" {
					args = []byte("{}")
				}
				if c.Function.Name == "" || args[0] != '{' {
					return nil, reqErr(fmt.Sprintf("messages[%d].tool_calls[%d]", i, j), "messages[%d].tool_calls[%d]: a call needs function.name and function.arguments (an object)", i, j)
				}
				out.Parts = append(out.Parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: c.ID, Name: c.Function.Name, Arguments: string(args)})
			}
		}
		req.Messages[i] = out
	}
	for i, t := range in.Tools {
		if t.Function.Name == "" {
			return nil, reqErr(fmt.Sprintf("tools[%d].function.name", i), "tools[%d].function.name is required", i)
		}
		req.Tools = append(req.Tools, moltbot.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters})
	}
	if f := noFormat(in.Format); f != nil {
		switch {
		case string(f) == `"json"`:
			req.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatJSONObject}
		case f[0] == '{':
			req.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Schema: f}
		default:
			return nil, reqErr("format", `invalid format: %s; expected "json" or a valid JSON Schema object`, f)
		}
	}
	return req, nil
}

func ollamaError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b := append([]byte(`{"error":`), jsonw.String(nil, msg)...)
	w.Write(append(b, '}', '\n'))
}

func (s *Server) ollamaChat(w http.ResponseWriter, r *http.Request) {
	var req ollamaRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		ollamaError(w, http.StatusBadRequest, "invalid request: "+err.Error())
		return
	}
	if req.Model == "" {
		ollamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	plain := req.plain()
	var rich *inference.Request
	var rerr *RequestError
	if plain {
		rerr = s.Engine.check(&inference.Request{Model: req.Model})
	} else if rich, rerr = ollamaToRequest(&req); rerr == nil {
		rerr = s.Engine.check(rich)
	}
	if rerr != nil {
		ollamaError(w, http.StatusBadRequest, rerr.Msg)
		return
	}
	if fail, status, retry := s.Engine.Fail(); fail {
		setRetryAfter(w, retry)
		ollamaError(w, status, "simulated failure")
		return
	}
	if len(req.Messages) == 0 {
		// No messages: Ollama loads the model and says so.
		w.Header().Set("Content-Type", "application/json")
		b := append([]byte(`{"model":`), jsonw.String(nil, req.Model)...)
		b = append(b, `,"created_at":"`...)
		b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
		w.Write(append(b, `","message":{"role":"assistant","content":""},"done_reason":"load","done":true}`+"\n"...))
		return
	}
	stream := req.Stream == nil || *req.Stream
	if !plain {
		s.ollamaRich(w, r, rich, stream)
		return
	}
	msgs := toMessages(req.Messages)
	start := time.Now()
	created := start.UTC().Format(time.RFC3339Nano)
	bp := s.buf()
	defer s.put(bp)
	w.Header().Set("Content-Type", "application/x-ndjson")
	if !stream {
		w.Header().Set("Content-Type", "application/json")
	}
	fl, _ := w.(http.Flusher)
	// With no delay between tokens, the tokens after the first go out in one
	// burst, as from a server that has them all at once (and not as many tiny
	// writes that only measure the reader's wake-ups).
	burst := s.burst()
	sent := 0
	var text strings.Builder
	head := func(b []byte) []byte {
		b = append(b, `{"model":`...)
		b = jsonw.String(b, req.Model)
		b = append(b, `,"created_at":"`...)
		b = append(b, created...)
		return append(b, `","message":{"role":"assistant","content":`...)
	}
	rep, err := s.Engine.Generate(r.Context(), msgs, req.Options.NumPredict, func(tok string) error {
		if !stream {
			text.WriteString(tok)
			return nil
		}
		b := head((*bp)[:0])
		b = jsonw.String(b, tok)
		b = append(b, `},"done":false}`+"\n"...)
		*bp = b
		if _, err := w.Write(b); err != nil {
			return err
		}
		sent++
		if fl != nil && (!burst || sent == 1) {
			fl.Flush()
		}
		return nil
	})
	if errors.Is(err, ErrDropped) {
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		return // the client left
	}
	b := head((*bp)[:0])
	b = jsonw.String(b, text.String())
	b = append(b, `},"done_reason":`...)
	b = jsonw.String(b, rep.FinishReason)
	dur := time.Since(start).Nanoseconds()
	b = append(b, `,"done":true,"total_duration":`...)
	b = jsonw.Int(b, dur)
	b = append(b, `,"load_duration":0,"prompt_eval_count":`...)
	b = jsonw.Int(b, int64(rep.Usage.PromptTokens))
	b = append(b, `,"prompt_eval_duration":0,"eval_count":`...)
	b = jsonw.Int(b, int64(rep.Usage.CompletionTokens))
	b = append(b, `,"eval_duration":`...)
	b = jsonw.Int(b, dur)
	b = append(b, "}\n"...)
	*bp = b
	w.Write(b)
}

// ollamaTags is GET /api/tags: the chat models, then the embedding models.
func (s *Server) ollamaTags(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		Name       string        `json:"name"`
		Model      string        `json:"model"`
		ModifiedAt time.Time     `json:"modified_at"`
		Size       int64         `json:"size"`
		Digest     string        `json:"digest"`
		Details    ollamaDetails `json:"details"`
	}
	var out struct {
		Models []model `json:"models"`
	}
	for _, m := range s.allModels() {
		out.Models = append(out.Models, model{Name: ollamaName(m), Model: ollamaName(m), ModifiedAt: time.Unix(0, 0).UTC(),
			Digest: zeroDigest, Details: simDetails})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// ollamaRich answers a request with tools, a format or images: text and
// JSON pieces stream as the plain path's do; tool calls go out whole, all
// in one chunk, as Ollama sends them (arguments an object), and the last
// chunk says done_reason "stop".
func (s *Server) ollamaRich(w http.ResponseWriter, r *http.Request, req *inference.Request, stream bool) {
	start := time.Now()
	created := start.UTC().Format(time.RFC3339Nano)
	head := func(b []byte) []byte {
		b = append(b, `{"model":`...)
		b = jsonw.String(b, req.Model)
		b = append(b, `,"created_at":"`...)
		b = append(b, created...)
		return append(b, `","message":{"role":"assistant","content":`...)
	}
	out := newStreamWriter(w, s.burst())
	var text strings.Builder
	var calls []moltbot.ToolCall
	rep, err := s.Engine.Respond(r.Context(), req, func(d inference.Delta) error {
		if d.ToolCall != nil {
			calls = moltbot.AddDelta(calls, d.ToolCall)
			return nil
		}
		if !stream {
			text.WriteString(d.Text)
			return nil
		}
		out.header("application/x-ndjson")
		b := head(out.b[:0])
		b = jsonw.String(b, d.Text)
		return out.send(append(b, `},"done":false}`+"\n"...))
	})
	if errors.Is(err, ErrDropped) {
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			ollamaError(w, http.StatusBadRequest, re.Msg)
		}
		return // or the client left
	}
	b := out.b[:0]
	if stream && len(calls) > 0 {
		out.header("application/x-ndjson")
		b = head(b)
		b = append(b, `""`...)
		b = appendOllamaCalls(b, calls)
		b = append(b, `},"done":false}`+"\n"...)
	}
	if !stream {
		out.header("application/json")
	}
	b = head(b)
	b = jsonw.String(b, text.String())
	if !stream {
		b = appendOllamaCalls(b, calls)
	}
	reason := rep.FinishReason
	if reason == "tool_calls" {
		reason = "stop" // Ollama has no reason of its own for calls
	}
	b = append(b, `},"done_reason":`...)
	b = jsonw.String(b, reason)
	dur := time.Since(start).Nanoseconds()
	b = append(b, `,"done":true,"total_duration":`...)
	b = jsonw.Int(b, dur)
	b = append(b, `,"load_duration":0,"prompt_eval_count":`...)
	b = jsonw.Int(b, int64(rep.Usage.PromptTokens))
	b = append(b, `,"prompt_eval_duration":0,"eval_count":`...)
	b = jsonw.Int(b, int64(rep.Usage.CompletionTokens))
	b = append(b, `,"eval_duration":`...)
	b = jsonw.Int(b, dur)
	out.send(append(b, "}\n"...))
}

// appendOllamaCalls appends ,"tool_calls":[...] for calls, if any.
func appendOllamaCalls(b []byte, calls []moltbot.ToolCall) []byte {
	if len(calls) == 0 {
		return b
	}
	b = append(b, `,"tool_calls":[`...)
	for i, c := range calls {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = jsonw.String(b, c.ID)
		b = append(b, `,"function":{"index":`...)
		b = jsonw.Int(b, int64(i))
		b = append(b, `,"name":`...)
		b = jsonw.String(b, c.Name)
		b = append(b, `,"arguments":`...)
		b = append(b, c.Arguments...)
		b = append(b, "}}"...)
	}
	return append(b, ']')
}

// ollamaName is a model's name as Ollama lists it: with a tag.
func ollamaName(m string) string {
	if !strings.Contains(m, ":") {
		return m + ":latest"
	}
	return m
}

type ollamaDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// simArch is the architecture the simulator's models report: model_info's
// keys start with it ("moltbot-sim.context_length").
const simArch = "moltbot-sim"

var simDetails = ollamaDetails{Format: "sim", Family: simArch, Families: []string{simArch}, ParameterSize: "0B", QuantizationLevel: "none"}

const zeroDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// contextLength is model's context window: ContextLength for a chat model,
// 2048 (a small encoder's) for an embedding model.
func (s *Server) contextLength(model string) int {
	if !slices.Contains(s.Engine.Capabilities(model), CapCompletion) {
		return 2048
	}
	if n := s.Engine.Options().ContextLength; n > 0 {
		return n
	}
	return DefaultContextLength
}

// allModels are the chat models, then the embedding models.
func (s *Server) allModels() []string {
	o := s.Engine.Options()
	return append(append([]string(nil), o.Models...), o.EmbedModels...)
}

// decodeOllama reads an Ollama request body into v, answering a 400 in
// Ollama's words when it cannot.
func decodeOllama(w http.ResponseWriter, r *http.Request, v any) bool {
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v)
	switch {
	case errors.Is(err, io.EOF):
		ollamaError(w, http.StatusBadRequest, "missing request body")
	case err != nil:
		ollamaError(w, http.StatusBadRequest, err.Error())
	default:
		return true
	}
	return false
}

// ollamaShow is POST /api/show: any model name is known; its capabilities
// are Engine.Capabilities', model_info has the architecture, the context
// length and the embedding length, as capability discovery reads them.
func (s *Server) ollamaShow(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string `json:"model"`
		Name  string `json:"name"` // the older field
	}
	if !decodeOllama(w, r, &req) {
		return
	}
	if req.Model == "" {
		req.Model = req.Name
	}
	if req.Model == "" {
		ollamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	out := struct {
		Modelfile    string         `json:"modelfile"`
		Parameters   string         `json:"parameters"`
		Template     string         `json:"template"`
		Details      ollamaDetails  `json:"details"`
		ModelInfo    map[string]any `json:"model_info"`
		Capabilities []string       `json:"capabilities"`
		ModifiedAt   time.Time      `json:"modified_at"`
	}{
		Modelfile: "# simulated by moltbot sim\nFROM " + req.Model + "\n",
		Template:  "{{ .Prompt }}",
		Details:   simDetails,
		ModelInfo: map[string]any{
			"general.architecture":            simArch,
			"general.parameter_count":         0,
			simArch + ".context_length":       s.contextLength(req.Model),
			simArch + ".embedding_length":     ModelDimensions(req.Model),
			"general.basename":                req.Model,
			"general.file_type":               0,
			"general.quantization_version":    0,
			simArch + ".attention.head_count": 1,
		},
		Capabilities: s.Engine.Capabilities(req.Model),
		ModifiedAt:   time.Unix(0, 0).UTC(),
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// ollamaPs is GET /api/ps: every configured model, as loaded.
func (s *Server) ollamaPs(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		Name          string        `json:"name"`
		Model         string        `json:"model"`
		Size          int64         `json:"size"`
		Digest        string        `json:"digest"`
		Details       ollamaDetails `json:"details"`
		ExpiresAt     time.Time     `json:"expires_at"`
		SizeVRAM      int64         `json:"size_vram"`
		ContextLength int           `json:"context_length"`
	}
	out := struct {
		Models []model `json:"models"`
	}{Models: []model{}}
	// Loaded for Ollama's default keep_alive, five minutes.
	expires := time.Now().Add(5 * time.Minute).UTC()
	for _, m := range s.allModels() {
		out.Models = append(out.Models, model{Name: ollamaName(m), Model: ollamaName(m), Digest: zeroDigest, Details: simDetails,
			ExpiresAt: expires, ContextLength: s.contextLength(m)})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// embedFaults applies the fault options to an embedding request: an
// injected failure (written, false), or Latency+TTFT before the answer.
func (s *Server) embedFaults(w http.ResponseWriter, r *http.Request, fail func(status int)) bool {
	if f, status, retry := s.Engine.Fail(); f {
		setRetryAfter(w, retry)
		fail(status)
		return false
	}
	p := pacer{ctx: r.Context(), o: s.Engine.opts.Load()}
	defer p.stop()
	return p.start() == nil
}

// ollamaEmbed is POST /api/embed: input is a string or a list of strings;
// dimensions below the model's shorten the vectors.
func (s *Server) ollamaEmbed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req struct {
		Model      string `json:"model"`
		Input      any    `json:"input"`
		Dimensions int    `json:"dimensions"`
	}
	if !decodeOllama(w, r, &req) {
		return
	}
	if req.Model == "" {
		ollamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	input, err := ollamaEmbedInput(req.Input)
	if err != nil {
		ollamaError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.embedFaults(w, r, func(status int) { ollamaError(w, status, "simulated failure") }) {
		return
	}
	dims := req.Dimensions
	if dims < 0 || dims >= ModelDimensions(req.Model) {
		dims = 0 // Ollama shortens only
	}
	vecs, _ := Embed(req.Model, input, dims)
	out := struct {
		Model           string      `json:"model"`
		Embeddings      [][]float32 `json:"embeddings"`
		TotalDuration   int64       `json:"total_duration"`
		LoadDuration    int64       `json:"load_duration"`
		PromptEvalCount int         `json:"prompt_eval_count"`
	}{Model: req.Model, Embeddings: vecs, TotalDuration: time.Since(start).Nanoseconds(), PromptEvalCount: embedTokens(input)}
	if len(input) == 0 {
		out.PromptEvalCount = 0
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// ollamaEmbedInput reads /api/embed's input as Ollama does: a string (""
// is none), a list of strings, or absent.
func ollamaEmbedInput(in any) ([]string, error) {
	switch v := in.(type) {
	case nil:
		return []string{}, nil
	case string:
		if v == "" {
			return []string{}, nil
		}
		return []string{v}, nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("invalid input type: input[%d] is not a string", i)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, errors.New("invalid input type: input must be a string or a list of strings")
}

// ollamaEmbeddings is the older POST /api/embeddings: one prompt, one
// vector under "embedding" (empty for an empty prompt).
func (s *Server) ollamaEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  string `json:"model"`
		Prompt string `json:"prompt"`
	}
	if !decodeOllama(w, r, &req) {
		return
	}
	if req.Model == "" {
		ollamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	if !s.embedFaults(w, r, func(status int) { ollamaError(w, status, "simulated failure") }) {
		return
	}
	out := struct {
		Embedding []float32 `json:"embedding"`
	}{Embedding: []float32{}}
	if req.Prompt != "" {
		vecs, _ := Embed(req.Model, []string{req.Prompt}, 0)
		out.Embedding = vecs[0]
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
