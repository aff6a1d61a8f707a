package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// The Anthropic Messages API (POST /v1/messages), so that Anthropic's
// SDKs and the tools built on them can use a node: the request is read
// into a stateless completion of the chat service (anthropic_wire.go),
// the reply written as a message object or as the API's server-sent
// events (anthropic_sse.go), and every error in Anthropic's shape,
// {"type":"error","error":{"type","message"},"request_id"}, with the
// status errors.go gives its code. The key may come as x-api-key, as
// Anthropic's clients send it (see withAPIKey).
//
// What the node does not do is refused by name, never dropped: see
// anthropic_wire.go and docs/API.md. The headers Anthropic's clients send
// besides (anthropic-version, anthropic-beta, x-stainless-*) are not read:
// the version names the API this edge speaks, and a beta's features are
// fields of the request, refused there when the node lacks them.

// messagesPath is the route of the Messages API.
const messagesPath = "/v1/messages"

// messages answers POST /v1/messages.
func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	// Anthropic's clients read the request's id from request-id.
	w.Header().Set("Request-Id", w.Header().Get("X-Request-Id"))
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAnthropicErrorStatus(w, http.StatusMethodNotAllowed, moltbot.Errorf(moltbot.EInvalid,
			"method %s is not allowed on %s; use POST", r.Method, r.URL.Path))
		return
	}
	w, r, ok := s.withCache(w, r)
	if !ok {
		return
	}
	bp := bodies.Get().(*[]byte)
	buf, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), (*bp)[:0])
	*bp = buf[:0]
	if err != nil {
		bodies.Put(bp)
		writeAnthropicError(w, s.decodeError(err, false))
		return
	}
	// Nothing parsed refers to buf (encoding/json copies what it keeps),
	// so it goes back to the pool at once.
	req, fields, err := parseMessages(buf)
	if cap(buf) <= 64<<10 {
		bodies.Put(bp)
	}
	if err != nil {
		writeAnthropicError(w, err)
		return
	}
	st, err := s.chat.Complete(r.Context(), principal(r), req)
	if err != nil {
		writeAnthropicError(w, rewire(err, fields))
		return
	}
	id := s.newID("msg_")
	if !req.Stream {
		res, err := st.Wait()
		if err != nil {
			writeAnthropicError(w, err)
			return
		}
		s.writeMessage(w, id, res.Completion)
		return
	}
	relayStream(st, newMessageStream(s, w, id))
}

// writeMessage writes a message object: the reply's text and tool calls
// as content blocks.
func (s *Server) writeMessage(w http.ResponseWriter, id string, comp *moltbot.Completion) {
	bp := bodyBufs.Get().(*[]byte)
	b, err := s.appendMessage((*bp)[:0], id, comp)
	if err != nil {
		writeAnthropicError(w, err)
	} else {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-Moltbot-Provider", comp.Served.String())
		h.Set("X-Moltbot-Failovers", strconv.Itoa(comp.Failovers))
		w.WriteHeader(http.StatusOK)
		w.Write(append(b, '\n'))
	}
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		bodyBufs.Put(bp)
	}
}

// appendMessage appends the message object of comp. A tool call whose
// arguments are not a JSON object cannot be a tool_use block (its input
// is one): that is the model's failure, answered as such.
func (s *Server) appendMessage(b []byte, id string, comp *moltbot.Completion) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = jsonw.String(b, id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = jsonw.String(b, comp.Served.String())
	b = append(b, `,"content":[`...)
	n := 0
	if comp.Content != "" {
		b = append(b, `{"type":"text","text":`...)
		b = jsonw.String(b, comp.Content)
		b = append(b, '}')
		n++
	}
	for i := range comp.ToolCalls {
		tc := &comp.ToolCalls[i]
		input := bytes.TrimSpace([]byte(tc.Arguments))
		if len(input) == 0 {
			input = []byte("{}")
		}
		if input[0] != '{' || !json.Valid(input) {
			return b, &moltbot.Error{Code: moltbot.EUnavailable, Message: "the model called tool " + strconv.Quote(clipped(tc.Name)) +
				" with arguments that are not a JSON object; a tool_use block's input must be one"}
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"tool_use","id":`...)
		b = jsonw.String(b, s.toolUseID(tc.ID))
		b = append(b, `,"name":`...)
		b = jsonw.String(b, tc.Name)
		b = append(b, `,"input":`...)
		b = append(b, input...)
		b = append(b, '}')
		n++
	}
	b = append(b, `],"stop_reason":"`...)
	b = append(b, stopReason(comp)...)
	b = append(b, `","stop_sequence":null,"usage":`...)
	return append(appendAnthropicUsage(b, comp.Usage, true), '}'), nil
}

// toolUseID is a tool call's id, or a new one for a call the model named
// none for: a client answers a call by its id.
func (s *Server) toolUseID(id string) string {
	if id != "" {
		return id
	}
	return s.newID("toolu_")
}

// appendAnthropicUsage appends {"input_tokens","output_tokens"}; input
// false leaves input_tokens out.
func appendAnthropicUsage(b []byte, u moltbot.Usage, input bool) []byte {
	b = append(b, '{')
	if input {
		b = append(b, `"input_tokens":`...)
		b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
		b = append(b, ',')
	}
	b = append(b, `"output_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	return append(b, '}')
}

// stopReason is the Messages API's stop_reason of a reply. The domain
// does not tell a stop sequence from the model's own end (OpenAI's
// "stop" is both), so stop_sequence is never given: end_turn stands for
// both, and stop_sequence is null.
func stopReason(comp *moltbot.Completion) string {
	switch comp.FinishReason {
	case "length":
		return "max_tokens"
	case "tool_calls":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	if len(comp.ToolCalls) > 0 {
		return "tool_use"
	}
	return "end_turn"
}

// anthropicErrorType is the Messages API's error type of a domain code
// (its status is errors.go's).
func anthropicErrorType(code string) string {
	switch code {
	case moltbot.EInvalid, moltbot.EConflict, codeRequestTimeout, codeUnsupportedMedia:
		return "invalid_request_error"
	case moltbot.ETooLarge:
		return "request_too_large"
	case moltbot.EUnauthorized:
		return "authentication_error"
	case moltbot.EForbidden:
		return "permission_error"
	case moltbot.ENotFound:
		return "not_found_error"
	case moltbot.ERateLimited, moltbot.EQuota:
		return "rate_limit_error"
	case moltbot.EBusy, moltbot.EShutdown, moltbot.EMoved, moltbot.ESlowClient:
		return "overloaded_error"
	case moltbot.ETimeout:
		return "timeout_error"
	}
	return "api_error"
}

// appendAnthropicError appends {"type":"error","error":{"type","message"}}
// and, when known, the request's id.
func appendAnthropicError(b []byte, err error, requestID string) []byte {
	b = append(b, `{"type":"error","error":{"type":"`...)
	b = append(b, anthropicErrorType(moltbot.ErrorCode(err))...)
	b = append(b, `","message":`...)
	b = jsonw.String(b, moltbot.ErrorMessage(err))
	b = append(b, '}')
	if requestID != "" {
		b = append(b, `,"request_id":`...)
		b = jsonw.String(b, requestID)
	}
	return append(b, '}')
}

// writeAnthropicError writes err in Anthropic's shape with the status of
// its code and the headers every error answer carries (errorHeaders).
func writeAnthropicError(w http.ResponseWriter, err error) {
	writeAnthropicErrorStatus(w, status(errorHeaders(w, err)), err)
}

func writeAnthropicErrorStatus(w http.ResponseWriter, code int, err error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Request-Id", h.Get("X-Request-Id"))
	w.WriteHeader(code)
	w.Write(append(appendAnthropicError(make([]byte, 0, 256), err, h.Get("X-Request-Id")), '\n'))
}

// withAPIKey returns the request to authenticate for the Messages API:
// r itself when it has an Authorization header (which then wins: it is
// what ANTHROPIC_AUTH_TOKEN sends, the way Anthropic's clients reach a
// gateway), else, when it has x-api-key (what ANTHROPIC_API_KEY sends),
// a copy whose Authorization bears that key. The key is checked as any
// bearer credential is, in constant time, and its failures count against
// the address alike.
func withAPIKey(r *http.Request) *http.Request {
	if r.Header.Get("Authorization") != "" {
		return r
	}
	key := strings.TrimSpace(r.Header.Get("X-Api-Key"))
	if key == "" {
		return r
	}
	c := r.WithContext(r.Context())
	c.Header = r.Header.Clone()
	c.Header.Set("Authorization", "Bearer "+key)
	return c
}

// writeAnthropicAuthError answers a failed authentication on the
// Messages API in its shape; a request with no credential at all is told
// to send x-api-key.
func writeAnthropicAuthError(w http.ResponseWriter, r *http.Request, err error) {
	if moltbot.ErrorCode(err) == moltbot.EUnauthorized && r.Header.Get("Authorization") == "" && r.Header.Get("X-Api-Key") == "" {
		err = &moltbot.Error{Code: moltbot.EUnauthorized, Message: "authentication required: send x-api-key: <API key or token> (or Authorization: Bearer)"}
	}
	writeAnthropicError(w, err)
}
