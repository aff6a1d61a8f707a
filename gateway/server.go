// Package gateway is moltbot's HTTP edge: the OpenAI-compatible API
// (/v1/chat/completions, /v1/models), Anthropic's Messages API
// (/v1/messages, anthropic.go), the stateful conversations API
// (/v1/conversations...), the Ollama API (/api/..., ollama.go), admin
// status, health probes and /metrics.
//
// It is an edge of the chat service (package chat) and the management
// service (package manage), and imports neither auth nor actors.
// Every error leaves as OpenAI's error body with the status chosen in
// errors.go; every request body is capped; nothing here blocks a model.
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/slots"
	"github.com/moltbot/moltbot/manage"
)

// Config configures the gateway.
type Config struct {
	// MaxBodyBytes caps request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxMessageBytes caps one message's content (default 256 KiB).
	MaxMessageBytes int
	// BodyReadTimeout bounds reading a request body, from the handler's
	// start (default 30 s); a slower body gets 408.
	BodyReadTimeout time.Duration
	// MaxAnonymous bounds requests in flight without a credential (open
	// paths: /oauth/token, probes, open metrics) per client address when
	// auth is on (default 16); past it, 429.
	MaxAnonymous int
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// AllowedHosts are host names a node without auth answers to, besides
	// IP addresses and localhost (".d": d and its subdomains).
	AllowedHosts []string
	Metrics      *metrics.Registry
	Logger       *slog.Logger
	Version      string
	// MetricsOpen serves /metrics without a credential.
	MetricsOpen bool
	// Audit records admin actions (keys, tenants, reloads) and serves GET
	// /v1/admin/audit; nil: none are recorded.
	Audit AuditLog
	// Channels serves /channels/{name}/... (the channels' adapters: no
	// moltbot credential, each checks its platform's signature); nil: no
	// channels.
	Channels http.Handler
}

// Server is the gateway's http.Handler.
type Server struct {
	chat    *chat.Service
	mg      *manage.Service
	cfg     Config
	mux     *http.ServeMux
	met     *metrics.Registry
	log     *slog.Logger
	idBase  string
	ids     atomic.Uint64
	started time.Time
	anon    slots.Counter // requests in flight without a credential, by client
	// chanFails counts the channels' refused signatures, by client.
	chanFails failBudget
	ollama    ollamaState // the Ollama API's (ollama.go)
	// chatHandler serves chatPath: routed by route without the mux.
	chatHandler http.HandlerFunc
}

// chatPath is the route of most requests (OpenAI's chat completions).
const chatPath = "/v1/chat/completions"

// route serves req as the mux would. A request for chatPath (as its
// escaped path: exactly what the mux matches, needing neither cleaning
// nor a redirect) goes to its handler directly, with the Pattern the mux
// would set; the mux's lookup was 0.6% of a node's CPU at the floor.
// Everything else goes through the mux (TestRouteAsTheMux).
func (s *Server) route(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == chatPath && req.URL.RawPath == "" && req.Method != http.MethodConnect && req.RequestURI != "*" {
		req.Pattern = chatPath
		s.chatHandler(w, req)
		return
	}
	s.mux.ServeHTTP(w, req)
}

// New returns the gateway: an HTTP edge of the chat service c and the
// management service m.
func New(c *chat.Service, m *manage.Service, cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = 30 * time.Second
	}
	if cfg.MaxAnonymous <= 0 {
		cfg.MaxAnonymous = 16
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(cfg.Version)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	s := &Server{chat: c, mg: m, cfg: cfg, met: cfg.Metrics, log: cfg.Logger, idBase: hex.EncodeToString(rnd[:]), started: time.Now()}
	m.OnAuthFailure(func(reason string) { s.met.Inc(metrics.AuthFailures, reason) })
	mux := http.NewServeMux()
	s.chatHandler = s.only("POST", s.chatCompletions)
	mux.HandleFunc(chatPath, s.chatHandler)
	mux.HandleFunc("/v1/models", s.only("GET", s.models))
	mux.HandleFunc("/v1/embeddings", s.only("POST", s.embeddings))
	// Anthropic's Messages API answers its own 405s, in its shape (anthropic.go).
	mux.HandleFunc(messagesPath, s.messages)
	mux.HandleFunc("/v1/conversations", s.only("POST", s.createConversation))
	mux.HandleFunc("/v1/conversations/{id}", s.conversation)
	mux.HandleFunc("/v1/conversations/{id}/messages", s.only("POST", s.postMessage))
	mux.HandleFunc("/v1/conversations/{id}/events", s.only("GET", s.conversationEvents))
	mux.HandleFunc("/v1/admin/status", s.only("GET", s.status))
	mux.HandleFunc("/v1/admin/providers", s.only("GET", s.providers))
	mux.HandleFunc("/v1/admin/cluster", s.only("GET", s.cluster))
	mux.HandleFunc("/v1/admin/retention/sweep", s.only("POST", s.sweepRetention))
	mux.HandleFunc("/v1/admin/bots", s.only("GET", s.bots))
	mux.HandleFunc("/v1/admin/bots/{name}", s.only("GET", s.bot))
	mux.HandleFunc("/v1/admin/channels", s.only("GET", s.channelsList))
	mux.HandleFunc("/v1/admin/channels/{name}", s.only("GET", s.channel))
	mux.HandleFunc("/v1/admin/channels/{name}/test", s.only("POST", s.channelTest))
	mux.HandleFunc(handoffPath, s.only("GET", s.handoffQueue))
	mux.HandleFunc(handoffPath+"/{conversation}/{op}", s.only("POST", s.handoffOp))
	s.cacheRoutes(mux)
	s.kbRoutes(mux)
	s.skillFileRoutes(mux)
	if m.KeysEnabled() {
		mux.HandleFunc("/v1/admin/keys", s.keys)
		mux.HandleFunc("/v1/admin/keys/reload", s.only("POST", s.reload))
		mux.HandleFunc("/v1/admin/keys/{id}", s.only("DELETE", s.key))
		mux.HandleFunc("/v1/admin/keys/{id}/rotate", s.only("POST", s.rotateKey))
		mux.HandleFunc("/v1/admin/tenants", s.tenants)
		mux.HandleFunc("/v1/admin/tenants/{id}", s.only("DELETE", s.tenant))
		mux.HandleFunc("/v1/auth/rotate", s.only("POST", s.rotateSelf))
		mux.HandleFunc("/oauth/token", s.only("POST", s.token))
		mux.HandleFunc("/.well-known/jwks.json", s.only("GET", s.jwks))
	}
	if s.cfg.Audit != nil {
		mux.HandleFunc("/v1/admin/audit", s.only("GET", s.auditLog))
	}
	mux.HandleFunc("/healthz", s.only("GET", s.healthz))
	mux.HandleFunc("/readyz", s.only("GET", s.readyz))
	mux.HandleFunc("/metrics", s.only("GET", s.metrics))
	s.ollamaRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, moltbot.Errorf(moltbot.ENotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
	s.mux = mux
	return s
}

// only answers 405 with Allow for any method but the one given (HEAD too for GET).
func (s *Server) only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == "GET" && r.Method == "HEAD") {
			methodNotAllowed(w, r, method)
			return
		}
		h(w, r)
	}
}

// methodNotAllowed answers 405 naming the methods the route takes.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeErrorStatus(w, http.StatusMethodNotAllowed, moltbot.Errorf(moltbot.EInvalid, "method %s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
}

func writeErrorStatus(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(appendError(nil, err), '\n'))
}

// statusWriter records the status code; it keeps Flush reachable through Unwrap.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var codeText = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return
}()

// exchange is ServeHTTP's state for one request, in one allocation: the
// status writer, the X-Request-Id header's value and the body's deadline
// reader (guard).
type exchange struct {
	sw   statusWriter
	rid  [1]string
	body deadlineBody
}

// request is the request the handler gets: r with ctx (one copy: r, the
// server's own, is not changed), its body read through the guard's
// deadline when it set one (timeout: server.read_body_timeout).
func (x *exchange) request(r *http.Request, ctx context.Context, timeout time.Duration) *http.Request {
	req := r.WithContext(ctx)
	if timeout > 0 {
		x.body = deadlineBody{ReadCloser: req.Body, d: timeout}
		req.Body = &x.body
	}
	return req
}

// ServeHTTP counts, times and logs every request, and turns a panic into a 500.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	x := &exchange{sw: statusWriter{ResponseWriter: w}}
	sw := &x.sw
	// Every request has an id: the client's X-Request-Id when it is sane,
	// else a new one. The response names it, and so does every log line
	// written with the request's context, here and on the node that serves
	// its turn.
	rid := r.Header.Get("X-Request-Id")
	if !moltbot.ValidRequestID(rid) {
		rid = s.newID("req_")
	}
	x.rid[0] = rid
	sw.Header()["X-Request-Id"] = x.rid[:]
	// The request's context gets the id here and, for an authenticated
	// request, the principal too: one copy of the request for both
	// (authentication reads only the request's headers and address).
	ctx := moltbot.WithRequestID(r.Context(), rid)
	req := r // the request the handler was given (its Pattern, once routed)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.ErrorContext(ctx, "handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
			if sw.code == 0 {
				writeError(sw, moltbot.Errorf(moltbot.EInternal, "internal error"))
			}
		}
		route := req.Pattern
		if route == "" && s.isChannelPath(r.URL.Path) {
			route = channelsPath // never the path: a channel's may carry a secret
		}
		if route == "" || route == "/" {
			route = "other"
		}
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		d := time.Since(t0)
		s.met.Inc(metrics.HTTPRequests, route, codeText[min(code, 599)])
		s.met.Observe(metrics.HTTPDuration, d, route)
		// The access log: a failure at warn, every other request at info
		// (probes at debug); durations in milliseconds, named so. The
		// route, not the path: a path may carry what must not be logged
		// (a channel's secret webhook path).
		lvl, msg := slog.LevelInfo, "request"
		switch {
		case code >= 500 && route != "GET /readyz" && route != "/readyz":
			lvl, msg = slog.LevelWarn, "request failed"
		case r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics":
			lvl = slog.LevelDebug // probes and scrapes
		}
		if s.log.Enabled(ctx, lvl) {
			s.log.Log(ctx, lvl, msg, "method", r.Method, "route", route, "code", code,
				"duration_ms", float64(d.Microseconds())/1000, "remote", r.RemoteAddr)
		}
	}()
	if s.isChannelPath(r.URL.Path) {
		// The adapter authenticates its platform (a signature, a secret);
		// the host, origin and content type are its to judge.
		req = r.WithContext(ctx)
		s.serveChannel(sw, req)
		return
	}
	authOn := s.mg.AuthEnabled()
	deadline, ok := s.guard(sw, r, authOn)
	if !ok {
		return
	}
	var timeout time.Duration // the body's, once the handler's request has it
	if deadline {
		timeout = s.cfg.BodyReadTimeout
	}
	if !authOn {
		req = x.request(r, ctx, timeout)
		s.route(sw, req)
		return
	}
	client := s.clientKey(r)
	if s.open(r.URL.Path) {
		// No credential: a bounded number at a time per address, so that
		// slow bodies to /oauth/token cannot pile up.
		release, ok := s.anon.Take(client, s.cfg.MaxAnonymous, math.MaxInt)
		if !ok {
			sw.Header().Set("Connection", "close")
			writeError(sw, &moltbot.Error{Code: moltbot.ERateLimited, Message: fmt.Sprintf(
				"too many requests without a credential in flight from this address (at most %d, server.max_anonymous_requests)", s.cfg.MaxAnonymous)})
			return
		}
		defer release()
		req = x.request(r, context.WithValue(ctx, clientCtxKey{}, client), timeout)
		s.mux.ServeHTTP(sw, req)
		return
	}
	// Authentication reads the request's headers and address, never its
	// body: the body's reader is set on the handler's request after.
	p, ok := s.authenticate(sw, r, client)
	if !ok {
		return
	}
	if p.Agent() && !strings.HasPrefix(r.URL.Path, handoffPath) && r.URL.Path != "/v1/auth/rotate" {
		// A human agent's key works the hand-off queue and nothing else
		// (but rotating itself).
		writeError(sw, moltbot.Errorf(moltbot.EForbidden, "a credential of scope agent may only use %s (the hand-off queue)", handoffPath))
		return
	}
	req = x.request(r, moltbot.WithPrincipal(ctx, p), timeout)
	s.route(sw, req)
}

// decode reads a JSON body into v, capped at MaxBodyBytes and bounded in time.
// Unknown fields are ignored, but for a chat request's top-level members
// (refused by name); wrong types, bad JSON, trailing data and oversize
// bodies are 4xx errors naming the problem.
// The read deadline was set by the edge guard (edge.go).
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	// The body is read whole first (within max_body_bytes), then decoded
	// by encoding/json's decoder over the same bytes (and the read's
	// error after them), as it did when it read the body itself: same
	// values, same errors.
	bp, buf, err := s.readBody(w, r)
	defer putBody(bp)
	return s.decodeFrom(buf, err, v, optional)
}

// decodeChat is decode for a chat request: one of the usual shape is
// decoded in one pass (openaiwire.DecodeChatRequest), anything else as
// decode does. The request stays the caller's (on its stack: decode's v
// would take it to the heap for encoding/json's sake, 203 B a request);
// the slow way decodes into one of its own and copies it.
func (s *Server) decodeChat(w http.ResponseWriter, r *http.Request, cr *openaiwire.ChatRequest) error {
	bp, buf, err := s.readBody(w, r)
	defer putBody(bp)
	if err == nil && openaiwire.DecodeChatRequest(buf, cr) {
		return nil
	}
	slow := new(openaiwire.ChatRequest)
	if err := s.decodeFrom(buf, err, slow, false); err != nil {
		return err
	}
	*cr = *slow
	return nil
}

// readBody reads r's body whole into a pooled buffer (putBody gives it
// back), capped at MaxBodyBytes; err is the read's failure, after buf.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (bp *[]byte, buf []byte, err error) {
	bp = bodies.Get().(*[]byte)
	buf, err = readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), (*bp)[:0])
	*bp = buf[:0]
	return bp, buf, err
}

func putBody(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		bodies.Put(bp)
	}
}

// decodeFrom decodes buf (and the read's error rerr after it) into v with
// encoding/json, as decode says.
func (s *Server) decodeFrom(buf []byte, rerr error, v any, optional bool) error {
	var src io.Reader = bytes.NewReader(buf)
	if rerr != nil {
		src = io.MultiReader(bytes.NewReader(buf), errReader{rerr})
	}
	dec := json.NewDecoder(src)
	if err := dec.Decode(v); err != nil {
		return s.decodeError(err, optional)
	}
	if dec.More() {
		return invalid("", "the body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return s.decodeError(err, false)
		}
		return invalid("", "the body holds data after its JSON value")
	}
	// A chat request names every field it has: one that is none of
	// OpenAI's (a typo, a field of a newer API) is refused, not dropped.
	if _, ok := v.(*openaiwire.ChatRequest); ok {
		if name, unknown := openaiwire.UnknownField(buf); unknown {
			return invalid(name, "unknown field %q: it is not a field of the chat completions request (docs/API.md lists those moltbot takes)", name)
		}
	}
	return nil
}

// bodies hold request bodies while they are decoded.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody appends what r holds to buf, up to EOF or an error.
func readBody(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// errReader returns its error: the read's failure, after the bytes it read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func (s *Server) decodeError(err error, optional bool) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var bt bodyTimeout
	switch {
	case errors.As(err, &bt):
		return &moltbot.Error{Code: codeRequestTimeout, Message: bt.Error()}
	case errors.As(err, &mbe):
		return &moltbot.Error{Code: moltbot.ETooLarge, Message: fmt.Sprintf("the request body is larger than %d bytes (server.max_body_bytes)", mbe.Limit)}
	case errors.Is(err, io.EOF):
		if optional {
			return nil
		}
		return invalid("", "the request body is empty; send a JSON object")
	case errors.As(err, &se):
		return invalid("", "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return invalid("", "the body must be a JSON object, not %s", te.Value)
		}
		return invalid(field, "%s: expected %s, got %s", field, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "malformed JSON: the body ends early")
	}
	var fe *openaiwire.FieldError
	if errors.As(err, &fe) {
		return invalid(fe.Param, "%s", fe.Msg)
	}
	return invalid("", "malformed JSON: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	case "ptr", "interface":
		return "a value"
	}
	return "a number"
}

func (s *Server) newID(prefix string) string {
	var b [48]byte
	id := append(append(b[:0], prefix...), s.idBase...)
	return string(strconv.AppendUint(id, s.ids.Add(1), 36)) // one allocation
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readiness() error { return s.mg.Ready() }

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := s.readiness(); err != nil {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	// Closed metrics are the operator's: they carry every tenant's labels.
	if !s.cfg.MetricsOpen && s.mg.AuthEnabled() && !requireOperator(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.met.WritePrometheus(w)
}

// StatusResponse is the body of GET /v1/admin/status (and `moltbot status`).
type StatusResponse struct {
	Status        string                  `json:"status"`
	Reason        string                  `json:"reason,omitempty"`
	Version       string                  `json:"version"`
	UptimeSeconds float64                 `json:"uptime_seconds"`
	Chain         []string                `json:"chain"`
	Providers     []manage.ProviderStatus `json:"providers"`
	Breakers      []manage.BreakerStatus  `json:"breakers"`
	Conversations struct {
		Active int64 `json:"active"`
		Stored int   `json:"stored"`
	} `json:"conversations"`
	Requests struct {
		HTTP      uint64 `json:"http"`
		Inference uint64 `json:"inference"`
		Failovers uint64 `json:"failovers"`
		Restarts  uint64 `json:"actor_restarts"`
	} `json:"requests"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.mg.Status(principal(r))
	if err != nil {
		writeError(w, err)
		return
	}
	out := StatusResponse{Status: "ready", Version: s.cfg.Version, UptimeSeconds: time.Since(s.started).Seconds(),
		Chain: st.Chain, Providers: st.Providers, Breakers: st.Breakers}
	if err := s.readiness(); err != nil {
		out.Status, out.Reason = "unavailable", err.Error()
	}
	out.Conversations.Active, out.Conversations.Stored = st.ConversationsActive, st.ConversationsStored
	out.Requests.HTTP = s.met.Sum(metrics.HTTPRequests)
	out.Requests.Inference = s.met.Sum(metrics.InferenceRequests)
	out.Requests.Failovers = s.met.Sum(metrics.Failovers)
	out.Requests.Restarts = s.met.Sum(metrics.ActorRestarts)
	writeJSON(w, http.StatusOK, out)
}

// providers answers GET /v1/admin/providers: each provider and each
// provider/model breaker (state, error rate, p95 first-token latency,
// cooldown left).
func (s *Server) providers(w http.ResponseWriter, r *http.Request) {
	st, err := s.mg.Status(principal(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "providers": st.Providers, "breakers": st.Breakers})
}

// cluster answers GET /v1/admin/cluster: this node's view of the members.
func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	st, err := s.mg.Cluster(principal(r))
	if err != nil {
		writeError(w, err)
		return
	}
	if st == nil {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false, "members": []any{}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "self": st.Self, "replicas": st.Replicas, "members": st.Members})
}
