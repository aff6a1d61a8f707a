package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// ServerVersion is what /api/version reports.
const ServerVersion = "0.5.0-moltbot-sim"

// maxBody caps request bodies the simulator reads.
const maxBody = 4 << 20

// Server serves the simulator over HTTP with the Ollama API (/api/chat,
// /api/tags, /api/version) and the OpenAI API (/v1/chat/completions,
// /v1/models).
type Server struct {
	Engine *Engine
	mux    *http.ServeMux
	bufs   sync.Pool
}

// NewServer returns a simulator server for opts.
func NewServer(opts Options) *Server {
	s := &Server{Engine: NewEngine(opts)}
	s.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "Ollama is running (moltbot sim)") })
	mux.HandleFunc("POST /api/chat", s.ollamaChat)
	mux.HandleFunc("GET /api/tags", s.ollamaTags)
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"version":"`+ServerVersion+`"}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", s.openaiChat)
	mux.HandleFunc("GET /v1/models", s.openaiModels)
	mux.HandleFunc("GET /sim/faults", s.getFaults)
	mux.HandleFunc("POST /sim/faults", s.postFaults)
	mux.HandleFunc("DELETE /sim/faults", s.deleteFaults)
	s.mux = mux
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Moltbot-Simulated", "true")
	s.mux.ServeHTTP(w, r)
}

// chatMessage is an Ollama message (the OpenAI side reads openaiwire's).
type chatMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // a string; a list of parts is read too
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

// burst reports whether tokens after the first may go out in one write: no
// delay between tokens and no stall or drop fault that must cut after exactly
// N flushed tokens.
func (s *Server) burst() bool {
	o := s.Engine.Options()
	return o.ITL == 0 && o.StallAfter == 0 && o.DropAfter == 0
}

func (s *Server) buf() *[]byte { return s.bufs.Get().(*[]byte) }

func (s *Server) put(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		s.bufs.Put(b)
	}
}

// ---- Ollama ----

type ollamaRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Stream   *bool         `json:"stream"`
	Options  struct {
		NumPredict int `json:"num_predict"`
	} `json:"options"`
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
	if fail, status, retry := s.Engine.Fail(); fail {
		setRetryAfter(w, retry)
		ollamaError(w, status, "simulated failure")
		return
	}
	stream := req.Stream == nil || *req.Stream
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

func (s *Server) ollamaTags(w http.ResponseWriter, _ *http.Request) {
	type details struct {
		Format            string `json:"format"`
		Family            string `json:"family"`
		ParameterSize     string `json:"parameter_size"`
		QuantizationLevel string `json:"quantization_level"`
	}
	type model struct {
		Name       string    `json:"name"`
		Model      string    `json:"model"`
		ModifiedAt time.Time `json:"modified_at"`
		Size       int64     `json:"size"`
		Digest     string    `json:"digest"`
		Details    details   `json:"details"`
	}
	var out struct {
		Models []model `json:"models"`
	}
	for _, m := range s.Engine.Options().Models {
		name := m
		if !strings.Contains(name, ":") {
			name += ":latest"
		}
		out.Models = append(out.Models, model{Name: name, Model: name, ModifiedAt: time.Unix(0, 0).UTC(),
			Digest:  "sha256:0000000000000000000000000000000000000000000000000000000000000000",
			Details: details{Format: "sim", Family: "moltbot-sim", ParameterSize: "0B", QuantizationLevel: "none"}})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// ---- OpenAI ----

func openaiError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(openaiwire.AppendError(nil, msg, typ, "", ""), '\n'))
}

func (s *Server) openaiChat(w http.ResponseWriter, r *http.Request) {
	var req openaiwire.ChatRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		openaiError(w, http.StatusBadRequest, "invalid_request_error", "invalid request: "+err.Error())
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
	if fail, status, retry := s.Engine.Fail(); fail {
		setRetryAfter(w, retry)
		typ := "server_error"
		if status == http.StatusTooManyRequests {
			typ = "rate_limit_error"
		}
		openaiError(w, status, typ, "simulated failure")
		return
	}
	maxTok := 0
	if req.MaxTokens != nil {
		maxTok = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil && *req.MaxCompletionTokens > 0 {
		maxTok = *req.MaxCompletionTokens
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

func (s *Server) openaiModels(w http.ResponseWriter, _ *http.Request) {
	out := openaiwire.ModelList{Object: "list", Data: []openaiwire.Model{}}
	for _, m := range s.Engine.Options().Models {
		out.Data = append(out.Data, openaiwire.Model{ID: m, Object: "model", OwnedBy: "moltbot-sim"})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
	}
}

// duration reads a JSON duration: a Go duration string ("2s", "150ms") or a
// number of seconds.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			return fmt.Errorf("want a duration such as \"2s\", got %q", s)
		}
		*d = duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil || f < 0 {
		return fmt.Errorf("want a duration such as \"2s\" or a number of seconds, got %s", b)
	}
	*d = duration(f * float64(time.Second))
	return nil
}

// Faults is the JSON of /sim/faults. Fields left out keep their value.
type Faults struct {
	ErrorRate  *float64  `json:"error_rate,omitempty"`
	Status     *int      `json:"status,omitempty"`
	RetryAfter *duration `json:"retry_after,omitempty"`
	Latency    *duration `json:"latency,omitempty"`
	StallAfter *int      `json:"stall_after,omitempty"`
	DropAfter  *int      `json:"drop_after,omitempty"`
	TTFT       *duration `json:"ttft,omitempty"`
	ITL        *duration `json:"itl,omitempty"`
}

type faultsView struct {
	ErrorRate  float64 `json:"error_rate"`
	Status     int     `json:"status"`
	RetryAfter string  `json:"retry_after"`
	Latency    string  `json:"latency"`
	StallAfter int     `json:"stall_after"`
	DropAfter  int     `json:"drop_after"`
	TTFT       string  `json:"ttft"`
	ITL        string  `json:"itl"`
	Tokens     int     `json:"tokens"`
}

func (s *Server) writeFaults(w http.ResponseWriter) {
	o := s.Engine.Options()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(faultsView{ErrorRate: o.ErrorRate, Status: o.Status, RetryAfter: o.RetryAfter.String(),
		Latency: o.Latency.String(), StallAfter: o.StallAfter, DropAfter: o.DropAfter, TTFT: o.TTFT.String(), ITL: o.ITL.String(), Tokens: o.Tokens})
}

func (s *Server) getFaults(w http.ResponseWriter, _ *http.Request) { s.writeFaults(w) }

// ApplyFaults merges f into the engine's options after checking it.
func (e *Engine) ApplyFaults(f Faults) error {
	o := e.Options()
	if f.ErrorRate != nil {
		if *f.ErrorRate < 0 || *f.ErrorRate > 1 {
			return fmt.Errorf("error_rate must be between 0 and 1, got %g", *f.ErrorRate)
		}
		o.ErrorRate = *f.ErrorRate
	}
	if f.Status != nil {
		if *f.Status != 0 && (*f.Status < 400 || *f.Status > 599) {
			return fmt.Errorf("status must be 0 (none) or 400..599, got %d", *f.Status)
		}
		o.Status = *f.Status
	}
	for _, p := range []struct {
		v *int
		d *int
		n string
	}{{f.StallAfter, &o.StallAfter, "stall_after"}, {f.DropAfter, &o.DropAfter, "drop_after"}} {
		if p.v != nil {
			if *p.v < 0 {
				return fmt.Errorf("%s must not be negative", p.n)
			}
			*p.d = *p.v
		}
	}
	if f.RetryAfter != nil {
		o.RetryAfter = time.Duration(*f.RetryAfter)
	}
	if f.Latency != nil {
		o.Latency = time.Duration(*f.Latency)
	}
	if f.TTFT != nil {
		o.TTFT = time.Duration(*f.TTFT)
	}
	if f.ITL != nil {
		o.ITL = time.Duration(*f.ITL)
	}
	e.SetOptions(o)
	return nil
}

func (s *Server) postFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		openaiError(w, http.StatusBadRequest, "invalid_request_error", "faults: "+err.Error())
		return
	}
	if err := s.Engine.ApplyFaults(f); err != nil {
		openaiError(w, http.StatusBadRequest, "invalid_request_error", "faults: "+err.Error())
		return
	}
	s.writeFaults(w)
}

// deleteFaults clears every fault (timing is kept).
func (s *Server) deleteFaults(w http.ResponseWriter, _ *http.Request) {
	o := s.Engine.Options()
	o.ErrorRate, o.Status, o.RetryAfter, o.Latency, o.StallAfter, o.DropAfter = 0, 0, 0, 0, 0, 0
	s.Engine.SetOptions(o)
	s.writeFaults(w)
}
