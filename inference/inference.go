// Package inference defines how moltbot talks to a model server: one Provider
// interface that streams a reply through a callback, typed errors that say
// whether trying another model could help, and the clients in subpackages
// (ollama, openai, anthropic, sim). It knows nothing of actors or storage.
package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/h1"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// Request is one chat call to a model.
type Request struct {
	Model    string
	Messages []moltbot.Message
	moltbot.ChatOptions
}

// Result is what a finished call reports beyond the streamed text.
type Result struct {
	Usage        moltbot.Usage
	FinishReason string
	// Model is the model name the server reported, when it did.
	Model string
}

// Delta is a piece of a streamed reply: text, or (ToolCall not nil) a
// piece of a tool call, which the receiver may keep (a provider makes a
// new one for each delta).
type Delta struct {
	Text     string
	ToolCall *moltbot.ToolCallDelta
}

// DeltaFunc receives each piece of the reply as it arrives. Returning an
// error stops the call; Chat then returns that error unchanged.
type DeltaFunc func(Delta) error

// EmbedRequest asks for one vector per input text.
type EmbedRequest struct {
	Model string
	Input []string
	// Dimensions, when not 0, asks for vectors of this length (models that
	// can shorten theirs: OpenAI's text-embedding-3).
	Dimensions int
}

// EmbedResult is an embedding call's answer: Vectors[i] embeds Input[i].
type EmbedResult struct {
	Vectors [][]float32
	Usage   moltbot.Usage
	// Model is the model name the server reported, when it did.
	Model string
}

// Embedder is a Provider that also embeds text. Errors are *Error, as Chat's.
type Embedder interface {
	Embed(ctx context.Context, req *EmbedRequest) (EmbedResult, error)
}

// Provider is a model server. Implementations are safe for concurrent use.
type Provider interface {
	// Chat streams the reply to fn and returns when the server has finished.
	// Cancelling ctx aborts the call. Errors other than fn's are *Error.
	Chat(ctx context.Context, req *Request, fn DeltaFunc) (Result, error)
	// Models lists the models the server offers; it doubles as a health check.
	Models(ctx context.Context) ([]string, error)
}

// Describer is a Provider that can say what a model can do (Ollama's
// /api/show). Errors are *Error.
type Describer interface {
	Describe(ctx context.Context, model string) (moltbot.Capabilities, error)
}

// Loader is a Provider that loads models into memory before they answer
// (Ollama). A model's first call on a small device can spend seconds
// loading it; the router does not hold that against the model.
type Loader interface {
	// Loaded lists the models in memory now.
	Loaded(ctx context.Context) ([]string, error)
	// Load loads model and returns when it can answer.
	Load(ctx context.Context, model string) error
}

// Kind says what went wrong with a model call.
type Kind int

// Kinds of failure.
const (
	KindUnavailable   Kind = iota // cannot connect, 5xx
	KindTimeout                   // deadline passed
	KindRateLimited               // 429
	KindBadRequest                // 400, 413, 422: the request is at fault
	KindAuth                      // 401, 403
	KindModelNotFound             // 404 for the model
	KindStream                    // the stream broke or ended early
	KindBusy                      // local admission refused the call
	KindCanceled                  // the caller went away
	KindCrashed                   // the provider code panicked
)

var kindNames = [...]string{"unavailable", "timeout", "rate_limited", "bad_request", "auth", "model_not_found", "stream", "busy", "canceled", "crashed"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is a failed model call.
type Error struct {
	Kind     Kind
	Provider string
	Status   int
	Message  string
	// RetryAfter is the server's Retry-After, when given.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Provider)
	b.WriteString(": ")
	if e.Status != 0 {
		b.WriteString("HTTP ")
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteString(": ")
	}
	if e.Message != "" {
		b.WriteString(e.Message)
	} else if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(e.Kind.String())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Failover reports whether another model may succeed where this one failed.
// A request the server rejected as bad would be rejected anywhere.
func (e *Error) Failover() bool {
	return e.Kind != KindBadRequest && e.Kind != KindCanceled
}

// Code maps the failure to a moltbot error code for the HTTP edge.
func (e *Error) Code() string {
	switch e.Kind {
	case KindTimeout:
		return moltbot.ETimeout
	case KindRateLimited:
		return moltbot.ERateLimited
	case KindBadRequest:
		return moltbot.EInvalid
	case KindBusy:
		return moltbot.EBusy
	}
	return moltbot.EUnavailable
}

// As gives the failure as a domain error (errors.As with a
// **moltbot.Error): its code (Code), the message, the server's
// Retry-After. Providers speak the one error taxonomy like every package.
func (e *Error) As(target any) bool {
	t, ok := target.(**moltbot.Error)
	if ok {
		*t = &moltbot.Error{Code: e.Code(), Message: e.Error(), RetryAfter: e.RetryAfter}
	}
	return ok
}

// AsError returns err as *Error when it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Classify turns a transport error into an *Error. ctx is the call's context:
// its expiry means timeout, its cancellation means the caller left.
func Classify(ctx context.Context, provider string, err error) *Error {
	if e, ok := AsError(err); ok {
		return e
	}
	out := &Error{Kind: KindUnavailable, Provider: provider, Err: err}
	switch {
	case ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		out.Kind, out.Message = KindTimeout, "timed out"
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		out.Kind, out.Message = KindCanceled, "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		out.Message = "connection refused"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		out.Kind, out.Message = KindStream, "connection closed mid-reply"
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			out.Kind, out.Message = KindTimeout, "timed out"
		}
	}
	return out
}

// FromStatus builds the *Error for an HTTP error status with the server's message.
func FromStatus(provider string, status int, message string, h http.Header) *Error {
	e := &Error{Provider: provider, Status: status, Message: message}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = KindRateLimited
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = KindAuth
	case status == http.StatusNotFound:
		e.Kind = KindModelNotFound
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		e.Kind = KindTimeout
	case status >= 500 || status == 529:
		e.Kind = KindUnavailable
	case status >= 400:
		e.Kind = KindBadRequest
	default:
		e.Kind = KindUnavailable
	}
	if h != nil {
		e.RetryAfter = ParseRetryAfter(h.Get("Retry-After"), time.Now())
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	if e.Message == "" {
		e.Message = "status " + strconv.Itoa(status)
		if status == 529 {
			e.Message = "overloaded"
		}
	}
	return e
}

// ParseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < 86400*7 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// StreamEnded is the error for a stream that closed before the server said it was done.
func StreamEnded(provider string) *Error {
	return &Error{Kind: KindStream, Provider: provider, Message: "stream ended before the reply was complete"}
}

// EstimateTokens approximates the token count of messages: about four bytes
// of English per token plus a few tokens of framing per message. Exact counts
// need the model's tokenizer, which moltbot does not ship; servers report the
// real counts in usage.
func EstimateTokens(msgs []moltbot.Message) int {
	n := 0
	for i := range msgs {
		n += MessageTokens(&msgs[i])
	}
	return n
}

// MessageTokens approximates one message's tokens (see EstimateTokens).
func MessageTokens(m *moltbot.Message) int {
	return 4 + (len(m.Content)+3)/4
}

// ReadErrorBody reads at most 64 KiB of an error response body.
func ReadErrorBody(r io.Reader) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	return b
}

// JoinURL joins base and path with one slash between them.
func JoinURL(base, path string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/")
}

// Errorf builds an *Error of kind for provider.
func Errorf(kind Kind, provider, format string, args ...any) *Error {
	return &Error{Kind: kind, Provider: provider, Message: fmt.Sprintf(format, args...)}
}

// NewHTTPClient returns a client tuned for model servers: pooled keep-alive
// connections, a bounded connect time, and no overall timeout (calls are
// bounded by their context, since a long generation is normal). A plain
// http:// server (a local Ollama, a LAN's vLLM) is called through
// internal/h1, on the caller's goroutine; https, a proxy and anything
// unusual through net/http's Transport.
func NewHTTPClient(maxConns int) *http.Client {
	if maxConns < 2 {
		maxConns = 2
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	std := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: &h1.Transport{
		Fallback:       std,
		Dial:           d.DialContext,
		Proxy:          http.ProxyFromEnvironment,
		MaxIdlePerHost: maxConns,
		IdleTimeout:    90 * time.Second,
	}}
}

// AppendChatHead appends the start of a chat request body that the Ollama
// and OpenAI APIs share, `{"model":...,"messages":[{"role","content"}...]`,
// encoded by hand (no reflection on the hot path); the caller appends the
// rest and the closing brace.
func AppendChatHead(b []byte, req *Request) []byte {
	b = append(b, `{"model":`...)
	b = jsonw.String(b, req.Model)
	b = append(b, `,"messages":[`...)
	for i, m := range req.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"role":`...)
		b = jsonw.String(b, string(m.Role))
		b = append(b, `,"content":`...)
		b = jsonw.String(b, m.Content)
		b = append(b, '}')
	}
	b = append(b, ']')
	return b
}

// ReadModelList reads the model list that OpenAI's and Anthropic's
// GET /v1/models both answer, {"data": [{"id": ...}, ...]} (at most 4 MiB),
// and returns the ids. A body that is not one is KindUnavailable.
func ReadModelList(provider string, body io.Reader) ([]string, error) {
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(body, 4<<20)).Decode(&list); err != nil {
		return nil, &Error{Kind: KindUnavailable, Provider: provider, Message: "malformed model list: " + err.Error()}
	}
	out := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		out = append(out, m.ID)
	}
	return out, nil
}
