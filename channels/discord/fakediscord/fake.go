// Package fakediscord is a Discord for tests, on loopback, written to
// Discord's documented protocol: GET /gateway/bot, a Gateway speaking
// ops 0/1/2/6/7/9/10/11 with sequence numbers, sessions that resume
// (replaying what was missed) and close codes; REST create message with
// rate-limit headers, 429s and enforce_nonce; typing; follow-up webhooks
// of interactions whose tokens expire; signed Interactions requests with
// an Ed25519 key the test owns. channels/discord's tests drive the
// adapter against it, and test/channels/discord drives discord.js against
// it, so the fake is known to speak what Discord's own client expects.
//
// API paths are under /api/v10 (discord.js asks for /api/v10/... with
// rest.api set to URL+"/api"); the Gateway is ws://.../gateway.
package fakediscord

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Ids of the fake's world.
const (
	BotID     = "1100000000000000001"
	AppID     = "1100000000000000002"
	GuildID   = "1100000000000000003"
	ChannelID = "1100000000000000004" // a guild text channel
	DMID      = "1100000000000000005" // a DM channel with UserID
	UserID    = "1100000000000000006"
)

// Options configure a Server.
type Options struct {
	Token string // the bot token it accepts ("test-token" by default)
	// HeartbeatInterval is HELLO's (41.25 s by default; tests inject less).
	HeartbeatInterval time.Duration
	// AllowedIntents are the intents the application may ask for (all by
	// default); asking for others closes with 4014.
	AllowedIntents int
	// BucketLimit is how many messages a channel's bucket holds per
	// BucketWindow (5 per 5 s by default, as Discord).
	BucketLimit  int
	BucketWindow time.Duration
}

// Created is a message the fake was asked to create.
type Created struct {
	ID, Channel, Content string
	AllowedMentions      json.RawMessage // as sent
	Reference            string          // message_reference.message_id
	Nonce                string
	Webhook              bool // through an interaction's webhook
}

// Server is a running fake Discord.
type Server struct {
	URL     string // http://127.0.0.1:port
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey

	opt Options
	srv *httptest.Server
	up  websocket.Upgrader

	mu        sync.Mutex
	nextID    uint64
	sessions  map[string]*session
	live      []*gconn
	created   []Created
	nonces    map[string]string // channel+nonce -> message id
	typing    []string
	tokens    map[string]time.Time // interaction token -> expiry
	buckets   map[string]*bucket
	throttle  []throttle
	noACK     bool
	images    map[string][]byte
	log       []string
	logCh     chan string
	heartbeat []int64  // d of each heartbeat received
	callbacks []string // "id type" of each interaction callback
	fail      []int    // statuses the next create-message calls answer
	invalids  int      // 401/403/429 answered
}

type session struct {
	id     string
	seq    int64
	events [][]byte // every dispatch, in order (seq = index+1)
	conn   *gconn
}

type gconn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	sess *session
}

type bucket struct {
	left  int
	reset time.Time
}

type throttle struct {
	retry  time.Duration
	global bool
}

// New starts a fake Discord on 127.0.0.1.
func New(opt Options) *Server {
	if opt.Token == "" {
		opt.Token = "test-token"
	}
	if opt.HeartbeatInterval <= 0 {
		opt.HeartbeatInterval = 41250 * time.Millisecond
	}
	if opt.AllowedIntents == 0 {
		opt.AllowedIntents = 1<<26 - 1
	}
	if opt.BucketLimit <= 0 {
		opt.BucketLimit = 5
	}
	if opt.BucketWindow <= 0 {
		opt.BucketWindow = 5 * time.Second
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	s := &Server{opt: opt, Public: pub, Private: priv,
		sessions: map[string]*session{}, nonces: map[string]string{}, tokens: map[string]time.Time{},
		buckets: map[string]*bucket{}, images: map[string][]byte{}, logCh: make(chan string, 1024)}
	s.up.CheckOrigin = func(*http.Request) bool { return true }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v10/gateway/bot", s.gatewayBot)
	mux.HandleFunc("GET /api/v10/gateway", s.gatewayBot)
	mux.HandleFunc("POST /api/v10/channels/{channel}/messages", s.createMessage)
	mux.HandleFunc("POST /api/v10/channels/{channel}/typing", s.typingHandler)
	mux.HandleFunc("POST /api/v10/webhooks/{app}/{token}", s.webhook)
	mux.HandleFunc("POST /api/v10/interactions/{id}/{token}/callback", s.callback)
	mux.HandleFunc("POST /api/v10/applications/{app}/commands", s.commands)
	mux.HandleFunc("GET /api/v10/users/@me", s.me)
	mux.HandleFunc("GET /attachments/{name}", s.attachment)
	mux.HandleFunc("GET /gateway", s.gateway)
	mux.HandleFunc("GET /resume", s.gateway)
	s.srv = httptest.NewUnstartedServer(mux)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s.srv.Listener = l
	s.URL = "http://" + l.Addr().String()
	s.srv.Start()
	return s
}

// API is the REST base URL (the adapter's api_url).
func (s *Server) API() string { return s.URL + "/api/v10" }

// Close stops the server and its connections.
func (s *Server) Close() {
	s.mu.Lock()
	for _, c := range s.live {
		c.ws.Close()
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// note records what happened ("identify", "resume 3", "heartbeat",
// "close 4004", ...), for tests to wait on.
func (s *Server) note(format string, args ...any) {
	e := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.log = append(s.log, e)
	s.mu.Unlock()
	select {
	case s.logCh <- e:
	default:
	}
}

// Wait waits (at most d) for an event starting with prefix and returns
// it; events before it are consumed.
func (s *Server) Wait(prefix string, d time.Duration) (string, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case e := <-s.logCh:
			if strings.HasPrefix(e, prefix) {
				return e, true
			}
		case <-t.C:
			return "", false
		}
	}
}

// Log is every event so far.
func (s *Server) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// id is a new snowflake: the time since Discord's epoch (2015) in
// milliseconds, shifted by 22 bits, and a counter (callers hold mu).
func (s *Server) id() string {
	n := uint64(time.Now().UnixMilli()-1420070400000) << 22
	s.nextID = max(s.nextID+1, n)
	return strconv.FormatUint(s.nextID, 10)
}

func (s *Server) authorized(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bot "+s.opt.Token
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) refuse(w http.ResponseWriter, status, code int, msg string) {
	s.mu.Lock()
	if status == 401 || status == 403 || status == 429 {
		s.invalids++
	}
	s.mu.Unlock()
	writeJSON(w, status, map[string]any{"message": msg, "code": code})
}

// Invalids counts the 401, 403 and 429 answers.
func (s *Server) Invalids() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.invalids
}

func (s *Server) gatewayBot(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.refuse(w, 401, 0, "401: Unauthorized")
		return
	}
	s.note("gateway/bot")
	writeJSON(w, 200, map[string]any{
		"url":    "ws" + strings.TrimPrefix(s.URL, "http") + "/gateway",
		"shards": 1,
		"session_start_limit": map[string]int{
			"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1,
		},
	})
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.refuse(w, 401, 0, "401: Unauthorized")
		return
	}
	writeJSON(w, 200, botUser())
}

func botUser() map[string]any {
	return map[string]any{"id": BotID, "username": "moltbot", "discriminator": "0", "global_name": nil, "avatar": nil, "bot": true}
}

// Throttle makes the next n create-message calls answer 429 with
// retry_after (global: the global limit).
func (s *Server) Throttle(n int, retry time.Duration, global bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.throttle = append(s.throttle, throttle{retry, global})
	}
}

// Created is every message created so far, in order.
func (s *Server) Created() []Created {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Created(nil), s.created...)
}

// Typing is every channel a typing indicator was asked for.
func (s *Server) Typing() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.typing...)
}

func (s *Server) createMessage(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.refuse(w, 401, 0, "401: Unauthorized")
		return
	}
	ch := r.PathValue("channel")
	if ch != ChannelID && ch != DMID {
		s.refuse(w, 404, 10003, "Unknown Channel")
		return
	}
	var body struct {
		Content          string          `json:"content"`
		AllowedMentions  json.RawMessage `json:"allowed_mentions"`
		Nonce            json.RawMessage `json:"nonce"`
		EnforceNonce     bool            `json:"enforce_nonce"`
		MessageReference *struct {
			MessageID string `json:"message_id"`
		} `json:"message_reference"`
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(data, &body); err != nil {
		writeJSON(w, 400, map[string]any{"message": "The request body contains invalid JSON.", "code": 50109})
		return
	}
	if body.Content == "" || utf8.RuneCountInString(body.Content) > 2000 {
		writeJSON(w, 400, map[string]any{"message": "Invalid Form Body", "code": 50035,
			"errors": map[string]any{"content": map[string]any{"_errors": []map[string]string{{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}}}}})
		return
	}
	var nonce string
	if len(body.Nonce) > 0 && string(body.Nonce) != "null" {
		if json.Unmarshal(body.Nonce, &nonce) != nil {
			nonce = string(body.Nonce) // an integer nonce
		}
		if len(nonce) > 25 {
			writeJSON(w, 400, map[string]any{"message": "Invalid Form Body", "code": 50035})
			return
		}
	}
	s.mu.Lock()
	if len(s.fail) > 0 && s.fail[0] == 0 {
		s.fail = s.fail[1:] // this one is answered normally
	} else if len(s.fail) > 0 {
		st := s.fail[0]
		s.fail = s.fail[1:]
		s.mu.Unlock()
		s.note("fail %d", st)
		writeJSON(w, st, map[string]any{"message": "fake failure", "code": 0})
		return
	}
	// The global limit first, then the channel's bucket.
	if len(s.throttle) > 0 {
		th := s.throttle[0]
		s.throttle = s.throttle[1:]
		s.invalids++
		s.mu.Unlock()
		secs := th.retry.Seconds()
		w.Header().Set("Retry-After", strconv.Itoa(int(secs+0.999)))
		scope := "user"
		if th.global {
			w.Header().Set("X-RateLimit-Global", "true")
			scope = "global"
		}
		w.Header().Set("X-RateLimit-Scope", scope)
		s.note("429 %s", ch)
		writeJSON(w, 429, map[string]any{"message": "You are being rate limited.", "retry_after": secs, "global": th.global})
		return
	}
	now := time.Now()
	b := s.buckets[ch]
	if b == nil || now.After(b.reset) {
		b = &bucket{left: s.opt.BucketLimit, reset: now.Add(s.opt.BucketWindow)}
		s.buckets[ch] = b
	}
	resetAfter := b.reset.Sub(now).Seconds()
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.opt.BucketLimit))
	w.Header().Set("X-RateLimit-Bucket", "fakebucket-messages")
	w.Header().Set("X-RateLimit-Reset-After", strconv.FormatFloat(resetAfter, 'f', 3, 64))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatFloat(float64(b.reset.UnixMilli())/1000, 'f', 3, 64))
	if b.left == 0 {
		s.invalids++
		s.mu.Unlock()
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Scope", "user")
		w.Header().Set("Retry-After", strconv.Itoa(int(resetAfter+0.999)))
		s.note("429 %s bucket", ch)
		writeJSON(w, 429, map[string]any{"message": "You are being rate limited.", "retry_after": resetAfter, "global": false})
		return
	}
	if body.EnforceNonce && nonce != "" {
		if id, ok := s.nonces[ch+"/"+nonce]; ok {
			s.mu.Unlock()
			w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(b.left))
			s.note("nonce %s", nonce)
			writeJSON(w, 200, map[string]any{"id": id, "channel_id": ch, "content": body.Content, "nonce": nonce})
			return
		}
	}
	b.left--
	id := s.id()
	c := Created{ID: id, Channel: ch, Content: body.Content, AllowedMentions: body.AllowedMentions, Nonce: nonce}
	if body.MessageReference != nil {
		c.Reference = body.MessageReference.MessageID
	}
	if nonce != "" {
		s.nonces[ch+"/"+nonce] = id
	}
	s.created = append(s.created, c)
	left := b.left
	s.mu.Unlock()
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(left))
	s.note("message %s", ch)
	writeJSON(w, 200, s.messageJSON(id, ch, body.Content, nonce))
}

func (s *Server) messageJSON(id, ch, content, nonce string) map[string]any {
	m := map[string]any{
		"id": id, "channel_id": ch, "type": 0, "content": content, "author": botUser(),
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "edited_timestamp": nil, "tts": false,
		"mention_everyone": false, "mentions": []any{}, "mention_roles": []any{}, "attachments": []any{},
		"embeds": []any{}, "pinned": false, "flags": 0, "components": []any{},
	}
	if nonce != "" {
		m["nonce"] = nonce
	}
	return m
}

func (s *Server) typingHandler(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.refuse(w, 401, 0, "401: Unauthorized")
		return
	}
	s.mu.Lock()
	s.typing = append(s.typing, r.PathValue("channel"))
	s.mu.Unlock()
	s.note("typing %s", r.PathValue("channel"))
	w.WriteHeader(204)
}

// Interaction makes an interaction token the webhook accepts for ttl.
func (s *Server) Interaction(ttl time.Duration) (id, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.id()
	b := make([]byte, 48)
	rand.Read(b)
	token = "aW50ZXJhY3Rpb246" + hex.EncodeToString(b)
	s.tokens[token] = time.Now().Add(ttl)
	return id, token
}

// Expire makes an interaction token stale.
func (s *Server) Expire(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = time.Time{}
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	exp, ok := s.tokens[r.PathValue("token")]
	s.mu.Unlock()
	if r.PathValue("app") != AppID {
		s.refuse(w, 404, 10015, "Unknown Webhook")
		return
	}
	if !ok || time.Now().After(exp) {
		s.refuse(w, 401, 50027, "Invalid Webhook Token")
		return
	}
	var body struct {
		Content         string          `json:"content"`
		AllowedMentions json.RawMessage `json:"allowed_mentions"`
	}
	if json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body) != nil || body.Content == "" || utf8.RuneCountInString(body.Content) > 2000 {
		writeJSON(w, 400, map[string]any{"message": "Invalid Form Body", "code": 50035})
		return
	}
	s.mu.Lock()
	id := s.id()
	s.created = append(s.created, Created{ID: id, Content: body.Content, AllowedMentions: body.AllowedMentions, Webhook: true})
	s.mu.Unlock()
	s.note("webhook")
	writeJSON(w, 200, s.messageJSON(id, ChannelID, body.Content, ""))
}

// Image serves data at URL()+"/attachments/"+name.
func (s *Server) Image(name string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images[name] = data
	return s.URL + "/attachments/" + name
}

func (s *Server) attachment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	data, ok := s.images[r.PathValue("name")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(data)
}

// SignedRequest is a POST of body to url signed as Discord signs an
// Interactions request, at time at.
func (s *Server) SignedRequest(url string, body []byte, at time.Time) *http.Request {
	ts := strconv.FormatInt(at.Unix(), 10)
	sig := ed25519.Sign(s.Private, append([]byte(ts), body...))
	r, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Signature-Ed25519", hex.EncodeToString(sig))
	r.Header.Set("X-Signature-Timestamp", ts)
	return r
}

// PublicKeyHex is the application's public key as the Developer Portal
// shows it.
func (s *Server) PublicKeyHex() string { return hex.EncodeToString(s.Public) }

// callback is POST /interactions/{id}/{token}/callback: the response to
// an interaction that came over the Gateway.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	exp, ok := s.tokens[r.PathValue("token")]
	s.mu.Unlock()
	if !ok || time.Now().After(exp) {
		s.refuse(w, 401, 50027, "Invalid Webhook Token")
		return
	}
	var body struct {
		Type int `json:"type"`
	}
	if json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body) != nil || body.Type < 1 || body.Type > 12 {
		writeJSON(w, 400, map[string]any{"message": "Invalid Form Body", "code": 50035})
		return
	}
	e := r.PathValue("id") + " " + strconv.Itoa(body.Type)
	s.mu.Lock()
	s.callbacks = append(s.callbacks, e)
	s.mu.Unlock()
	s.note("callback %s", e)
	w.WriteHeader(204)
}

// InteractionCreate dispatches a slash command /ask text:text by UserID
// in ChannelID over the Gateway, with a fresh interaction id and token
// (valid for ttl), which it returns.
func (s *Server) InteractionCreate(text string, ttl time.Duration) (id, token string) {
	id, token = s.Interaction(ttl)
	s.Dispatch("INTERACTION_CREATE", map[string]any{
		"id": id, "application_id": AppID, "type": 2, "token": token, "version": 1,
		"channel_id": ChannelID, "guild_id": GuildID,
		"member": map[string]any{"user": map[string]any{"id": UserID, "username": "ann", "global_name": "Ann", "discriminator": "0", "avatar": nil},
			"roles": []any{}, "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0, "permissions": "104324673"},
		"app_permissions": "104324673", "locale": "en-US", "guild_locale": "en-US", "entitlements": []any{},
		"authorizing_integration_owners": map[string]any{"0": GuildID}, "context": 0,
		"channel": map[string]any{"id": ChannelID, "type": 0, "guild_id": GuildID, "name": "general"},
		"data": map[string]any{"id": "5", "name": "ask", "type": 1,
			"options": []any{map[string]any{"name": "text", "type": 3, "value": text}}},
	})
	return id, token
}

// Fail makes the next create-message calls answer these statuses (a 500,
// a 502 from Discord's edge), one each; 0 answers one normally.
func (s *Server) Fail(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, statuses...)
}

// commands is Create Global Application Command.
func (s *Server) commands(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.refuse(w, 401, 0, "401: Unauthorized")
		return
	}
	if r.PathValue("app") != AppID {
		s.refuse(w, 403, 50001, "Missing Access")
		return
	}
	var c struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Options     []struct {
			Type int    `json:"type"`
			Name string `json:"name"`
		} `json:"options"`
	}
	if json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&c) != nil || c.Name == "" || len(c.Name) > 32 || c.Description == "" || len(c.Description) > 100 {
		writeJSON(w, 400, map[string]any{"message": "Invalid Form Body", "code": 50035})
		return
	}
	s.mu.Lock()
	id := s.id()
	s.mu.Unlock()
	s.note("command %s", c.Name)
	writeJSON(w, 201, map[string]any{"id": id, "application_id": AppID, "name": c.Name, "description": c.Description, "type": 1, "version": id})
}
