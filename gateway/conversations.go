package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/jsonw"
)

type createRequest struct {
	ID     string             `json:"id"`
	System openaiwire.Content `json:"system"`
	Model  string             `json:"model"`
}

// Timestamps on the wire, in both APIs, are Unix seconds: OpenAI's
// convention for `created`, kept by the conversations API too (whose
// streamed turns are OpenAI chunks). The node stores milliseconds
// (moltbot.Message.Created, the snapshot codec); unixSeconds presents them.
func unixSeconds(ms int64) int64 { return ms / 1000 }

// conversationJSON is the wire form of a conversation.
type conversationJSON struct {
	ID       string        `json:"id"`
	Object   string        `json:"object"`
	Created  int64         `json:"created"` // Unix seconds
	Updated  int64         `json:"updated"` // Unix seconds
	System   string        `json:"system,omitempty"`
	Model    string        `json:"model,omitempty"`
	Bot      string        `json:"bot,omitempty"` // the bot the conversation is of
	Version  uint64        `json:"version"`
	Owner    string        `json:"owner,omitempty"`
	Messages []messageJSON `json:"messages"`
	// Outbox: replies waiting to reach a channel (or given up).
	Outbox []deliveryJSON `json:"outbox,omitempty"`
	// Summary: what the model reads in place of the first messages.
	Summary *summaryJSON `json:"summary,omitempty"`
	// Handoff: who has it (bot, queue, agent) and its epoch, once it was
	// handed to a person.
	Handoff *moltbot.HandoffView `json:"handoff,omitempty"`
}

// summaryJSON is the wire form of a conversation's summary: created in
// Unix seconds.
type summaryJSON struct {
	moltbot.Summary
	Created int64 `json:"created"`
}

// deliveryJSON is the wire form of an outbox entry: next_at in Unix seconds.
type deliveryJSON struct {
	moltbot.Delivery
	NextAt int64 `json:"next_at,omitempty"`
}

// messageJSON is the wire form of a message: the domain message with its
// time in Unix seconds, and its parts in OpenAI's shape, so that a stored
// message can be sent as it is to /v1/chat/completions: an assistant's
// tool calls in tool_calls, a tool result as a tool message (tool_call_id
// and content), and a message with images as content parts (parts), each
// image a data URL. (These fields hide the embedded ones.)
type messageJSON struct {
	moltbot.Message
	Content    string                `json:"content"`
	Parts      []partJSON            `json:"parts,omitempty"`
	ToolCalls  []openaiwire.ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string                `json:"tool_call_id,omitempty"`
	Created    int64                 `json:"created,omitempty"`
}

// partJSON is a content part: {"type":"text","text":...} or
// {"type":"image_url","image_url":{"url":"data:..."}}.
type partJSON struct {
	Type     string               `json:"type"`
	Text     *string              `json:"text,omitempty"`
	ImageURL *openaiwire.ImageURL `json:"image_url,omitempty"`
}

func toMessageJSON(m moltbot.Message) messageJSON {
	out := messageJSON{Message: m, Content: m.Content, Created: unixSeconds(m.Created)}
	images := false
	for i := range m.Parts {
		switch p := &m.Parts[i]; p.Type {
		case moltbot.PartToolCall:
			out.ToolCalls = append(out.ToolCalls, openaiwire.ToolCall{ID: p.CallID, Type: "function",
				Function: openaiwire.FunctionCall{Name: p.Name, Arguments: p.Arguments}})
		case moltbot.PartToolResult:
			out.ToolCallID, out.Content = p.CallID, p.Content
		case moltbot.PartImage:
			images = true
		}
	}
	if images {
		for i := range m.Parts {
			switch p := &m.Parts[i]; p.Type {
			case moltbot.PartText:
				out.Parts = append(out.Parts, partJSON{Type: "text", Text: &p.Text})
			case moltbot.PartImage:
				url := openaiwire.DataURL(p.MIME, p.Data)
				if len(p.Data) == 0 {
					url = "" // stored apart and not loaded: the ref names it
				}
				out.Parts = append(out.Parts, partJSON{Type: "image_url", ImageURL: &openaiwire.ImageURL{URL: url}})
			}
		}
	}
	return out
}

func toJSON(c *moltbot.Conversation) conversationJSON {
	out := conversationJSON{ID: c.ID, Object: "conversation", Created: unixSeconds(c.Created), Updated: unixSeconds(c.Updated),
		System: c.System, Model: c.Model, Bot: c.Bot, Version: c.Version, Owner: c.Owner, Messages: make([]messageJSON, 0, len(c.Messages)+1)}
	if c.System != "" {
		out.Messages = append(out.Messages, toMessageJSON(moltbot.Message{Role: moltbot.RoleSystem, Content: c.System, Created: c.Created}))
	}
	for _, m := range c.Messages {
		out.Messages = append(out.Messages, toMessageJSON(m))
	}
	for _, d := range c.Outbox {
		out.Outbox = append(out.Outbox, deliveryJSON{Delivery: d, NextAt: unixSeconds(d.NextAt)})
	}
	if s := c.Summary; s != nil {
		out.Summary = &summaryJSON{Summary: *s, Created: unixSeconds(s.Created)}
	}
	out.Handoff = moltbot.HandoffOf(c)
	return out
}

func (s *Server) createConversation(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := s.decode(w, r, &req, true); err != nil {
		writeError(w, err)
		return
	}
	system, err := textOf(req.System, "system")
	if err != nil {
		writeError(w, err)
		return
	}
	c, err := s.chat.Create(r.Context(), principal(r), moltbot.NewConversation{ID: req.ID, System: system, Model: req.Model})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/conversations/"+c.ID)
	writeJSON(w, http.StatusCreated, toJSON(c))
}

func (s *Server) conversation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		c, err := s.chat.Get(r.Context(), principal(r), id)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, toJSON(c))
	case http.MethodDelete:
		if err := s.chat.Delete(r.Context(), principal(r), id); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "conversation.deleted", "deleted": true})
	default:
		methodNotAllowed(w, r, "GET", "DELETE")
	}
}

type messageRequest struct {
	// Content is the user message: a string, or parts (text and images
	// as data URLs); empty when tool_results alone make the turn.
	Content             openaiwire.Content `json:"content"`
	Role                string             `json:"role"`
	Stream              bool               `json:"stream"`
	Model               string             `json:"model"`
	MaxTokens           *int               `json:"max_tokens"`
	MaxCompletionTokens *int               `json:"max_completion_tokens"`
	Temperature         *float64           `json:"temperature"`
	TopP                *float64           `json:"top_p"`
	Stop                openaiwire.Stop    `json:"stop"`
	Seed                *int64             `json:"seed"`
	PresencePenalty     *float64           `json:"presence_penalty"`
	FrequencyPenalty    *float64           `json:"frequency_penalty"`
	User                string             `json:"user"`
	// Tools, ToolChoice, ParallelToolCalls and ResponseFormat are the
	// turn's, as in a chat completion (a conversation keeps none of them:
	// each turn offers its tools).
	Tools             []openaiwire.Tool          `json:"tools"`
	ToolChoice        *openaiwire.ToolChoice     `json:"tool_choice"`
	ParallelToolCalls *bool                      `json:"parallel_tool_calls"`
	ResponseFormat    *openaiwire.ResponseFormat `json:"response_format"`
	// ToolResults answer the tool calls of the conversation's last reply:
	// each of them, before anything else is said.
	ToolResults []toolResultJSON `json:"tool_results"`
	// ExternalID makes the turn idempotent: a retry with the same id gets
	// the stored reply, and no second turn is run.
	ExternalID    string `json:"external_id"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// toolResultJSON is a tool's result, answering one tool call.
type toolResultJSON struct {
	ToolCallID string             `json:"tool_call_id"`
	Content    openaiwire.Content `json:"content"`
}

// turnResponse is the body of a non-streamed turn.
type turnResponse struct {
	ConversationID string      `json:"conversation_id"`
	Object         string      `json:"object"`
	Message        messageJSON `json:"message"`
	Model          string      `json:"model"`
	FinishReason   string      `json:"finish_reason"`
	Usage          usageJSON   `json:"usage"`
	Failovers      int         `json:"failovers"`
	Version        uint64      `json:"version"`
}

type usageJSON struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req messageRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if req.Role != "" && req.Role != string(moltbot.RoleUser) {
		writeError(w, invalid("role", "role must be \"user\" (or left out), got %q", req.Role))
		return
	}
	in, err := s.turnInput(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	// A retried delivery carries the same id: in the body, or as the
	// Idempotency-Key header many HTTP clients send.
	ext := req.ExternalID
	if h := r.Header.Get("Idempotency-Key"); h != "" {
		if ext != "" && ext != h {
			writeError(w, invalid("external_id", "external_id %q and the Idempotency-Key header %q differ", ext, h))
			return
		}
		ext = h
	}
	in.ExternalID = ext
	w, r, ok := s.withCache(w, r)
	if !ok {
		return
	}
	st, err := s.chat.Turn(r.Context(), principal(r), chat.TurnRequest{Conversation: id, Stream: req.Stream, Input: in})
	if err != nil {
		writeError(w, err)
		return
	}
	if !req.Stream {
		res, err := st.Wait()
		if err != nil {
			writeError(w, err)
			return
		}
		c := res.Completion
		w.Header().Set("X-Moltbot-Provider", c.Served.String())
		w.Header().Set("X-Moltbot-Failovers", strconv.Itoa(c.Failovers))
		if res.Replayed {
			w.Header().Set("X-Moltbot-Replayed", "true")
		}
		writeJSON(w, http.StatusOK, turnResponse{ConversationID: id, Object: "conversation.turn", Message: toMessageJSON(res.Message),
			Model: c.Served.String(), FinishReason: c.FinishReason, Failovers: c.Failovers, Version: res.Version,
			Usage: usageJSON{c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.Total()}})
		return
	}
	// The finish chunk goes out only once the reply is stored.
	s.relay(w, st, newChunkWriter(w, id, time.Now().Unix()), req.StreamOptions == nil || req.StreamOptions.IncludeUsage)
}

// turnInput is what a turn request brings: the user message (its text,
// or parts with images), tool results, and the turn's options.
func (s *Server) turnInput(req *messageRequest) (moltbot.TurnInput, error) {
	var in moltbot.TurnInput
	if req.Content.NotText() < 0 {
		in.Content = req.Content.Text()
	} else {
		parts, err := contentParts(req.Content, moltbot.RoleUser, 0, s.chat.Config().MaxImageBytes)
		if err != nil {
			return in, renameParam(err, "messages[0].content", "content")
		}
		in.Parts, in.Content = parts, moltbot.TextOf(parts)
	}
	for i, r := range req.ToolResults {
		text, err := textOf(r.Content, fmt.Sprintf("tool_results[%d].content", i))
		if err != nil {
			return in, err
		}
		in.ToolResults = append(in.ToolResults, moltbot.Part{Type: moltbot.PartToolResult, CallID: r.ToolCallID, Content: text})
	}
	if in.Content == "" && in.Parts == nil && len(in.ToolResults) == 0 {
		return in, invalid("content", "content must be a non-empty string (or tool_results answer the last reply's tool calls)")
	}
	o, err := options(req.Model, req.MaxTokens, req.MaxCompletionTokens, req.Temperature, req.TopP, req.Stop, req.Seed)
	if err != nil {
		return in, err
	}
	o.PresencePenalty, o.FrequencyPenalty, o.User = req.PresencePenalty, req.FrequencyPenalty, req.User
	in.Options = o
	return in, toolOptions(&in.Options, req.Tools, req.ToolChoice, req.ParallelToolCalls, req.ResponseFormat)
}

// renameParam rewrites the param (and message) of err, a field error
// about a chat message, as the field of a turn's request.
func renameParam(err error, from, to string) error {
	var e *moltbot.Error
	if errors.As(err, &e) {
		c := *e
		c.Param = strings.Replace(c.Param, from, to, 1)
		c.Message = strings.ReplaceAll(c.Message, from, to)
		return &c
	}
	return err
}

// keepAlive is how often a quiet event stream says it is still there.
const keepAlive = 15 * time.Second

// credentialRecheck is how often, at most, an event stream checks that its
// credential still authenticates (revoked, expired, its tenant deleted):
// before an event when this long has passed, and at every keep-alive.
const credentialRecheck = time.Second

// conversationEvents follows a conversation (GET .../events): an SSE
// stream of `message` events (each message stored, as in the
// conversation's JSON), `token` events (a turn's tokens, {"content",
// "model"}), `tool_call` events (pieces of a reply's tool calls, {"index",
// "id", "name", "arguments", "model"}), comments every 15 s while quiet,
// and an `error` event when it ends (the conversation deleted, a follower
// too slow).
func (s *Server) conversationEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, err := s.chat.Subscribe(r.Context(), principal(r), id)
	if err != nil {
		writeError(w, err)
		return
	}
	defer st.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, 0, 1024)
	write := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err := w.Write(buf)
		buf = buf[:0]
		return err == nil && rc.Flush() == nil
	}
	buf = append(buf, ": following "...)
	buf = append(buf, id...)
	buf = append(buf, "\n\n"...)
	if !write() {
		return
	}
	events := make(chan moltbot.Event)
	go func() {
		defer close(events)
		for ev := range st.Events() {
			events <- ev
		}
	}()
	defer func() {
		st.Close()
		for range events { // let the reader end
		}
	}()
	// The stream lives as long as its client wants: it must not outlive
	// its credential.
	authOn, client, checked := s.mg.AuthEnabled(), "", time.Now()
	if authOn {
		client = s.clientKey(r)
	}
	revoked := func(force bool) bool {
		if !authOn || !force && time.Since(checked) < credentialRecheck {
			return false
		}
		checked = time.Now()
		_, err := s.mg.Authenticate(r, client)
		if err == nil {
			return false
		}
		buf = append(buf[:0], "event: error\ndata: "...)
		buf = appendError(buf, err)
		buf = append(buf, "\n\n"...)
		write()
		return true
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if revoked(true) {
				return
			}
			buf = append(buf, ": keep-alive\n\n"...)
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Kind != moltbot.EventError && revoked(false) {
				return
			}
			switch ev.Kind {
			case moltbot.EventMessage:
				b, _ := json.Marshal(toMessageJSON(*ev.Message))
				buf = append(buf, "event: message\ndata: "...)
				buf = append(buf, b...)
			case moltbot.EventToken:
				buf = append(buf, `event: token`+"\n"+`data: {"content":`...)
				buf = jsonw.String(buf, ev.Text)
				buf = append(buf, `,"model":`...)
				buf = jsonw.String(buf, ev.Served.String())
				buf = append(buf, '}')
			case moltbot.EventToolCall:
				// A piece of a tool call: id and name on a call's first
				// piece, more arguments on the next ones (as in a chunk's
				// delta.tool_calls).
				d := ev.ToolCall
				buf = append(buf, `event: tool_call`+"\n"+`data: {"index":`...)
				buf = jsonw.Int(buf, int64(d.Index))
				if d.ID != "" || d.Name != "" {
					buf = append(buf, `,"id":`...)
					buf = jsonw.String(buf, d.ID)
					buf = append(buf, `,"name":`...)
					buf = jsonw.String(buf, d.Name)
				}
				buf = append(buf, `,"arguments":`...)
				buf = jsonw.String(buf, d.Arguments)
				buf = append(buf, `,"model":`...)
				buf = jsonw.String(buf, ev.Served.String())
				buf = append(buf, '}')
			case moltbot.EventSubscribed:
				// First, and again after the conversation moved between
				// nodes (events of the move may be missed: read it again).
				buf = append(buf, "event: subscribed\ndata: {}"...)
			case moltbot.EventError:
				buf = append(buf, "event: error\ndata: "...)
				buf = appendError(buf, ev.Err)
			default:
				continue
			}
			buf = append(buf, "\n\n"...)
			if ev.Kind == moltbot.EventError {
				write()
				return
			}
		}
		if !write() {
			return
		}
	}
}
