// Package faketelegram is a fake Telegram Bot API server for tests,
// written to the documented protocol (core.telegram.org/bots/api): the
// methods at /bot{token}/{method} with their parameters as JSON, a form or
// multipart (as clients send them), answers {"ok":true,"result":...} or
// {"ok":false,"error_code":N,"description":...,"parameters":{...}}.
//
// It serves getMe, getUpdates (long polling with offsets: a higher offset
// confirms the updates under it; a second poller ends the first with 409,
// as Telegram does; 409 too while a webhook is set), setWebhook,
// deleteWebhook, getWebhookInfo, sendMessage (4096 UTF-16 units at most;
// 429 with parameters.retry_after on demand), sendChatAction, getFile and
// the file downloads at /file/bot{token}/{path}; a wrong token is 401.
// PostWebhook sends an update to a webhook the way Telegram does (the
// secret in X-Telegram-Bot-Api-Secret-Token).
//
// npm grammy is run against it (test/channels), so the fake is known to
// speak what the real client expects.
package faketelegram

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// Sent is a message the bot sent (sendMessage).
type Sent struct {
	MessageID int64
	ChatID    int64
	ThreadID  int64
	ReplyTo   int64 // reply_parameters.message_id (or reply_to_message_id)
	Text      string
	ParseMode string
}

// Action is a sendChatAction.
type Action struct {
	ChatID int64
	Action string
}

// Server is the fake. Make it with New; Close it.
type Server struct {
	Token       string
	BotID       int64
	BotUsername string

	srv *httptest.Server

	mu       sync.Mutex
	updates  []json.RawMessage // not yet confirmed, in id order
	ids      []int64
	nextID   int64
	wake     chan struct{} // closed when an update arrives or a poller is ended
	poller   int           // the current poller's number (0: none)
	pollers  int
	webhook  string
	secret   string
	sent     []Sent
	actions  []Action
	limits   map[int64][]int // chat -> retry_after of the next sendMessage answers
	failAt   map[int64]int   // chat -> sendMessage answers 500 after this many more successes
	migrated map[int64]int64 // a group -> the supergroup it became
	conflict int             // pollers ended by another (409)
	files    map[string][]byte
	calls    map[string]int
	offsets  []int64 // every getUpdates' offset, in order
	stall    bool    // getUpdates never answers (until the client gives up)
	nextMsgs int64
}

// New starts a fake for token (a bot with id BotID from the token's digits
// and username "moltbot_test_bot").
func New(token string) *Server {
	id, _, _ := strings.Cut(token, ":")
	n, _ := strconv.ParseInt(id, 10, 64)
	s := &Server{Token: token, BotID: n, BotUsername: "moltbot_test_bot", nextID: 1000, wake: make(chan struct{}),
		limits: map[int64][]int{}, failAt: map[int64]int{}, migrated: map[int64]int64{}, files: map[string][]byte{}, calls: map[string]int{}, nextMsgs: 1}
	s.srv = httptest.NewServer(s)
	return s
}

// URL is the API root (api_url; grammy's apiRoot).
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	s.broadcast()
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// broadcast wakes every waiting poller; s.mu held.
func (s *Server) broadcast() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// Push queues an update (its update_id set here, in order) and returns its
// id. u is an Update without update_id, e.g. {"message":{...}}.
func (s *Server) Push(u map[string]any) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID
	s.nextID++
	u["update_id"] = id
	b, _ := json.Marshal(u)
	s.updates = append(s.updates, b)
	s.ids = append(s.ids, id)
	s.broadcast()
	return id
}

// Text is a private or group text message update from user to chat.
func Text(chatID int64, chatType string, from int64, isBot bool, text string, messageID int64) map[string]any {
	return map[string]any{"message": map[string]any{
		"message_id": messageID,
		"from":       map[string]any{"id": from, "is_bot": isBot, "first_name": "Ada", "username": "ada"},
		"chat":       map[string]any{"id": chatID, "type": chatType},
		"date":       time.Now().Unix(),
		"text":       text,
	}}
}

// Polling reports whether a getUpdates is waiting for updates now.
func (s *Server) Polling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poller != 0
}

// Conflicts is how many polls another poller ended (409): two processes
// polled at once.
func (s *Server) Conflicts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conflict
}

// Pending is how many updates are not confirmed yet.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.updates)
}

// RateLimit makes the next len(retryAfter) sendMessage calls to chat
// answer 429 with those retry_after seconds.
func (s *Server) RateLimit(chat int64, retryAfter ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits[chat] = append(s.limits[chat], retryAfter...)
}

// Fail makes the sendMessage to chat after the next `after` successful
// ones answer 500 Internal Server Error, once.
func (s *Server) Fail(chat int64, after int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAt[chat] = after
}

// Migrate makes chat a group that became supergroup to: sendMessage to
// it answers 400 with parameters.migrate_to_chat_id, as Telegram does.
func (s *Server) Migrate(chat, to int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.migrated[chat] = to
}

// AddFile serves data for file_id (getFile, then the download).
func (s *Server) AddFile(fileID string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[fileID] = data
}

// Stall makes getUpdates hang until its client gives up (on) or answer
// again (off).
func (s *Server) Stall(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall = on
	s.broadcast()
}

// Sent is every message sent, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Actions is every chat action, in order.
func (s *Server) Actions() []Action {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Action(nil), s.actions...)
}

// Calls is how many times method was called (with the right token).
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Offsets is the offset of every getUpdates, in order.
func (s *Server) Offsets() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.offsets...)
}

// Webhook is the URL setWebhook set ("" none).
func (s *Server) Webhook() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhook
}

// SetWebhook sets a webhook as setWebhook would (getUpdates then answers 409).
func (s *Server) SetWebhook(u, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhook, s.secret = u, secret
	s.broadcast()
}

// PostWebhook sends update u to the webhook the way Telegram does: a JSON
// POST with the secret in X-Telegram-Bot-Api-Secret-Token (none when
// secret is ""). It returns the status.
func PostWebhook(ctx context.Context, webhookURL, secret string, u map[string]any) (int, error) {
	b, err := json.Marshal(u)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, webhookURL, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

type answer struct {
	OK          bool           `json:"ok"`
	Result      any            `json:"result,omitempty"`
	ErrorCode   int            `json:"error_code,omitempty"`
	Description string         `json:"description,omitempty"`
	Parameters  map[string]any `json:"parameters,omitempty"`
}

func reply(w http.ResponseWriter, code int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(a)
}

func fail(w http.ResponseWriter, code int, desc string, params map[string]any) {
	reply(w, code, answer{ErrorCode: code, Description: desc, Parameters: params})
}

// ServeHTTP routes /bot{token}/{method} and /file/bot{token}/{path}.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/file/bot"); ok {
		tok, file, _ := strings.Cut(rest, "/")
		if tok != s.Token {
			fail(w, 401, "Unauthorized", nil)
			return
		}
		s.mu.Lock()
		data, ok := s.files[strings.TrimPrefix(file, "photos/")]
		s.mu.Unlock()
		if !ok {
			fail(w, 404, "Not Found", nil)
			return
		}
		w.Write(data)
		return
	}
	rest, ok := strings.CutPrefix(path, "/bot")
	if !ok {
		fail(w, 404, "Not Found", nil)
		return
	}
	tok, method, _ := strings.Cut(rest, "/")
	if tok != s.Token {
		fail(w, 401, "Unauthorized", nil)
		return
	}
	p, err := params(r)
	if err != nil {
		fail(w, 400, "Bad Request: "+err.Error(), nil)
		return
	}
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
	switch method {
	case "getMe":
		reply(w, 200, answer{OK: true, Result: map[string]any{"id": s.BotID, "is_bot": true, "first_name": "Moltbot",
			"username": s.BotUsername, "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false}})
	case "getUpdates":
		s.getUpdates(w, r, p)
	case "setWebhook":
		s.SetWebhook(p.str("url"), p.str("secret_token"))
		reply(w, 200, answer{OK: true, Result: true, Description: "Webhook was set"})
	case "deleteWebhook":
		s.mu.Lock()
		s.webhook, s.secret = "", ""
		if p.str("drop_pending_updates") == "true" {
			s.updates, s.ids = nil, nil
		}
		s.mu.Unlock()
		reply(w, 200, answer{OK: true, Result: true, Description: "Webhook is already deleted"})
	case "getWebhookInfo":
		s.mu.Lock()
		info := map[string]any{"url": s.webhook, "has_custom_certificate": false, "pending_update_count": len(s.updates)}
		s.mu.Unlock()
		reply(w, 200, answer{OK: true, Result: info})
	case "sendMessage":
		s.sendMessage(w, p)
	case "sendChatAction":
		chat, err := p.int("chat_id")
		if err != nil || p.str("action") == "" {
			fail(w, 400, "Bad Request: chat_id and action are required", nil)
			return
		}
		s.mu.Lock()
		s.actions = append(s.actions, Action{ChatID: chat, Action: p.str("action")})
		s.mu.Unlock()
		reply(w, 200, answer{OK: true, Result: true})
	case "getFile":
		id := p.str("file_id")
		s.mu.Lock()
		data, ok := s.files[id]
		s.mu.Unlock()
		if !ok {
			fail(w, 400, "Bad Request: invalid file_id", nil)
			return
		}
		reply(w, 200, answer{OK: true, Result: map[string]any{"file_id": id, "file_unique_id": "u" + id, "file_size": len(data), "file_path": "photos/" + id}})
	default:
		fail(w, 404, "Not Found: method not found", nil)
	}
}

func (s *Server) getUpdates(w http.ResponseWriter, r *http.Request, p values) {
	offset, _ := p.int("offset")
	limit, err := p.int("limit")
	if err != nil || limit <= 0 || limit > 100 {
		limit = 100
	}
	timeout, _ := p.int("timeout")
	deadline := time.NewTimer(time.Duration(max(timeout, 0)) * time.Second)
	defer deadline.Stop()

	s.mu.Lock()
	s.offsets = append(s.offsets, offset)
	if s.webhook != "" {
		s.mu.Unlock()
		fail(w, 409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first", nil)
		return
	}
	// A new poller ends the one before it.
	s.pollers++
	me := s.pollers
	if s.poller != 0 {
		s.broadcast()
	}
	s.poller = me
	// A higher offset confirms every update under it.
	if offset > 0 {
		i := 0
		for i < len(s.ids) && s.ids[i] < offset {
			i++
		}
		s.updates, s.ids = s.updates[i:], s.ids[i:]
	}
	for {
		if s.poller != me {
			s.conflict++
			s.mu.Unlock()
			fail(w, 409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running", nil)
			return
		}
		if s.webhook != "" {
			s.poller = 0
			s.mu.Unlock()
			fail(w, 409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first", nil)
			return
		}
		if !s.stall && len(s.updates) > 0 {
			n := min(int(limit), len(s.updates))
			out := append([]json.RawMessage(nil), s.updates[:n]...)
			s.poller = 0
			s.mu.Unlock()
			reply(w, 200, answer{OK: true, Result: out})
			return
		}
		wake := s.wake
		stall := s.stall
		s.mu.Unlock()
		var timedOut bool
		if stall {
			select {
			case <-wake:
			case <-r.Context().Done():
			}
		} else {
			select {
			case <-wake:
			case <-deadline.C:
				timedOut = true
			case <-r.Context().Done():
			}
		}
		s.mu.Lock()
		if r.Context().Err() != nil || timedOut {
			if s.poller == me {
				s.poller = 0
			}
			s.mu.Unlock()
			if timedOut {
				reply(w, 200, answer{OK: true, Result: []json.RawMessage{}})
			}
			return
		}
	}
}

func (s *Server) sendMessage(w http.ResponseWriter, p values) {
	chat, err := p.int("chat_id")
	if err != nil {
		fail(w, 400, "Bad Request: chat not found", nil)
		return
	}
	text := p.str("text")
	if strings.TrimSpace(text) == "" {
		fail(w, 400, "Bad Request: message text is empty", nil)
		return
	}
	if len(utf16.Encode([]rune(text))) > 4096 {
		fail(w, 400, "Bad Request: message is too long", nil)
		return
	}
	thread, _ := p.int("message_thread_id")
	var replyTo int64
	if rp := p.str("reply_parameters"); rp != "" {
		var v struct {
			MessageID int64 `json:"message_id"`
		}
		json.Unmarshal([]byte(rp), &v)
		replyTo = v.MessageID
	} else {
		replyTo, _ = p.int("reply_to_message_id")
	}
	s.mu.Lock()
	if to, ok := s.migrated[chat]; ok {
		s.mu.Unlock()
		fail(w, 400, "Bad Request: group chat was upgraded to a supergroup chat", map[string]any{"migrate_to_chat_id": to})
		return
	}
	if l := s.limits[chat]; len(l) > 0 {
		s.limits[chat] = l[1:]
		s.mu.Unlock()
		fail(w, 429, fmt.Sprintf("Too Many Requests: retry after %d", l[0]), map[string]any{"retry_after": l[0]})
		return
	}
	if n, ok := s.failAt[chat]; ok {
		if n == 0 {
			delete(s.failAt, chat)
			s.mu.Unlock()
			fail(w, 500, "Internal Server Error", nil)
			return
		}
		s.failAt[chat] = n - 1
	}
	id := s.nextMsgs
	s.nextMsgs++
	s.sent = append(s.sent, Sent{MessageID: id, ChatID: chat, ThreadID: thread, ReplyTo: replyTo, Text: text, ParseMode: p.str("parse_mode")})
	s.mu.Unlock()
	chatType := "private"
	if chat < 0 {
		chatType = "supergroup"
	}
	reply(w, 200, answer{OK: true, Result: map[string]any{
		"message_id": id, "date": time.Now().Unix(), "text": text,
		"from": map[string]any{"id": s.BotID, "is_bot": true, "first_name": "Moltbot", "username": s.BotUsername},
		"chat": map[string]any{"id": chat, "type": chatType},
	}})
}

// values are a call's parameters: JSON values kept as their text (a
// string's without quotes), form and query values as sent.
type values map[string]string

func (v values) str(k string) string { return v[k] }

func (v values) int(k string) (int64, error) { return strconv.ParseInt(v[k], 10, 64) }

// params reads a call's parameters from the query and the body (JSON, a
// form, or multipart), as the Bot API takes them.
func params(r *http.Request) (values, error) {
	v := values{}
	for k, vs := range r.URL.Query() {
		v[k] = vs[0]
	}
	if r.Method != http.MethodPost {
		return v, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return v, nil
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("can't parse JSON: %v", err)
		}
		for k, raw := range m {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				v[k] = s
			} else {
				v[k] = string(raw)
			}
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		for k, vs := range r.PostForm {
			v[k] = vs[0]
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(10 << 20); err != nil {
			return nil, err
		}
		for k, vs := range r.MultipartForm.Value {
			v[k] = vs[0]
		}
	}
	return v, nil
}
