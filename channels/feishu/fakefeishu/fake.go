// Package fakefeishu is a fake Feishu (Lark) open platform for tests,
// written to its documented protocol: the tenant_access_token endpoint
// (/open-apis/auth/v3/tenant_access_token/internal), bot/v3/info, the IM
// API's create and reply message endpoints, with Feishu's answers
// ({"code":N,"msg":...}; 99991663 for an invalid or expired token, HTTP 429
// with code 99991400 and X-Ogw-Ratelimit-Reset for a rate limit); and the
// event subscription's side: Event builds an im.message.receive_v1 event,
// Encrypt and Sign make a body and headers the way Feishu encrypts and
// signs them, Post sends them to an endpoint.
//
// npm @larksuiteoapi/node-sdk is run against it (test/channels): its
// Client gets a token here and sends a message; its EventDispatcher
// decrypts and checks an event this package encrypted and signed.
package fakefeishu

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sent is a message the app sent.
type Sent struct {
	ChatID  string // receive_id (create) or "" (reply)
	ReplyTo string // the message replied to (reply) or ""
	MsgType string
	Content string // as sent: a JSON text
	Text    string // the content's "text"
	Token   string // the Authorization bearer
}

// Server is the fake. Make it with New; Close it.
type Server struct {
	AppID, AppSecret string
	BotOpenID        string
	// TokenTTL is the expire of the tokens it gives (default 7200 s).
	TokenTTL int

	srv *httptest.Server

	mu         sync.Mutex
	tokens     map[string]bool // valid tenant tokens
	nextTok    int
	tokenCalls int
	sent       []Sent
	limits     []int // the next message calls answer 429 with these resets
	nextMsg    int
	resources  map[string][]byte // message_id/key -> bytes
}

// New starts a fake for the app.
func New(appID, appSecret string) *Server {
	s := &Server{AppID: appID, AppSecret: appSecret, BotOpenID: "ou_bot0000000000000000000000000001", tokens: map[string]bool{}, resources: map[string][]byte{}}
	s.srv = httptest.NewServer(s)
	return s
}

// URL is the API root (api_url; the SDK's domain).
func (s *Server) URL() string { return s.srv.URL }

// Close stops it.
func (s *Server) Close() { s.srv.Close() }

// Expire invalidates every token given so far (code 99991663 next).
func (s *Server) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]bool{}
}

// TokenCalls is how many tokens were asked for.
func (s *Server) TokenCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenCalls
}

// RateLimit makes the next len(resets) message calls answer 429 (code
// 99991400) with those X-Ogw-Ratelimit-Reset seconds.
func (s *Server) RateLimit(resets ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, resets...)
}

// AddImage serves data as the image key of message messageID
// (GET /open-apis/im/v1/messages/{id}/resources/{key}?type=image).
func (s *Server) AddImage(messageID, key string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resources[messageID+"/"+key] = data
}

// Sent is every message sent, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/open-apis/auth/v3/tenant_access_token/internal" && r.Method == http.MethodPost {
		var in struct {
			AppID     string `json:"app_id"`
			AppSecret string `json:"app_secret"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.tokenCalls++
		if in.AppID != s.AppID {
			answer(w, 400, map[string]any{"code": 10003, "msg": "invalid param: app_id"})
			return
		}
		if in.AppSecret != s.AppSecret {
			answer(w, 400, map[string]any{"code": 10014, "msg": "app secret invalid"})
			return
		}
		s.nextTok++
		tok := fmt.Sprintf("t-fake%06d", s.nextTok)
		s.tokens[tok] = true
		ttl := s.TokenTTL
		if ttl == 0 {
			ttl = 7200
		}
		answer(w, 200, map[string]any{"code": 0, "msg": "ok", "tenant_access_token": tok, "expire": ttl})
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	valid := s.tokens[tok]
	s.mu.Unlock()
	if tok == "" {
		answer(w, 400, map[string]any{"code": 99991661, "msg": "Missing access token for authorization. Please make a request with token attached."})
		return
	}
	if !valid {
		answer(w, 400, map[string]any{"code": 99991663, "msg": "Invalid access token for authorization. Please make a request with token attached."})
		return
	}
	switch {
	case p == "/open-apis/bot/v3/info" && r.Method == http.MethodGet:
		answer(w, 200, map[string]any{"code": 0, "msg": "ok", "bot": map[string]any{"activate_status": 2, "app_name": "moltbot", "open_id": s.BotOpenID, "ip_white_list": []string{}}})
	case p == "/open-apis/im/v1/messages" && r.Method == http.MethodPost:
		if t := r.URL.Query().Get("receive_id_type"); t == "" {
			answer(w, 400, map[string]any{"code": 99992402, "msg": "field validation failed: receive_id_type is required"})
			return
		}
		s.message(w, r, tok, "")
	case strings.HasPrefix(p, "/open-apis/im/v1/messages/") && strings.Contains(p, "/resources/") && r.Method == http.MethodGet:
		id, key, _ := strings.Cut(strings.TrimPrefix(p, "/open-apis/im/v1/messages/"), "/resources/")
		s.mu.Lock()
		data, ok := s.resources[id+"/"+key]
		s.mu.Unlock()
		if !ok || r.URL.Query().Get("type") == "" {
			answer(w, 400, map[string]any{"code": 234001, "msg": "Invalid request param."})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	case strings.HasPrefix(p, "/open-apis/im/v1/messages/") && strings.HasSuffix(p, "/reply") && r.Method == http.MethodPost:
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/open-apis/im/v1/messages/"), "/reply")
		s.message(w, r, tok, id)
	default:
		answer(w, 404, map[string]any{"code": 404, "msg": "404 page not found"})
	}
}

func (s *Server) message(w http.ResponseWriter, r *http.Request, tok, replyTo string) {
	var in struct {
		ReceiveID string `json:"receive_id"`
		MsgType   string `json:"msg_type"`
		Content   string `json:"content"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		answer(w, 400, map[string]any{"code": 9499, "msg": "Bad Request"})
		return
	}
	var c struct {
		Text *string `json:"text"`
	}
	if in.MsgType != "text" || json.Unmarshal([]byte(in.Content), &c) != nil || c.Text == nil || (replyTo == "" && in.ReceiveID == "") {
		answer(w, 400, map[string]any{"code": 230001, "msg": "Your request contains an invalid request parameter."})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.limits) > 0 {
		reset := s.limits[0]
		s.limits = s.limits[1:]
		w.Header().Set("X-Ogw-Ratelimit-Limit", "5")
		w.Header().Set("X-Ogw-Ratelimit-Reset", strconv.Itoa(reset))
		answer(w, 429, map[string]any{"code": 99991400, "msg": "request trigger frequency limit"})
		return
	}
	s.nextMsg++
	s.sent = append(s.sent, Sent{ChatID: in.ReceiveID, ReplyTo: replyTo, MsgType: in.MsgType, Content: in.Content, Text: *c.Text, Token: tok})
	chat := in.ReceiveID
	if chat == "" {
		chat = "oc_of_" + replyTo
	}
	answer(w, 200, map[string]any{"code": 0, "msg": "success", "data": map[string]any{
		"message_id": fmt.Sprintf("om_sent%06d", s.nextMsg), "parent_id": replyTo, "root_id": replyTo,
		"msg_type": in.MsgType, "create_time": strconv.FormatInt(time.Now().UnixMilli(), 10),
		"chat_id": chat, "sender": map[string]any{"id": "cli_" + s.AppID, "id_type": "app_id", "sender_type": "app"},
		"body": map[string]any{"content": in.Content},
	}})
}

// Mention is one @ of a message event.
type Mention struct {
	Key, OpenID, Name string
}

// Event is a schema 2.0 im.message.receive_v1 event (header.app_id
// empty: set it with WithAppID) with verification token tok: a text message (text may hold @_user_N placeholders for
// mentions) from a user's open_id in chat (chatType p2p or group).
func Event(tok, eventID, messageID, chatID, chatType, senderType, from, text string, mentions ...Mention) []byte {
	content, _ := json.Marshal(map[string]string{"text": text})
	return EventContent(tok, eventID, messageID, chatID, chatType, senderType, from, "text", string(content), mentions...)
}

// EventContent is Event for any message type: msgType (text, image,
// post, ...) and its content JSON as Feishu sends it.
func EventContent(tok, eventID, messageID, chatID, chatType, senderType, from, msgType, content string, mentions ...Mention) []byte {
	ms := []map[string]any{}
	for _, m := range mentions {
		ms = append(ms, map[string]any{"key": m.Key, "id": map[string]string{"open_id": m.OpenID, "union_id": "on_" + m.OpenID, "user_id": "u_" + m.OpenID}, "name": m.Name, "tenant_key": "tk"})
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	b, _ := json.Marshal(map[string]any{
		"schema": "2.0",
		"header": map[string]any{"event_id": eventID, "event_type": "im.message.receive_v1", "create_time": now, "token": tok, "app_id": "", "tenant_key": "tk"},
		"event": map[string]any{
			"sender": map[string]any{"sender_id": map[string]string{"open_id": from, "union_id": "on_" + from, "user_id": "u_" + from}, "sender_type": senderType, "tenant_key": "tk"},
			"message": map[string]any{"message_id": messageID, "root_id": "", "parent_id": "", "create_time": now, "chat_id": chatID,
				"chat_type": chatType, "message_type": msgType, "content": content, "mentions": ms},
		},
	})
	return b
}

// WithAppID is event with header.app_id set to appID.
func WithAppID(event []byte, appID string) []byte {
	var m map[string]any
	if json.Unmarshal(event, &m) != nil {
		return event
	}
	if h, ok := m["header"].(map[string]any); ok {
		h["app_id"] = appID
	}
	b, _ := json.Marshal(m)
	return b
}

// Challenge is the url_verification request's body.
func Challenge(tok, challenge string) []byte {
	b, _ := json.Marshal(map[string]string{"challenge": challenge, "token": tok, "type": "url_verification"})
	return b
}

// Encrypt is plain encrypted as Feishu does it, in its body: {"encrypt":
// base64(iv + AES-256-CBC(sha256(key), iv, PKCS#7(plain)))}, iv random.
func Encrypt(key string, plain []byte) []byte {
	k := sha256.Sum256([]byte(key))
	block, _ := aes.NewCipher(k[:])
	n := aes.BlockSize - len(plain)%aes.BlockSize
	padded := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(n)}, n)...)
	out := make([]byte, aes.BlockSize+len(padded))
	rand.Read(out[:aes.BlockSize])
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(out[aes.BlockSize:], padded)
	b, _ := json.Marshal(map[string]string{"encrypt": base64.StdEncoding.EncodeToString(out)})
	return b
}

// Sign is the headers Feishu sends with body: X-Lark-Request-Timestamp
// (at, Unix seconds), X-Lark-Request-Nonce, and X-Lark-Signature =
// hex(sha256(timestamp + nonce + key + body)).
func Sign(key string, at time.Time, body []byte) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	var nb [8]byte
	rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	h := sha256.New()
	io.WriteString(h, ts+nonce+key)
	h.Write(body)
	hd := http.Header{}
	hd.Set("X-Lark-Request-Timestamp", ts)
	hd.Set("X-Lark-Request-Nonce", nonce)
	hd.Set("X-Lark-Signature", hex.EncodeToString(h.Sum(nil)))
	return hd
}

// Post sends body with headers to an event endpoint as Feishu does and
// returns the status and the answer's body.
func Post(ctx context.Context, endpoint string, body []byte, h http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, nil
}
