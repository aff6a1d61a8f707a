// Package fakeslack is a fake Slack on 127.0.0.1 for tests, written to
// Slack's documented protocol: the Web API methods an app calls
// (auth.test, apps.connections.open, chat.postMessage; Bearer tokens,
// ok/error answers, 429 with Retry-After), Socket Mode over WebSocket
// (single-use connection URLs, hello, envelopes and their acks,
// disconnect, pings) and signed Events API requests (Sign, Request).
//
// The adapter's tests drive it from Go; a test also drives it with npm
// @slack/socket-mode (test/channels/slack), so the fake is known to speak
// what Slack's own client expects.
package fakeslack

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Identities the fake answers with.
const (
	UserID = "UFAKEBOT"  // the bot's user id (auth.test, authorizations)
	BotID  = "BFAKEBOT"  // the bot's bot_id
	TeamID = "TFAKETEAM" // the workspace
	AppID  = "AFAKEAPP"
)

// Post is one chat.postMessage the fake received.
type Post struct {
	Channel, Text, ThreadTS string
}

// Server is a fake Slack. Make it with New; Close it.
type Server struct {
	BotToken, AppToken string

	srv      *httptest.Server
	upgrader websocket.Upgrader

	mu        sync.Mutex
	tickets   map[string]bool // issued connection tickets: false once used
	opens     int
	dialed    []string
	posts     []Post
	postSeen  chan struct{} // closed and replaced at each post
	limit     int           // the next limit chat.postMessage calls answer 429
	openLimit int           // the next openLimit apps.connections.open calls answer 429
	after     int           // their Retry-After, seconds
	authError string        // auth.test and apps.connections.open answer ok:false with it
	failIn    int           // chat.postMessage calls before the one failCode fails (-1: none)
	failCode  string
	files     map[string][]byte
	ts        int64
	pingEvery time.Duration

	conns  chan *Conn
	closed chan struct{} // closed by Close: a connection nobody waits for is dropped
	seq    atomic.Int64
}

// New starts a fake Slack that knows the two tokens.
func New(botToken, appToken string) *Server {
	s := &Server{
		BotToken: botToken,
		AppToken: appToken,
		tickets:  map[string]bool{},
		files:    map[string][]byte{},
		postSeen: make(chan struct{}),
		conns:    make(chan *Conn, 16),
		closed:   make(chan struct{}),
		ts:       1700000000,
		failIn:   -1,
	}
	// Slack's client sends Origin: https://api.slack.com (slack-go) or
	// none: any origin is taken.
	s.upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/auth.test", s.authTest)
	mux.HandleFunc("POST /api/apps.connections.open", s.connectionsOpen)
	mux.HandleFunc("POST /api/chat.postMessage", s.postMessage)
	mux.HandleFunc("GET /link/", s.link)
	mux.HandleFunc("GET /files/", s.file)
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the Web API's base URL (the adapter's api_url, the Node
// client's slackApiUrl): http://127.0.0.1:PORT/api/.
func (s *Server) URL() string { return s.srv.URL + "/api/" }

// Close stops the server and ends every connection.
func (s *Server) Close() {
	close(s.closed)
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// PingEvery makes the fake ping each new connection every d (Slack
// does; @slack/socket-mode expects it). Zero: no pings.
func (s *Server) PingEvery(d time.Duration) {
	s.mu.Lock()
	s.pingEvery = d
	s.mu.Unlock()
}

// RateLimit makes the next n chat.postMessage calls answer 429 with
// Retry-After: after (seconds).
func (s *Server) RateLimit(n, after int) {
	s.mu.Lock()
	s.limit, s.after = n, after
	s.mu.Unlock()
}

// RateLimitOpen makes the next n apps.connections.open calls answer 429
// with Retry-After: after (seconds).
func (s *Server) RateLimitOpen(n, after int) {
	s.mu.Lock()
	s.openLimit, s.after = n, after
	s.mu.Unlock()
}

// FailPost makes chat.postMessage answer ok:false with code once, after
// n more successful posts.
func (s *Server) FailPost(n int, code string) {
	s.mu.Lock()
	s.failIn, s.failCode = n, code
	s.mu.Unlock()
}

// FailAuth makes auth.test and apps.connections.open answer ok:false
// with code ("invalid_auth", "account_inactive"); "" undoes it.
func (s *Server) FailAuth(code string) {
	s.mu.Lock()
	s.authError = code
	s.mu.Unlock()
}

// AddFile serves data at a url_private the bot token may read.
func (s *Server) AddFile(name string, data []byte) string {
	s.mu.Lock()
	s.files[name] = data
	s.mu.Unlock()
	return s.srv.URL + "/files/" + name
}

// Opens is how many apps.connections.open calls succeeded.
func (s *Server) Opens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens
}

// Dialed is the connection URLs dialed, in order (each is used once).
func (s *Server) Dialed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dialed...)
}

// Posts is what chat.postMessage took, in order.
func (s *Server) Posts() []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Post(nil), s.posts...)
}

// WaitPosts waits until at least n posts arrived (or timeout) and
// returns them.
func (s *Server) WaitPosts(n int, timeout time.Duration) []Post {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if len(s.posts) >= n {
			p := append([]Post(nil), s.posts...)
			s.mu.Unlock()
			return p
		}
		seen := s.postSeen
		s.mu.Unlock()
		select {
		case <-seen:
		case <-deadline.C:
			return s.Posts()
		}
	}
}

// Conn waits for the next Socket Mode connection (nil after timeout).
func (s *Server) Conn(timeout time.Duration) *Conn {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case c := <-s.conns:
		return c
	case <-t.C:
		return nil
	}
}

// bearer is the request's token: the Authorization Bearer, or a token
// form field (older clients).
func bearer(r *http.Request) string {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return v
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return r.FormValue("token")
	}
	return ""
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code string) {
	answer(w, map[string]any{"ok": false, "error": code})
}

// token checks the request's token against want (ok:false not_authed or
// invalid_auth otherwise), and the FailAuth code.
func (s *Server) token(w http.ResponseWriter, r *http.Request, want string) bool {
	s.mu.Lock()
	code := s.authError
	s.mu.Unlock()
	got := bearer(r)
	switch {
	case got == "":
		fail(w, "not_authed")
	case got != want:
		fail(w, "invalid_auth")
	case code != "":
		fail(w, code)
	default:
		return true
	}
	return false
}

func (s *Server) authTest(w http.ResponseWriter, r *http.Request) {
	if !s.token(w, r, s.BotToken) {
		return
	}
	answer(w, map[string]any{"ok": true, "url": "https://fake.slack.com/", "team": "Fake", "user": "moltbot",
		"team_id": TeamID, "user_id": UserID, "bot_id": BotID, "is_enterprise_install": false})
}

func (s *Server) connectionsOpen(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.openLimit > 0 {
		s.openLimit--
		after := s.after
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(after))
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"ok":false,"error":"ratelimited"}`)
		return
	}
	s.mu.Unlock()
	if !s.token(w, r, s.AppToken) {
		return
	}
	ticket := fmt.Sprintf("t%d", s.seq.Add(1))
	s.mu.Lock()
	s.tickets[ticket] = true
	s.opens++
	s.mu.Unlock()
	u := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/link/?ticket=" + ticket + "&app_id=" + AppID
	answer(w, map[string]any{"ok": true, "url": u})
}

// link is the Socket Mode WebSocket: a ticket is good for one dial.
func (s *Server) link(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	fresh := s.tickets[ticket]
	s.tickets[ticket] = false
	if fresh {
		s.dialed = append(s.dialed, r.URL.String())
	}
	ping := s.pingEvery
	s.mu.Unlock()
	if !fresh {
		http.Error(w, "unknown or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &Conn{ws: ws, s: s, acks: make(chan string, 64), done: make(chan struct{}), URL: r.URL.String()}
	c.ws.SetPingHandler(func(data string) error {
		if c.silent.Load() {
			return nil
		}
		return c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	hello := map[string]any{"type": "hello", "num_connections": 1,
		"debug_info":      map[string]any{"host": "fakeslack", "build_number": 1, "approximate_connection_time": 3600},
		"connection_info": map[string]any{"app_id": AppID}}
	if err := c.writeJSON(hello); err != nil {
		ws.Close()
		return
	}
	go c.read()
	if ping > 0 {
		go c.pings(ping)
	}
	select {
	case s.conns <- c:
	case <-s.closed:
		ws.Close()
	}
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.limit > 0 {
		s.limit--
		after := s.after
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(after))
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"ok":false,"error":"ratelimited"}`)
		return
	}
	s.mu.Unlock()
	if !s.token(w, r, s.BotToken) {
		return
	}
	var p Post
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var body struct {
			Channel  string `json:"channel"`
			Text     string `json:"text"`
			ThreadTS string `json:"thread_ts"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			fail(w, "invalid_json")
			return
		}
		p = Post{body.Channel, body.Text, body.ThreadTS}
	} else {
		p = Post{r.FormValue("channel"), r.FormValue("text"), r.FormValue("thread_ts")}
	}
	switch {
	case p.Channel == "":
		fail(w, "channel_not_found")
		return
	case p.Text == "":
		fail(w, "no_text")
		return
	case len([]rune(p.Text)) > 40000:
		fail(w, "msg_too_long")
		return
	}
	s.mu.Lock()
	if s.failIn == 0 {
		s.failIn = -1
		code := s.failCode
		s.mu.Unlock()
		fail(w, code)
		return
	}
	if s.failIn > 0 {
		s.failIn--
	}
	s.ts++
	ts := fmt.Sprintf("%d.000100", s.ts)
	s.posts = append(s.posts, p)
	close(s.postSeen)
	s.postSeen = make(chan struct{})
	s.mu.Unlock()
	answer(w, map[string]any{"ok": true, "channel": p.Channel, "ts": ts,
		"message": map[string]any{"type": "message", "user": UserID, "bot_id": BotID, "text": p.Text, "ts": ts, "thread_ts": p.ThreadTS}})
}

func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	if bearer(r) != s.BotToken {
		http.Error(w, "not authorized", http.StatusForbidden)
		return
	}
	s.mu.Lock()
	data, ok := s.files[strings.TrimPrefix(r.URL.Path, "/files/")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(data)
}

// Conn is one Socket Mode connection, the fake's side.
type Conn struct {
	URL    string // the URL the client dialed
	ws     *websocket.Conn
	s      *Server
	wmu    sync.Mutex
	acks   chan string
	done   chan struct{}
	silent atomic.Bool
}

func (c *Conn) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(b)
}

// Write sends a raw text frame.
func (c *Conn) Write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// read takes the client's frames: acks ({"envelope_id": ...}).
func (c *Conn) read() {
	defer close(c.done)
	defer c.ws.Close()
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if json.Unmarshal(b, &ack) == nil && ack.EnvelopeID != "" {
			select {
			case c.acks <- ack.EnvelopeID:
			default:
			}
		}
	}
}

func (c *Conn) pings(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if c.silent.Load() {
				continue
			}
			if c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second)) != nil {
				return
			}
		}
	}
}

// Envelope sends payload in an envelope of type typ (events_api,
// slash_commands, interactive) and returns its envelope_id.
func (c *Conn) Envelope(typ string, payload json.RawMessage, retry int) (string, error) {
	id := fmt.Sprintf("env-%d", c.s.seq.Add(1))
	reason := ""
	if retry > 0 {
		reason = "timeout"
	}
	err := c.writeJSON(map[string]any{"envelope_id": id, "type": typ, "payload": payload,
		"accepts_response_payload": false, "retry_attempt": retry, "retry_reason": reason})
	return id, err
}

// Event sends an events_api envelope.
func (c *Conn) Event(payload json.RawMessage) (string, error) {
	return c.Envelope("events_api", payload, 0)
}

// Ack waits for the client's next ack (false after timeout).
func (c *Conn) Ack(timeout time.Duration) (string, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case id := <-c.acks:
		return id, true
	case <-t.C:
		return "", false
	}
}

// NoAckYet reports whether no ack is waiting (nothing acknowledged since
// the last Ack).
func (c *Conn) NoAckYet() bool { return len(c.acks) == 0 }

// Disconnect sends Slack's disconnect frame (warning, refresh_requested,
// too_many_websockets, link_disabled); Slack closes the socket after.
func (c *Conn) Disconnect(reason string) error {
	return c.writeJSON(map[string]any{"type": "disconnect", "reason": reason,
		"debug_info": map[string]any{"host": "fakeslack"}})
}

// Silence makes the connection half-open, as a NAT that forgot it: no
// more pongs to the client's pings, no pings, nothing sent.
func (c *Conn) Silence() { c.silent.Store(true) }

// Close closes the socket abruptly.
func (c *Conn) Close() { c.ws.Close() }

// Done is closed when the connection ended (the client closed it or it
// broke).
func (c *Conn) Done() <-chan struct{} { return c.done }

// Event is an app_mention or message event, as Slack sends it.
type Event struct {
	Type        string `json:"type"`
	Subtype     string `json:"subtype,omitempty"`
	User        string `json:"user,omitempty"`
	BotID       string `json:"bot_id,omitempty"`
	Text        string `json:"text"`
	TS          string `json:"ts"`
	ThreadTS    string `json:"thread_ts,omitempty"`
	Channel     string `json:"channel"`
	ChannelType string `json:"channel_type,omitempty"`
	EventTS     string `json:"event_ts,omitempty"`
	Edited      *struct {
		User string `json:"user"`
		TS   string `json:"ts"`
	} `json:"edited,omitempty"`
	Files []File `json:"files,omitempty"`
}

// File is a file shared in a message.
type File struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Mimetype   string `json:"mimetype"`
	Size       int64  `json:"size"`
	URLPrivate string `json:"url_private"`
}

// Callback wraps ev in an event_callback (the Events API's body, a
// Socket Mode envelope's payload) with a fresh event_id.
func (s *Server) Callback(ev Event) json.RawMessage {
	if ev.EventTS == "" {
		ev.EventTS = ev.TS
	}
	b, _ := json.Marshal(map[string]any{
		"token": "legacy-verification-token", "team_id": TeamID, "api_app_id": AppID,
		"event": ev, "type": "event_callback", "event_id": fmt.Sprintf("Ev%08d", s.seq.Add(1)),
		"event_time": 1700000000, "is_ext_shared_channel": false, "event_context": "4-fake",
		"authorizations": []map[string]any{{"enterprise_id": nil, "team_id": TeamID, "user_id": UserID, "is_bot": true, "is_enterprise_install": false}},
	})
	return b
}

// Sign is Slack's request signature: "v0=" + hex HMAC-SHA256 with the
// signing secret over "v0:" + timestamp + ":" + body.
func Sign(secret string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%d:", timestamp)
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// Request is the Events API's POST of body to url, signed with secret at
// timestamp; retry > 0 marks it as Slack's retry number retry.
func Request(url, secret string, timestamp int64, body []byte, retry int) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(timestamp, 10))
	r.Header.Set("X-Slack-Signature", Sign(secret, timestamp, body))
	if retry > 0 {
		r.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retry))
		r.Header.Set("X-Slack-Retry-Reason", "http_timeout")
	}
	return r
}
