package sim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/jsonw"
)

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
