package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/internal/metrics"
)

type principalKey struct{}

// principal is the authenticated caller of r (set by ServeHTTP).
func principal(r *http.Request) *auth.Principal {
	if p, ok := r.Context().Value(principalKey{}).(*auth.Principal); ok {
		return p
	}
	return &auth.Principal{Tenant: moltbot.DefaultTenant, Space: moltbot.DefaultTenant, Scope: auth.ScopeAdmin, Method: "none"}
}

// tenantOf returns the caller's tenant (limits, allowed models, messages).
func tenantOf(r *http.Request) string { return principal(r).Tenant }

// spaceOf returns where the caller's conversations live: every
// conversation lookup is scoped by it, so another tenant's conversation, or
// that of an earlier tenant with the same id, is simply not found.
func spaceOf(r *http.Request) string { return principal(r).Space }

// open paths need no credential.
func (s *Server) open(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/.well-known/jwks.json", "/oauth/token":
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

// authenticate sets the principal on r or answers 401/429 itself; failures
// count against client.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, client string) (*http.Request, bool) {
	p, aerr := s.auth.AuthenticateFrom(r, client)
	if aerr != nil {
		// The body of a refused request is not read: the connection closes.
		w.Header().Set("Connection", "close")
		s.writeAuthError(w, aerr)
		return r, false
	}
	if p.ExpiresSoon && !p.Expires.IsZero() {
		w.Header().Set("X-Moltbot-Key-Expires", p.Expires.UTC().Format(time.RFC3339))
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), true
}

func (s *Server) writeAuthError(w http.ResponseWriter, e *auth.Error) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", e.WWWAuthenticate())
	}
	code := "unauthorized"
	if e.Status == http.StatusTooManyRequests {
		code = moltbot.ERateLimited
		w.Header().Set("Retry-After", strconv.Itoa(int((e.Retry+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	b := append([]byte(`{"error":{"message":`), jsonString(e.Msg)...)
	b = append(b, `,"type":"authentication_error","param":null,"code":`...)
	b = append(b, jsonString(code)...)
	w.Write(append(b, "}}\n"...))
}

// requireAdmin answers 403 unless the caller has the admin scope.
func requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	if !principal(r).Admin() {
		writeError(w, moltbot.Errorf(moltbot.EForbidden, "this needs a credential with the admin scope"))
		return false
	}
	return true
}

// requireOperator answers 403 unless the caller is the default tenant's admin.
func requireOperator(w http.ResponseWriter, r *http.Request) bool {
	if !principal(r).Operator() {
		writeError(w, moltbot.Errorf(moltbot.EForbidden, "this needs an admin credential of the default tenant (the operator)"))
		return false
	}
	return true
}

// admit applies the caller's rate limits, and with checkModel its model
// allow-list, before a model call.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, model string, checkModel bool) bool {
	if s.auth == nil {
		return true
	}
	p := principal(r)
	if checkModel && !s.auth.ModelAllowed(p.Tenant, model) {
		if model == "" {
			model = "moltbot"
		}
		writeError(w, &moltbot.Error{Code: moltbot.EForbidden, Param: "model", Message: fmt.Sprintf("model %q is not allowed for tenant %q", model, p.Tenant)})
		return false
	}
	if wait, ok := s.auth.Allow(p); !ok {
		s.met.Inc(metrics.RateLimited, p.Tenant)
		writeError(w, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: wait,
			Message: fmt.Sprintf("tenant %q is over its limits; retry in %s", p.Tenant, wait.Round(time.Second))})
		return false
	}
	return true
}

// charge counts a reply's tokens against the caller's limits.
func (s *Server) charge(r *http.Request, u moltbot.Usage) {
	if s.auth != nil {
		s.auth.Charge(principal(r), u.Total())
	}
}

// ---- /v1/admin/keys, /v1/admin/tenants, /v1/auth/rotate, /oauth/token ----

type keyRequest struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
	Scope  string `json:"scope"`
	TTL    string `json:"ttl"`
	Grace  string `json:"grace"`
}

type keyResponse struct {
	Key string `json:"key,omitempty"` // the secret: shown once
	*auth.KeyInfo
}

// parseGrace reads a rotation's grace: absent is auth.DefaultGrace, "0s"
// ends the old key now.
func parseGrace(v string) (time.Duration, error) {
	if v == "" {
		return auth.DefaultGrace, nil
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

func authErr(err error) error {
	var re *auth.RotatedError
	switch {
	case errors.As(err, &re):
		return moltbot.Errorf(moltbot.EConflict, "key %s was already rotated; its successor is %s (a key is rotated once)", re.ID, re.Successor)
	case errors.Is(err, auth.ErrNotFound):
		return moltbot.Errorf(moltbot.ENotFound, "not found")
	case errors.Is(err, auth.ErrConflict):
		return moltbot.Errorf(moltbot.EConflict, "it already exists")
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Message: strings.TrimPrefix(err.Error(), "auth: ")}
}

// scopeTenant is the tenant whose keys the caller may touch: its own, or any
// for the operator ("" = all).
func scopeTenant(r *http.Request, asked string) (string, bool) {
	p := principal(r)
	if p.Operator() {
		return asked, true
	}
	if asked != "" && asked != p.Tenant {
		return "", false
	}
	return p.Tenant, true
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		if r.Method == http.MethodPost {
			s.record(r, audited{action: "key.create"}, errDenied)
		}
		return
	}
	switch r.Method {
	case http.MethodGet:
		t, ok := scopeTenant(r, r.URL.Query().Get("tenant"))
		if !ok {
			writeJSON(w, http.StatusOK, map[string]any{"object": "list", "keys": []any{}})
			return
		}
		list, err := s.auth.ListKeys(t)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "keys": list})
	case http.MethodPost:
		var req keyRequest
		a := audited{action: "key.create"}
		if err := s.decode(w, r, &req, true); err != nil {
			s.record(r, a, err)
			writeError(w, err)
			return
		}
		if req.Tenant == "" {
			req.Tenant = principal(r).Tenant
		}
		a.tenant, a.detail = req.Tenant, fmt.Sprintf("scope=%s name=%q ttl=%s", req.Scope, req.Name, req.TTL)
		t, ok := scopeTenant(r, req.Tenant)
		if !ok {
			err := moltbot.Errorf(moltbot.ENotFound, "tenant %q not found", req.Tenant)
			s.record(r, a, err)
			writeError(w, err)
			return
		}
		ttl, err := parseDuration("ttl", req.TTL)
		if err != nil {
			s.record(r, a, err)
			writeError(w, err)
			return
		}
		secret, info, err := s.auth.CreateKey(t, req.Name, auth.Scope(req.Scope), ttl)
		if err != nil {
			s.record(r, a, authErr(err))
			writeError(w, authErr(err))
			return
		}
		a.target, a.detail = "key:"+info.ID, fmt.Sprintf("scope=%s name=%q expires=%d", info.Scope, info.Name, info.Expires)
		s.record(r, a, nil)
		writeJSON(w, http.StatusCreated, keyResponse{Key: secret, KeyInfo: info})
	default:
		methodNotAllowed(w, r, "GET", "POST")
	}
}

func (s *Server) key(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a := audited{action: "key.revoke", target: "key:" + id}
	if !requireAdmin(w, r) {
		s.record(r, a, errDenied)
		return
	}
	t, _ := scopeTenant(r, "")
	info, err := s.auth.RevokeKey(t, id)
	if err != nil {
		s.record(r, a, authErr(err))
		writeError(w, authErr(err))
		return
	}
	a.tenant = info.Tenant
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	a := audited{action: "key.rotate", target: "key:" + r.PathValue("id")}
	if !requireAdmin(w, r) {
		s.record(r, a, errDenied)
		return
	}
	var req keyRequest
	if err := s.decode(w, r, &req, true); err != nil {
		s.record(r, a, err)
		writeError(w, err)
		return
	}
	grace, err := parseGrace(req.Grace)
	if err != nil {
		s.record(r, a, err)
		writeError(w, err)
		return
	}
	t, _ := scopeTenant(r, "")
	secret, info, err := s.auth.RotateKey(t, r.PathValue("id"), grace)
	if err != nil {
		s.record(r, a, authErr(err))
		writeError(w, authErr(err))
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
		s.record(r, a, err)
		writeError(w, err)
		return
	}
	grace, err := parseGrace(req.Grace)
	if err != nil {
		s.record(r, a, err)
		writeError(w, err)
		return
	}
	secret, info, err := s.auth.RotateSelf(p, grace)
	if err != nil {
		s.record(r, a, authErr(err))
		writeError(w, authErr(err))
		return
	}
	a.detail = fmt.Sprintf("successor=%s grace=%s", info.ID, grace)
	s.record(r, a, nil)
	writeJSON(w, http.StatusCreated, keyResponse{Key: secret, KeyInfo: info})
}

type tenantRequest struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Models      []string    `json:"models"`
	Limits      auth.Limits `json:"limits"`
	RotateEvery string      `json:"rotate_every"`
}

func (s *Server) tenants(w http.ResponseWriter, r *http.Request) {
	if !requireOperator(w, r) {
		if r.Method == http.MethodPost {
			s.record(r, audited{action: "tenant.create"}, errDenied)
		}
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "tenants": s.auth.Tenants()})
	case http.MethodPost:
		var req tenantRequest
		a := audited{action: "tenant.create"}
		if err := s.decode(w, r, &req, false); err != nil {
			s.record(r, a, err)
			writeError(w, err)
			return
		}
		a.target, a.tenant = "tenant:"+req.ID, req.ID
		every, err := parseDuration("rotate_every", req.RotateEvery)
		if err != nil {
			s.record(r, a, err)
			writeError(w, err)
			return
		}
		t, err := s.auth.CreateTenant(auth.Tenant{ID: req.ID, Name: req.Name, Models: req.Models, Limits: req.Limits, RotateEvery: every})
		if err != nil {
			s.record(r, a, authErr(err))
			writeError(w, authErr(err))
			return
		}
		a.detail = fmt.Sprintf("incarnation=%s models=%v rpm=%d tpm=%d rotate_every=%s", t.Incarnation, t.Models,
			t.Limits.RequestsPerMinute, t.Limits.TokensPerMinute, t.RotateEvery)
		s.record(r, a, nil)
		writeJSON(w, http.StatusCreated, t)
	default:
		methodNotAllowed(w, r, "GET", "POST")
	}
}

func (s *Server) tenant(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a := audited{action: "tenant.delete", target: "tenant:" + id, tenant: id}
	if !requireOperator(w, r) {
		s.record(r, a, errDenied)
		return
	}
	if err := s.auth.DeleteTenant(id); err != nil {
		s.record(r, a, authErr(err))
		writeError(w, authErr(err))
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
			oauthError(w, &auth.OAuthError{Status: http.StatusRequestTimeout, Code: "invalid_request", Desc: bt.Error()})
		case errors.As(err, &mbe):
			oauthError(w, &auth.OAuthError{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Desc: "the body is larger than 64 KiB"})
		default:
			oauthError(w, &auth.OAuthError{Status: 400, Code: "invalid_request", Desc: "the body must be application/x-www-form-urlencoded"})
		}
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	tok, err := s.auth.ClientCredentialsFrom(clientOf(r), r.PostForm.Get("grant_type"), id, secret, r.PostForm.Get("scope"))
	if err != nil {
		var oe *auth.OAuthError
		if errors.As(err, &oe) {
			oauthError(w, oe)
			return
		}
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tok)
}

func oauthError(w http.ResponseWriter, e *auth.OAuthError) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="moltbot"`)
	}
	if e.Retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.Retry+time.Second-1)/time.Second)))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Desc})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(s.auth.JWKS())
}

// reload re-reads provider credentials (POST /v1/admin/keys/reload).
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	a := audited{action: "config.reload", target: "config"}
	if !requireOperator(w, r) {
		s.record(r, a, errDenied)
		return
	}
	if s.cfg.Reload == nil {
		err := moltbot.Errorf(moltbot.EInvalid, "this node has no config file to reload")
		s.record(r, a, err)
		writeError(w, err)
		return
	}
	n, err := s.cfg.Reload()
	if err != nil {
		err := &moltbot.Error{Code: moltbot.EInvalid, Message: err.Error()}
		s.record(r, a, err)
		writeError(w, err)
		return
	}
	a.detail = fmt.Sprintf("providers=%d", n)
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true, "providers": n})
}
