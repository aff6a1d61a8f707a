package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ServerVersion is what /api/version reports.
const ServerVersion = "0.5.0-moltbot-sim"

// maxBody caps request bodies the simulator reads (images included).
const maxBody = 16 << 20

// Server serves the simulator over HTTP: the Ollama API (/api/chat,
// /api/tags, /api/show, /api/ps, /api/embed, /api/embeddings,
// /api/version), the OpenAI API (/v1/chat/completions, /v1/embeddings,
// /v1/models) and Anthropic's Messages API (/v1/messages; /v1/models in
// Anthropic's shape when the request has an anthropic-version header).
// The fault options apply to every endpoint that answers a model call.
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
	mux.HandleFunc("POST /api/show", s.ollamaShow)
	mux.HandleFunc("GET /api/ps", s.ollamaPs)
	mux.HandleFunc("POST /api/embed", s.ollamaEmbed)
	mux.HandleFunc("POST /api/embeddings", s.ollamaEmbeddings)
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"version":"`+ServerVersion+`"}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", s.openaiChat)
	mux.HandleFunc("GET /v1/models", s.openaiModels)
	mux.HandleFunc("POST /v1/embeddings", s.openaiEmbeddings)
	mux.HandleFunc("POST /v1/messages", s.anthropicMessages)
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

// burst reports whether tokens after the first may go out in one write: no
// delay between tokens and no stall or drop fault that must cut after exactly
// N flushed tokens.
func (s *Server) burst() bool {
	o := s.Engine.Options()
	return o.ITL == 0 && o.StallAfter == 0 && o.DropAfter == 0
}

// streamWriter writes the frames of a reply that is not plain text:
// through its own buffer, flushed after each frame (after the first only,
// in a burst). Content-Type is set before the first frame.
type streamWriter struct {
	w     http.ResponseWriter
	fl    http.Flusher
	burst bool
	sent  int
	b     []byte
}

func newStreamWriter(w http.ResponseWriter, burst bool) *streamWriter {
	fl, _ := w.(http.Flusher)
	return &streamWriter{w: w, fl: fl, burst: burst, b: make([]byte, 0, 512)}
}

// header sets the Content-Type, until the first frame is sent.
func (s *streamWriter) header(ct string) {
	if s.sent == 0 {
		s.w.Header().Set("Content-Type", ct)
		if ct == "text/event-stream" {
			s.w.Header().Set("Cache-Control", "no-cache")
		}
	}
}

func (s *streamWriter) send(b []byte) error {
	s.b = b
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	s.sent++
	if s.fl != nil && (!s.burst || s.sent == 1) {
		s.fl.Flush()
	}
	return nil
}

func (s *Server) buf() *[]byte { return s.bufs.Get().(*[]byte) }

func (s *Server) put(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		s.bufs.Put(b)
	}
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
