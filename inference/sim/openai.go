package sim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/jsonw"
)

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
