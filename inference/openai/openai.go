// Package openai is a Provider for any server that speaks OpenAI's chat
// completions API: OpenAI itself, vLLM, llama.cpp's server, LM Studio,
// Ollama's /v1. It always streams (SSE) so that the first token is seen as
// soon as the server sends it, and asks for usage in the last chunk.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/buger/jsonparser"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sse"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// Config configures a client.
type Config struct {
	Name    string // provider name, for errors
	BaseURL string // e.g. https://api.openai.com/v1; "/v1" is added when the path is empty
	APIKey  string
	// Creds, when set, supplies the bearer key per call (a key pool or
	// OAuth); it wins over APIKey.
	Creds *inference.Credentials
	HTTP  *http.Client
}

// Client is an OpenAI-compatible provider.
type Client struct {
	name    string
	base    string
	creds   *inference.Credentials
	http    *http.Client
	chatURL string
	auth    atomic.Pointer[authValue] // the last key's Authorization value
}

// TypeName is the provider type of OpenAI-compatible servers in a config.
const TypeName = "openai"

func init() {
	inference.Register(inference.Type{Name: TypeName, NeedsURL: true, New: func(s inference.Spec) (inference.Provider, error) {
		return New(Config{Name: s.Name, BaseURL: s.URL, Creds: s.Creds, HTTP: s.HTTP}), nil
	}})
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	base := strings.TrimRight(cfg.BaseURL, "/")
	if u, err := url.Parse(base); err == nil && (u.Path == "" || u.Path == "/") {
		base += "/v1"
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = inference.NewHTTPClient(16)
	}
	creds := cfg.Creds
	if creds == nil {
		creds = inference.NewKeyPool([]string{cfg.APIKey})
	}
	return &Client{name: cfg.Name, base: base, creds: creds, http: hc, chatURL: base + "/chat/completions"}
}

// do sends a request built by mk with a key from the pool. A 401, 403 or
// 429 puts the key aside and the next key is tried; what is returned is a
// 2xx response or an *inference.Error.
func (c *Client) do(ctx context.Context, mk func() (*http.Request, error)) (*http.Response, error) {
	return inference.DoWithKeys(ctx, c.name, c.creds, c.http, mk, func(r *http.Request, key string) {
		r.Header["Authorization"] = c.bearer(key)
	}, func(resp *http.Response) *inference.Error {
		return inference.FromStatus(c.name, resp.StatusCode, ParseError(inference.ReadErrorBody(resp.Body)), resp.Header)
	})
}

// Header values every chat call sends, shared by all requests: a
// transport only reads a request's header (a RoundTripper must not change
// it; Set replaces a value, and Add appends to a full slice, which copies
// it).
var (
	headerJSON = []string{"application/json"}
	headerSSE  = []string{"text/event-stream"}
)

// authValue is an Authorization header's value for key.
type authValue struct {
	key string
	v   []string
}

// bearer returns the Authorization value for key: the last one made while
// calls use the same key (one string comparison, no allocation), else a
// new one.
func (c *Client) bearer(key string) []string {
	if a := c.auth.Load(); a != nil && a.key == key {
		return a.v
	}
	a := &authValue{key: key, v: []string{"Bearer " + key}}
	c.auth.Store(a)
	return a.v
}

type message struct {
	Role string `json:"role"`
	// Content is a string, a list of parts (text and image_url) or null
	// (an assistant message that only calls tools).
	Content    any        `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatRequest documents the request AppendRequest writes (tests decode into it).
type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []message      `json:"messages"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   *float64       `json:"temperature,omitempty"`
	TopP          *float64       `json:"top_p,omitempty"`
	Stop          []string       `json:"stop,omitempty"`
	Seed          *int64         `json:"seed,omitempty"`

	PresencePenalty   *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty  *float64        `json:"frequency_penalty,omitempty"`
	User              string          `json:"user,omitempty"`
	Tools             []wireTool      `json:"tools,omitempty"`
	ToolChoice        json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat    json.RawMessage `json:"response_format,omitempty"`
}

// wireTool is an entry of a request's tools.
type wireTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
		Strict      bool            `json:"strict,omitempty"`
	} `json:"function"`
}

// Usage is OpenAI's usage object.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// chunk is one chat.completion.chunk, for the rare chunks scanChunk hands
// to encoding/json (usage, errors, tool calls).
type chunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage     `json:"usage"`
	Error *errorBody `json:"error"`
}

type errorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    any    `json:"code"`
}

// ParseError reads OpenAI's {"error":{"message":...}} body; it returns the
// raw text when the body has another shape.
func ParseError(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var eb errorBody
		if json.Unmarshal(e.Error, &eb) == nil && eb.Message != "" {
			return eb.Message
		}
		var s string
		if json.Unmarshal(e.Error, &s) == nil && s != "" {
			return s
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

// Chat implements inference.Provider.
func (c *Client) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	if err := checkRequest(c.name, req); err != nil {
		return inference.Result{}, err
	}
	buf := AppendRequest(make([]byte, 0, 256+inference.EstimateTokens(req.Messages)*4), req)
	resp, err := c.do(ctx, func() (*http.Request, error) {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.chatURL, bytes.NewReader(buf))
		if err != nil {
			return nil, err
		}
		hreq.Header["Content-Type"] = headerJSON
		hreq.Header["Accept"] = headerSSE
		return hreq, nil
	})
	if err != nil {
		return inference.Result{}, err
	}
	defer resp.Body.Close()
	var res inference.Result
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		// A server that ignored "stream": read the whole completion.
		return c.readJSON(ctx, resp, fn)
	}
	st := getStream(resp.Body)
	defer putStream(st)
	r := st.r
	finished := false
	var calls toolCalls
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) && finished {
				return res, nil
			}
			if errors.Is(err, io.EOF) {
				return res, inference.StreamEnded(c.name)
			}
			return res, inference.Classify(ctx, c.name, err)
		}
		if ev.Type == "error" {
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: ParseError(ev.Data)}
		}
		if bytes.Equal(ev.Data, []byte("[DONE]")) {
			// [DONE] is the server's own end of reply, even without a finish_reason.
			return res, nil
		}
		ch, err := st.shape.scan(ev.Data, res.Model == "")
		if err != nil {
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: "malformed stream chunk: " + err.Error()}
		}
		if ch.errMsg != "" {
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: ch.errMsg}
		}
		if ch.model != "" {
			res.Model = ch.model
		}
		if ch.usage != nil {
			res.Usage = *ch.usage
		}
		if ch.content != "" {
			if err := fn(inference.Delta{Text: ch.content}); err != nil {
				return res, err
			}
		}
		for i := range ch.calls {
			d, ok, err := calls.delta(&ch.calls[i], i)
			if err != nil {
				return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: err.Error()}
			}
			if !ok {
				continue
			}
			if err := fn(d); err != nil {
				return res, err
			}
		}
		if ch.finish != "" {
			res.FinishReason = ch.finish
			finished = true
		}
	}
}

// maxEvent bounds one event of a stream.
const maxEvent = 4 << 20

// stream is what a call needs to read its stream: the SSE reader and the
// shape of its text chunks. Streams are pooled: each holds a 4 KiB read
// buffer and a chunk's worth of shape, and a call needs one only while it
// reads.
type stream struct {
	r     *sse.Reader
	shape shape
}

var streams = sync.Pool{New: func() any { return &stream{r: sse.NewReader(nil, maxEvent)} }}

func getStream(body io.Reader) *stream {
	st := streams.Get().(*stream)
	st.r.Reset(body)
	return st
}

// putStream returns st to the pool, unless an event grew its buffers past
// what a pooled stream should keep (a shape keeps at most maxShape).
func putStream(st *stream) {
	if st.r.Retained() > 64<<10 {
		return
	}
	st.r.Reset(nil)
	st.shape.reset()
	streams.Put(st)
}

type completion struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   string     `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage"`
}

func (c *Client) readJSON(ctx context.Context, resp *http.Response, fn inference.DeltaFunc) (inference.Result, error) {
	var comp completion
	if err := json.NewDecoder(resp.Body).Decode(&comp); err != nil {
		return inference.Result{}, inference.Classify(ctx, c.name, err)
	}
	res := inference.Result{Model: comp.Model}
	if comp.Usage != nil {
		res.Usage = moltbot.Usage{PromptTokens: comp.Usage.PromptTokens, CompletionTokens: comp.Usage.CompletionTokens}
	}
	if len(comp.Choices) == 0 {
		return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: "completion without choices"}
	}
	res.FinishReason = comp.Choices[0].FinishReason
	if s := comp.Choices[0].Message.Content; s != "" {
		if err := fn(inference.Delta{Text: s}); err != nil {
			return res, err
		}
	}
	var calls toolCalls
	for i := range comp.Choices[0].Message.ToolCalls {
		// A whole message's calls are in order: each is its own index.
		tc := &comp.Choices[0].Message.ToolCalls[i]
		tc.Index = nil
		d, ok, err := calls.delta(tc, i)
		if err != nil {
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: err.Error()}
		}
		if !ok {
			continue
		}
		if err := fn(d); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Models implements inference.Provider with GET /models.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	resp, err := c.do(ctx, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/models", nil)
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return inference.ReadModelList(c.name, resp.Body)
}

// scanned is what moltbot needs of a chunk.
type scanned struct {
	content, finish, model, errMsg string
	usage                          *moltbot.Usage
	calls                          []toolCall // pieces of tool calls (the slow path only)
	// cs, ce bound the first choice's content string, quotes included,
	// when fastChunk read one (ce 0: it did not); shape learns from them.
	cs, ce int
}

var chunkPaths = [][]string{
	{"choices", "[0]", "delta", "content"},
	{"choices", "[0]", "finish_reason"},
	{"model"},
	{"usage"},
	{"error"},
	{"choices", "[0]", "delta", "tool_calls"},
}

// scanChunk reads what moltbot needs of a chunk (the hot path: one call per
// token): a chunk of the usual shape in one pass (fastChunk), any other
// with scanChunkSlow.
func scanChunk(data []byte, wantModel bool) (scanned, error) {
	if out, ok := fastChunk(data, wantModel); ok {
		return out, nil
	}
	return scanChunkSlow(data, wantModel)
}

// scanChunkSlow reads a chunk with jsonparser; chunks with usage, an error
// or tool calls are decoded fully by encoding/json. Its result is
// scanChunk's.
func scanChunkSlow(data []byte, wantModel bool) (scanned, error) {
	var out scanned
	var full bool
	var perr error
	found := 0
	jsonparser.EachKey(data, func(i int, v []byte, vt jsonparser.ValueType, err error) {
		if err != nil {
			perr = err
			return
		}
		found++
		switch i {
		case 0:
			if vt == jsonparser.String {
				out.content, perr = unquote(v)
			}
		case 1:
			if vt == jsonparser.String {
				out.finish, perr = unquote(v)
			}
		case 2:
			if wantModel && vt == jsonparser.String {
				out.model, perr = unquote(v)
			}
		case 3:
			full = full || vt == jsonparser.Object
		case 4:
			full = full || vt != jsonparser.Null
		case 5:
			full = full || vt == jsonparser.Array
		}
	}, chunkPaths...)
	if perr != nil {
		return out, perr
	}
	if found == 0 || full {
		var ch chunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return out, err
		}
		if ch.Error != nil {
			out.errMsg = ch.Error.Message
			if out.errMsg == "" {
				out.errMsg = "error in stream"
			}
		}
		if ch.Usage != nil {
			out.usage = &moltbot.Usage{PromptTokens: ch.Usage.PromptTokens, CompletionTokens: ch.Usage.CompletionTokens}
		}
		if len(ch.Choices) > 0 && len(ch.Choices[0].Delta.ToolCalls) > 0 {
			out.calls = ch.Choices[0].Delta.ToolCalls
		}
	}
	return out, nil
}

// unquote decodes a JSON string's raw bytes (without quotes).
func unquote(v []byte) (string, error) {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v), nil
	}
	return jsonparser.ParseString(v)
}

// AppendRequest appends the JSON body of a streamed chat completion
// request. The raw JSON it carries (tool parameters, a schema) is written
// as it is: Chat checks it first (checkRequest).
func AppendRequest(b []byte, req *inference.Request) []byte {
	if plain(req.Messages) {
		b = inference.AppendChatHead(b, req)
	} else {
		b = appendHead(b, req)
	}
	b = append(b, `,"stream":true,"stream_options":{"include_usage":true}`...)
	if req.MaxTokens > 0 {
		b = append(b, `,"max_tokens":`...)
		b = strconv.AppendInt(b, int64(req.MaxTokens), 10)
	}
	if req.Temperature != nil {
		b = append(b, `,"temperature":`...)
		b = strconv.AppendFloat(b, *req.Temperature, 'g', -1, 64)
	}
	if req.TopP != nil {
		b = append(b, `,"top_p":`...)
		b = strconv.AppendFloat(b, *req.TopP, 'g', -1, 64)
	}
	if len(req.Stop) > 0 {
		b = append(b, `,"stop":[`...)
		for i, s := range req.Stop {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.String(b, s)
		}
		b = append(b, ']')
	}
	if req.Seed != nil {
		b = append(b, `,"seed":`...)
		b = strconv.AppendInt(b, *req.Seed, 10)
	}
	b = appendExtras(b, req)
	return append(b, '}')
}
