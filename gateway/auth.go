package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/manage"
)

var anonymous = moltbot.Anonymous()

// principal is the authenticated caller of r (set by ServeHTTP with
// moltbot.WithPrincipal, which the chat service then finds in place; with
// auth off, the default tenant's operator).
func principal(r *http.Request) *moltbot.Principal {
	if p := moltbot.PrincipalOf(r.Context()); p != nil {
		return p
	}
	return anonymous
}

// open paths need no credential.
func (s *Server) open(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/.well-known/jwks.json", "/oauth/token":
		return true
	case "/", "/api/version":
		// The Ollama API's probes: "Ollama is running" and the version,
		// which the ollama CLI asks before anything else (ollama.go).
		return true
	case "/metrics":
		return s.cfg.MetricsOpen
	}
	return false
}

type clientCtxKey struct{}

// clientOf is the address budget key of an anonymous request (set by
// ServeHTTP for open paths when auth is on).
func clientOf(r *http.Request) string {
	k, _ := r.Context().Value(clientCtxKey{}).(string)
	return k
}

// authenticate returns r's principal or answers 401/429 itself; failures
// count against client.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, client string) (*moltbot.Principal, bool) {
	// Anthropic's clients send their key as x-api-key and read errors in
	// Anthropic's shape (anthropic.go).
	anthropic := r.URL.Path == messagesPath
	ar := r
	if anthropic {
		ar = withAPIKey(r)
	}
	p, err := s.mg.Authenticate(ar, client)
	if err != nil {
		// The body of a refused request is not read: the connection closes.
		w.Header().Set("Connection", "close")
		if anthropic {
			writeAnthropicAuthError(w, r, err)
		} else if ollamaPath(r.URL.Path) {
			writeOllamaAuthError(w, err)
		} else {
			writeError(w, err)
		}
		return nil, false
	}
	if p.ExpiresSoon && !p.Expires.IsZero() {
		w.Header().Set("X-Moltbot-Key-Expires", p.Expires.UTC().Format(time.RFC3339))
	}
	if p.Channel == "" {
		p.Channel = "http"
	}
	return p, true
}

// requireOperator answers 403 unless the caller is the default tenant's admin.
func requireOperator(w http.ResponseWriter, r *http.Request) bool {
	if err := manage.RequireOperator(principal(r)); err != nil {
		writeError(w, err)
		return false
	}
	return true
}

// ---- /v1/admin/keys, /v1/admin/tenants, /v1/auth/rotate, /oauth/token ----

type keyRequest struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
	Scope  string `json:"scope"`
	TTL    string `json:"ttl"`
	Grace  string `json:"grace"`
	// OllamaKey registers an Ollama public key instead (ollama.go).
	OllamaKey string `json:"ollama_key"`
	// OllamaProof is the key's SSH signature of the tenant's name
	// (ssh-keygen -Y sign), required with OllamaKey.
	OllamaProof string `json:"ollama_proof"`
	// Bot binds the key to a bot of its tenant (manage.NewKey.Bot).
	Bot string `json:"bot"`
}

type keyResponse struct {
	Key string `json:"key,omitempty"` // the secret: shown once
	*manage.KeyInfo
}

// parseGrace reads a rotation's grace: absent is manage.DefaultGrace, "0s"
// ends the old key now.
func parseGrace(v string) (time.Duration, error) {
	if v == "" {
		return manage.DefaultGrace, nil
	}
	return parseDuration("grace", v)
}

func parseDuration(param, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, invalid(param, "%s: want a duration such as 720h, got %q", param, v)
	}
	return d, nil
}

// fail records a refused or failed admin action and answers it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, a audited, err error) {
	s.record(r, a, err)
	writeError(w, err)
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	switch r.Method {
	case http.MethodGet:
		list, err := s.mg.Keys(p, r.URL.Query().Get("tenant"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "keys": list})
	case http.MethodPost:
		var req keyRequest
		a := audited{action: "key.create"}
		if !p.Admin() {
			s.fail(w, r, a, errDenied)
			return
		}
		if err := s.decode(w, r, &req, true); err != nil {
			s.fail(w, r, a, err)
			return
		}
		if req.Tenant == "" {
			req.Tenant = p.Tenant
		}
		a.tenant, a.detail = req.Tenant, fmt.Sprintf("scope=%s name=%q ttl=%s", req.Scope, req.Name, req.TTL)
		if req.OllamaKey != "" {
			a.detail += " kind=ollama"
		}
		if req.Bot != "" {
			a.detail += fmt.Sprintf(" bot=%q", req.Bot)
		}
		ttl, err := parseDuration("ttl", req.TTL)
		if err != nil {
			s.fail(w, r, a, err)
			return
		}
		secret, info, err := s.mg.CreateKey(p, manage.NewKey{Tenant: req.Tenant, Name: req.Name, Scope: moltbot.Scope(req.Scope), TTL: ttl,
			OllamaKey: req.OllamaKey, OllamaProof: req.OllamaProof, Bot: req.Bot})
		if err != nil {
			s.fail(w, r, a, err)
			return
		}
		a.target, a.detail = "key:"+info.ID, fmt.Sprintf("scope=%s name=%q expires=%d", info.Scope, info.Name, info.Expires)
		if info.Fingerprint != "" {
			a.detail += fmt.Sprintf(" kind=%s fingerprint=%s", info.Kind, info.Fingerprint)
		}
		if info.Bot != "" {
			a.detail += fmt.Sprintf(" bot=%q", info.Bot)
		}
		s.record(r, a, nil)
		writeJSON(w, http.StatusCreated, keyResponse{Key: secret, KeyInfo: info})
	default:
		methodNotAllowed(w, r, "GET", "POST")
	}
}

func (s *Server) key(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a := audited{action: "key.revoke", target: "key:" + id}
	info, err := s.mg.RevokeKey(principal(r), id)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.tenant = info.Tenant
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	a := audited{action: "key.rotate", target: "key:" + r.PathValue("id")}
	if !principal(r).Admin() {
		s.fail(w, r, a, errDenied)
		return
	}
	var req keyRequest
	if err := s.decode(w, r, &req, true); err != nil {
		s.fail(w, r, a, err)
		return
	}
	grace, err := parseGrace(req.Grace)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	secret, info, err := s.mg.RotateKey(principal(r), r.PathValue("id"), grace)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.tenant, a.detail = info.Tenant, fmt.Sprintf("successor=%s grace=%s", info.ID, grace)
	s.record(r, a, nil)
	writeJSON(w, http.StatusCreated, keyResponse{Key: secret, KeyInfo: info})
}

// rotateSelf: a client rotates the key it calls with (POST /v1/auth/rotate).
func (s *Server) rotateSelf(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	a := audited{action: "key.rotate_self", target: "key:" + p.KeyID, tenant: p.Tenant}
	var req keyRequest
	if err := s.decode(w, r, &req, true); err != nil {
		s.fail(w, r, a, err)
		return
	}
	grace, err := parseGrace(req.Grace)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	secret, info, err := s.mg.RotateSelf(p, grace)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.detail = fmt.Sprintf("successor=%s grace=%s", info.ID, grace)
	s.record(r, a, nil)
	writeJSON(w, http.StatusCreated, keyResponse{Key: secret, KeyInfo: info})
}

type tenantRequest struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Models      []string          `json:"models"`
	Limits      manage.Limits     `json:"limits"`
	RotateEvery string            `json:"rotate_every"`
	Retention   *manage.Retention `json:"retention"`
}

func (s *Server) tenants(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	switch r.Method {
	case http.MethodGet:
		list, err := s.mg.Tenants(p)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "tenants": list})
	case http.MethodPost:
		var req tenantRequest
		a := audited{action: "tenant.create"}
		if !p.Operator() {
			s.fail(w, r, a, manage.RequireOperator(p))
			return
		}
		if err := s.decode(w, r, &req, false); err != nil {
			s.fail(w, r, a, err)
			return
		}
		a.target, a.tenant = "tenant:"+req.ID, req.ID
		every, err := parseDuration("rotate_every", req.RotateEvery)
		if err != nil {
			s.fail(w, r, a, err)
			return
		}
		t, err := s.mg.CreateTenant(p, manage.Tenant{ID: req.ID, Name: req.Name, Models: req.Models, Limits: req.Limits, RotateEvery: every,
			Retention: req.Retention})
		if err != nil {
			s.fail(w, r, a, err)
			return
		}
		a.detail = fmt.Sprintf("incarnation=%s models=%v rpm=%d tpm=%d max_conversations=%d max_stored_bytes=%d rotate_every=%s", t.Incarnation, t.Models,
			t.Limits.RequestsPerMinute, t.Limits.TokensPerMinute, t.Limits.MaxConversations, t.Limits.MaxStoredBytes, t.RotateEvery)
		if rp := t.Retention; rp != nil {
			a.detail += fmt.Sprintf(" retention_days=%d retention_messages=%d archive=%v", rp.Days, rp.Messages, rp.Archive)
		}
		s.record(r, a, nil)
		writeJSON(w, http.StatusCreated, t)
	default:
		methodNotAllowed(w, r, "GET", "POST")
	}
}

func (s *Server) tenant(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a := audited{action: "tenant.delete", target: "tenant:" + id, tenant: id}
	if err := s.mg.DeleteTenant(principal(r), id); err != nil {
		s.fail(w, r, a, err)
		return
	}
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("id"), "deleted": true})
}

// token is the OAuth 2.0 token endpoint (client credentials grant, RFC 6749
// section 4.4): form-encoded, client authentication by HTTP Basic or in the body.
// The body comes under the edge's read deadline and its Content-Type was
// checked there; failed client authentications spend the address's budget.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		var bt bodyTimeout
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &bt):
			w.Header().Set("Connection", "close")
			oauthError(w, &moltbot.Error{Code: codeRequestTimeout, Reason: "invalid_request", Message: bt.Error()})
		case errors.As(err, &mbe):
			oauthError(w, &moltbot.Error{Code: moltbot.ETooLarge, Reason: "invalid_request", Message: "the body is larger than 64 KiB"})
		default:
			oauthError(w, &moltbot.Error{Code: moltbot.EInvalid, Reason: "invalid_request", Message: "the body must be application/x-www-form-urlencoded"})
		}
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	tok, err := s.mg.Token(clientOf(r), r.PostForm.Get("grant_type"), id, secret, r.PostForm.Get("scope"))
	if err != nil {
		oauthError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tok)
}

// oauthError writes an RFC 6749 error body: {"error": its Reason,
// "error_description": its message}, with the status of its code.
func oauthError(w http.ResponseWriter, err error) {
	var e *moltbot.Error
	if !errors.As(err, &e) || e.Reason == "" {
		writeError(w, err)
		return
	}
	code := status(e.Code)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="moltbot"`)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, map[string]string{"error": e.Reason, "error_description": e.Message})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(s.mg.JWKS())
}

// reload re-reads provider credentials (POST /v1/admin/keys/reload).
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	a := audited{action: "config.reload", target: "config"}
	n, err := s.mg.Reload(principal(r))
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.detail = fmt.Sprintf("providers=%d", n)
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true, "providers": n})
}
