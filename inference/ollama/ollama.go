// Package ollama is a Provider for an Ollama server: /api/chat streamed as
// NDJSON, /api/tags for the model list and health checks.
//
// github.com/ollama/ollama/api supplies the types (api.ChatResponse is what
// each line decodes into), the errors and the non-streaming calls (Models).
// The stream itself is read here (stream.go), not by api.Client.Chat, whose
// bufio.Scanner takes a fresh 8 MiB buffer per call: 64 calls in flight held
// 512 MB and each call cost 1.8 ms of memory clearing. A call in flight now
// holds a pooled 4 KiB reader; a line may grow up to Config.MaxLineBytes and
// a longer one ends the call with an error naming the bound. Requests are
// encoded by hand (request.go) into the bytes json.Marshal would write for
// the api.ChatRequest. Errors map as api.Client's do: an {"error": ...} line
// breaks the stream, an HTTP error status carries the server's message, a
// 404 or a "not found" message is a missing model; but a call canceled or
// past its deadline mid-stream is KindCanceled or KindTimeout (api's scanner
// hid the read error: it looked like a stream that ended early).
package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/auth"
	"github.com/ollama/ollama/envconfig"
	"github.com/ollama/ollama/version"
)

// Config configures a client.
type Config struct {
	Name    string
	BaseURL string // http://127.0.0.1:11434
	HTTP    *http.Client
	// MaxLineBytes bounds one line of a /api/chat stream; a longer line ends
	// the call with a stream error (0: DefaultMaxLineBytes, 1 MiB).
	MaxLineBytes int
	// KeepAlive, when set, is sent with every call and with the load of a
	// chain model: how long Ollama keeps the model in memory after it (a
	// negative value: for good). nil: the server's own (OLLAMA_KEEP_ALIVE,
	// 5 minutes).
	KeepAlive *time.Duration
}

// Options are a provider's own settings in a config (inference.Spec.Options).
type Options struct {
	KeepAlive *time.Duration
}

// Client is an Ollama provider. Safe for concurrent use.
type Client struct {
	name    string
	keep    *time.Duration
	base    *url.URL
	chatURL *url.URL
	chat    string // chatURL.String()
	http    *http.Client
	api     *api.Client
	maxLine int
}

// userAgent is the one api.Client sends.
var userAgent = fmt.Sprintf("ollama/%s (%s %s) Go/%s", version.Version, runtime.GOARCH, runtime.GOOS, runtime.Version())

// Header values every call sends, shared by all requests: a transport only
// reads a request's header (a RoundTripper must not change it; Set
// replaces a value, and Add appends to a full slice, which copies it).
var (
	headerJSON      = []string{"application/json"}
	headerNDJSON    = []string{"application/x-ndjson"}
	headerUserAgent = []string{userAgent}
)

// drainAfterDone bounds what is read after the done line, so that the
// connection goes back to the pool (a server sends nothing more).
const drainAfterDone = 64 << 10

// TypeName is the provider type of Ollama servers in a config.
const TypeName = "ollama"

func init() {
	inference.Register(inference.Type{Name: TypeName, NeedsURL: true, DefaultURL: HostURL, New: func(s inference.Spec) (inference.Provider, error) {
		cfg := Config{Name: s.Name, BaseURL: s.URL, HTTP: s.HTTP}
		if o, ok := s.Options.(Options); ok {
			cfg.KeepAlive = o.KeepAlive
		}
		return New(cfg)
	}})
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = inference.NewHTTPClient(8)
	}
	max := cfg.MaxLineBytes
	if max <= 0 {
		max = DefaultMaxLineBytes
	}
	chat := u.JoinPath("/api/chat")
	return &Client{name: cfg.Name, keep: cfg.KeepAlive, base: u, chatURL: chat, chat: chat.String(), http: hc, api: api.NewClient(u, hc), maxLine: max}, nil
}

// Chat implements inference.Provider: POST /api/chat, streamed.
func (c *Client) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	if err := checkRequest(c.name, req); err != nil {
		return inference.Result{}, err
	}
	body, err := appendRequest(make([]byte, 0, 256+inference.EstimateTokens(req.Messages)*4), req, c.keep)
	if err != nil {
		return inference.Result{}, &inference.Error{Kind: inference.KindBadRequest, Provider: c.name, Message: err.Error(), Err: err}
	}
	hreq, err := c.newRequest(ctx, body)
	if err != nil {
		return inference.Result{}, err
	}
	resp, err := inference.Send(c.http, hreq)
	if err != nil {
		return inference.Result{}, c.explain(inference.Classify(ctx, c.name, err), req.Model)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= http.StatusBadRequest {
		return inference.Result{}, c.explain(c.statusError(resp), req.Model)
	}
	return c.read(ctx, resp.Body, fn)
}

// newRequest builds the POST with api.Client's headers, and its signature
// when OLLAMA_AUTH is set or the server is ollama.com (a key in
// ~/.ollama/id_ed25519, as the ollama CLI uses).
func (c *Client) newRequest(ctx context.Context, body []byte) (*http.Request, error) {
	u := c.chat
	var token string
	if envconfig.UseAuth() || c.base.Hostname() == "ollama.com" {
		now := strconv.FormatInt(time.Now().Unix(), 10)
		var err error
		if token, err = auth.Sign(ctx, []byte("POST,/api/chat?ts="+now)); err != nil {
			return nil, &inference.Error{Kind: inference.KindAuth, Provider: c.name, Message: "signing the request: " + err.Error(), Err: err}
		}
		su := *c.chatURL
		q := su.Query()
		q.Set("ts", now)
		su.RawQuery = q.Encode()
		u = su.String()
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, &inference.Error{Kind: inference.KindBadRequest, Provider: c.name, Message: err.Error(), Err: err}
	}
	hreq.Header["Content-Type"] = headerJSON
	hreq.Header["Accept"] = headerNDJSON
	hreq.Header["User-Agent"] = headerUserAgent
	if token != "" {
		hreq.Header.Set("Authorization", token)
	}
	return hreq, nil
}

// read streams the reply's lines to fn until the done line.
func (c *Client) read(ctx context.Context, body io.Reader, fn inference.DeltaFunc) (inference.Result, error) {
	lr := getLineReader(body, c.maxLine)
	defer putLineReader(lr)
	var res inference.Result
	var cr api.ChatResponse
	calls := 0 // tool calls so far: each comes whole, the next index
	for {
		line, err := lr.next()
		switch {
		case err == io.EOF:
			return res, inference.StreamEnded(c.name)
		case errors.Is(err, errLineTooLong):
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name,
				Message: fmt.Sprintf("stream line longer than the %d-byte bound (ollama MaxLineBytes)", c.maxLine)}
		case err != nil:
			return res, inference.Classify(ctx, c.name, err)
		}
		if blank(line) {
			continue
		}
		msg, err := lr.shape.decode(line, &cr)
		if err != nil {
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name,
				Message: fmt.Sprintf("malformed stream line %.64q: %v", line, err)}
		}
		if msg != "" {
			return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: msg}
		}
		if cr.Model != "" {
			res.Model = cr.Model
		}
		if cr.Message.Content != "" {
			if err := fn(inference.Delta{Text: cr.Message.Content}); err != nil {
				return res, err
			}
		}
		for i := range cr.Message.ToolCalls {
			d, err := toolDelta(&cr.Message.ToolCalls[i], calls)
			if err != nil {
				return res, &inference.Error{Kind: inference.KindStream, Provider: c.name, Message: "tool call: " + err.Error()}
			}
			calls++
			if err := fn(d); err != nil {
				return res, err
			}
		}
		// A reply with tool calls is done_reason "stop" on Ollama's wire:
		// it stays so (the router calls it tool_calls).
		if cr.Done {
			res.FinishReason = cr.DoneReason
			if res.FinishReason == "" {
				res.FinishReason = "stop"
			}
			res.Usage = moltbot.Usage{PromptTokens: cr.PromptEvalCount, CompletionTokens: cr.EvalCount}
			io.CopyN(io.Discard, lr.br, drainAfterDone)
			return res, nil
		}
	}
}

// statusError maps an HTTP error status as api.Client does (401 is
// unauthorized; otherwise the server's {"error": ...} message, else its
// text), and a 404 or a "not found" message to a missing model.
func (c *Client) statusError(resp *http.Response) *inference.Error {
	body := inference.ReadErrorBody(resp.Body)
	if resp.StatusCode == http.StatusUnauthorized {
		return &inference.Error{Kind: inference.KindAuth, Provider: c.name, Status: resp.StatusCode, Message: "unauthorized"}
	}
	msg := errorMessage(body)
	e := inference.FromStatus(c.name, resp.StatusCode, msg, resp.Header)
	if resp.StatusCode == http.StatusNotFound || strings.Contains(msg, "not found") {
		e.Kind = inference.KindModelNotFound
	}
	return e
}

// errorMessage reads Ollama's {"error": "..."} body; it returns the body's
// first line, trimmed and cut at 512 bytes, when the body has another shape.
func errorMessage(body []byte) string {
	first, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte{'\n'})
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(first, &e) == nil {
		return e.Error
	}
	s := strings.TrimSpace(string(first))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

// classify maps an error of api.Client (the non-streaming calls).
func (c *Client) classify(ctx context.Context, err error) error {
	var se api.StatusError
	if errors.As(err, &se) {
		e := inference.FromStatus(c.name, se.StatusCode, se.ErrorMessage, nil)
		if se.StatusCode == http.StatusNotFound || strings.Contains(se.ErrorMessage, "not found") {
			e.Kind = inference.KindModelNotFound
		}
		return e
	}
	var ae api.AuthorizationError
	if errors.As(err, &ae) {
		return &inference.Error{Kind: inference.KindAuth, Provider: c.name, Status: ae.StatusCode, Message: "unauthorized"}
	}
	e := inference.Classify(ctx, c.name, err)
	if ctx.Err() == nil && e.Kind == inference.KindUnavailable && e.Message == "" {
		// A body that is not JSON.
		var ue *url.Error
		if !errors.As(err, &ue) {
			e.Kind, e.Message = inference.KindStream, err.Error()
		}
	}
	return e
}

// Models implements inference.Provider with GET /api/tags.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	list, err := c.api.List(ctx)
	if err != nil {
		return nil, c.explain(c.classify(ctx, err), "")
	}
	out := make([]string, 0, len(list.Models))
	for _, m := range list.Models {
		out = append(out, m.Name)
	}
	return out, nil
}

// explain adds what to do to the errors a new user meets first: no
// Ollama where the config says (connection refused), and a model that is
// not pulled. The message names the server's address and the command.
func (c *Client) explain(err error, model string) error {
	e, ok := inference.AsError(err)
	if !ok {
		return err
	}
	switch {
	case e.Kind == inference.KindUnavailable && errors.Is(e.Err, syscall.ECONNREFUSED):
		e.Message = fmt.Sprintf("connection refused at %s: is Ollama running there? Start it (ollama serve) or set this provider's url to where it runs",
			c.base.Redacted())
	case e.Kind == inference.KindModelNotFound && model != "":
		e.Message = fmt.Sprintf("%s (the Ollama at %s does not have %q: run ollama pull %s)", e.Message, c.base.Redacted(), model, model)
	}
	return e
}

// HostURL is where Ollama's own tools find it: OLLAMA_HOST ("host",
// "host:port", "http(s)://host:port", ":port"; read by Ollama's envconfig),
// else http://127.0.0.1:11434. An ollama provider without a url uses it.
func HostURL() string { return envconfig.Host().String() }
