package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/openaiwire"
)

// textOf is a message's content as the gateway takes it: text parts only
// (images and other parts come with issue 12); param names the field.
func textOf(c openaiwire.Content, param string) (string, error) {
	if i := c.NotText(); i >= 0 {
		return "", invalid(param, "%s[%d]: only text parts are supported, got type %q", param, i, c[i].Type)
	}
	return c.Text(), nil
}

// options reads the sampling fields both APIs share; their ranges are the
// chat service's to check (chat.ValidOptions), except what only the wire
// can tell: a max_tokens sent as 0.
func options(model string, maxTokens, maxCompletion *int, temp, topP *float64, st openaiwire.Stop, seed *int64) (moltbot.ChatOptions, error) {
	o := moltbot.ChatOptions{Model: model, Temperature: temp, TopP: topP, Stop: st, Seed: seed}
	for name, v := range map[string]*int{"max_tokens": maxTokens, "max_completion_tokens": maxCompletion} {
		if v != nil && *v < 1 {
			return o, invalid(name, "%s must be at least 1, got %d", name, *v)
		}
	}
	if maxTokens != nil {
		o.MaxTokens = *maxTokens
	}
	if maxCompletion != nil {
		o.MaxTokens = *maxCompletion
	}
	return o, chat.ValidOptions(o)
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req openaiwire.ChatRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if req.N != nil && *req.N != 1 {
		writeError(w, invalid("n", "only n=1 is supported"))
		return
	}
	msgs := make([]moltbot.Message, len(req.Messages))
	for i, m := range req.Messages {
		role := moltbot.Role(m.Role)
		if m.Role == "developer" {
			role = moltbot.RoleSystem
		}
		text, err := textOf(m.Content, fmt.Sprintf("messages[%d].content", i))
		if err != nil {
			writeError(w, err)
			return
		}
		msgs[i] = moltbot.Message{Role: role, Content: text}
	}
	opts, err := options(req.Model, req.MaxTokens, req.MaxCompletionTokens, req.Temperature, req.TopP, req.Stop, req.Seed)
	if err != nil {
		writeError(w, err)
		return
	}
	w, r, ok := s.withCache(w, r)
	if !ok {
		return
	}
	st, err := s.chat.Complete(r.Context(), principal(r), chat.CompletionRequest{Messages: msgs, Options: opts, Stream: req.Stream})
	if err != nil {
		writeError(w, err)
		return
	}
	id := s.newID("chatcmpl-")
	now := time.Now().Unix()
	if !req.Stream {
		res, err := st.Wait()
		if err != nil {
			writeError(w, err)
			return
		}
		s.writeCompletion(w, id, now, res.Completion)
		return
	}
	s.relay(w, st, newChunkWriter(w, id, now), req.IncludeUsage())
}

// fingerprint is the system_fingerprint of every completion and chunk.
const fingerprint = "moltbot"

// writeCompletion writes a chat.completion object.
func (s *Server) writeCompletion(w http.ResponseWriter, id string, created int64, comp *moltbot.Completion) {
	served := comp.Served.String()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Moltbot-Provider", served)
	h.Set("X-Moltbot-Failovers", strconv.Itoa(comp.Failovers))
	bp := bodyBufs.Get().(*[]byte)
	b := openaiwire.AppendHead((*bp)[:0], id, openaiwire.ObjectCompletion, created, served, fingerprint)
	b = openaiwire.AppendMessage(b, comp.Content, comp.FinishReason, comp.Usage)
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
