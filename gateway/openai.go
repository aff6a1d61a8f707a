package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// content is a message's content: a string, or OpenAI's array of parts of
// which only text parts are supported.
type content string

type contentError struct{ param, msg string }

func (e *contentError) Error() string { return e.msg }

func (c *content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = content(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*c = ""
		return nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return &contentError{param: "content", msg: "content: expected a string or an array of text parts"}
	}
	var buf bytes.Buffer
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return &contentError{param: "content", msg: fmt.Sprintf("content[%d]: only text parts are supported, got type %q", i, p.Type)}
		}
		buf.WriteString(*p.Text)
	}
	*c = content(buf.String())
	return nil
}

// stop is OpenAI's stop: a string or an array of strings.
type stop []string

func (s *stop) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stop{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return &contentError{param: "stop", msg: "stop: expected a string or an array of strings"}
	}
	*s = many
	return nil
}

type chatMessage struct {
	Role    string  `json:"role"`
	Content content `json:"content"`
}

type chatRequest struct {
	Model         string        `json:"model"`
	Messages      []chatMessage `json:"messages"`
	Stream        bool          `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int     `json:"max_tokens"`
	MaxCompletionTokens *int     `json:"max_completion_tokens"`
	Temperature         *float64 `json:"temperature"`
	TopP                *float64 `json:"top_p"`
	Stop                stop     `json:"stop"`
	Seed                *int64   `json:"seed"`
	N                   *int     `json:"n"`
}

// options reads the sampling fields both APIs share; their ranges are the
// chat service's to check (chat.ValidOptions), except what only the wire
// can tell: a max_tokens sent as 0.
func options(model string, maxTokens, maxCompletion *int, temp, topP *float64, st stop, seed *int64) (moltbot.ChatOptions, error) {
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
	var req chatRequest
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
		msgs[i] = moltbot.Message{Role: role, Content: string(m.Content)}
	}
	opts, err := options(req.Model, req.MaxTokens, req.MaxCompletionTokens, req.Temperature, req.TopP, req.Stop, req.Seed)
	if err != nil {
		writeError(w, err)
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
	s.relay(w, st, newChunkWriter(w, id, now), req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
}

// writeCompletion writes a chat.completion object.
func (s *Server) writeCompletion(w http.ResponseWriter, id string, created int64, comp *moltbot.Completion) {
	served := comp.Served.String()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Moltbot-Provider", served)
	h.Set("X-Moltbot-Failovers", strconv.Itoa(comp.Failovers))
	b := make([]byte, 0, 256+len(comp.Content))
	b = append(b, `{"id":`...)
	b = jsonw.String(b, id)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = jsonw.String(b, served)
	b = append(b, `,"system_fingerprint":"moltbot","choices":[{"index":0,"message":{"role":"assistant","content":`...)
	b = jsonw.String(b, comp.Content)
	b = append(b, `},"logprobs":null,"finish_reason":`...)
	b = jsonw.String(b, comp.FinishReason)
	b = append(b, `}],`...)
	b = appendUsage(b, comp.Usage)
	b = append(b, "}\n"...)
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list"}
	created := s.started.Unix()
	for _, m := range s.chat.Models(principal(r)) {
		owner := m.Provider
		if owner == "" {
			owner = "moltbot"
		}
		out.Data = append(out.Data, modelObject{ID: m.ID, Object: "model", Created: created, OwnedBy: owner})
	}
	writeJSON(w, http.StatusOK, out)
}
