package auth

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// clientIP is the address failures are counted against when the caller
// does not name one: the peer (moltbot believes no forwarding header here;
// the gateway resolves X-Forwarded-For from trusted proxies and calls
// AuthenticateFrom).
func clientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// Authenticate is AuthenticateFrom with failures counted against the peer.
func (s *Service) Authenticate(r *http.Request) (*Principal, *Error) {
	return s.AuthenticateFrom(r, clientIP(r))
}

// AuthenticateFrom finds the principal of a request from its Authorization
// header: an API key (mb_...), a JWT, or an Ollama signature (ollama.go). With auth disabled every request is
// the default tenant's operator.
//
// A valid credential is always accepted, whatever its address did before:
// only failures are throttled. Each failure is counted against client; past
// FailureLimit failures a minute from it, failures are answered 429 with
// Retry-After instead of 401, all alike (no reason, no description), until
// its budget refills. There is no added delay: a delay would hold a
// connection per guess, and guessing cannot succeed anyway (a key's secret
// is 130 random bits, a token needs a signature); the throttle makes a
// guessing address visible (moltbot_auth_failures_total{reason="throttled"})
// and tells a misconfigured client to back off.
func (s *Service) AuthenticateFrom(r *http.Request, client string) (*Principal, *Error) {
	if !s.cfg.Enabled {
		return &Principal{Tenant: DefaultTenant, Space: DefaultTenant, Scope: ScopeAdmin, Method: "none"}, nil
	}
	p, err := s.authenticate(r)
	if err != nil {
		if w, over := s.failed(client, err.Reason); over {
			return nil, &Error{Status: http.StatusTooManyRequests, Reason: "throttled", Retry: w,
				Msg: "too many failed authentications from this address; wait before retrying"}
		}
		return nil, err
	}
	return p, nil
}

// failed counts one failed authentication from client. It reports whether
// client is over its budget, and how long until it is not. An address over
// budget is not charged further: one that stops failing is answered 401
// again within 60/FailureLimit seconds.
func (s *Service) failed(client, reason string) (time.Duration, bool) {
	w, ok := s.failures.take("f/"+client, s.cfg.FailureLimit, 1)
	if s.onFail != nil {
		if !ok {
			reason = "throttled"
		}
		s.onFail(reason)
	}
	return w, !ok
}

func (s *Service) authenticate(r *http.Request) (*Principal, *Error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, &Error{Status: http.StatusUnauthorized, Reason: "missing",
			Msg: "authentication required: send Authorization: Bearer <API key or token>"}
	}
	if isOllamaSignature(h) {
		return s.checkOllama(r, h)
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	if !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return nil, &Error{Status: http.StatusUnauthorized, Code: "invalid_request", Reason: "malformed",
			Msg: "the Authorization header must be \"Bearer <credential>\""}
	}
	if strings.HasPrefix(cred, "mb_") {
		return s.checkKey(cred)
	}
	return s.checkJWT(cred)
}
