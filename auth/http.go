package auth

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// clientIP is the address failures are counted against (the peer; moltbot
// does not trust forwarding headers it cannot verify).
func clientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// Authenticate finds the principal of a request from its Authorization
// header: an API key (mb_...) or a JWT. With auth disabled every request is
// the default tenant's operator. An address that failed too often in the
// last minute is answered 429 without checking.
func (s *Service) Authenticate(r *http.Request) (*Principal, *Error) {
	if !s.cfg.Enabled {
		return &Principal{Tenant: DefaultTenant, Space: DefaultTenant, Scope: ScopeAdmin, Method: "none"}, nil
	}
	ip := clientIP(r)
	if w, blocked := s.blocked(ip); blocked {
		return nil, &Error{Status: http.StatusTooManyRequests, Reason: "throttled", Retry: w,
			Msg: "too many failed authentications from this address; wait before retrying"}
	}
	p, err := s.authenticate(r)
	if err != nil {
		s.failures.charge("f/"+ip, s.cfg.FailureLimit, 1)
		if s.onFail != nil {
			s.onFail(err.Reason)
		}
		return nil, err
	}
	return p, nil
}

func (s *Service) blocked(ip string) (time.Duration, bool) {
	// The bucket goes below one token after FailureLimit failures in a minute.
	w, ok := s.failures.peek("f/"+ip, s.cfg.FailureLimit, 1)
	return w, !ok
}

func (s *Service) authenticate(r *http.Request) (*Principal, *Error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, &Error{Status: http.StatusUnauthorized, Reason: "missing",
			Msg: "authentication required: send Authorization: Bearer <API key or token>"}
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
