package gateway

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/audit"
)

// AuditLog records admin actions and answers the operator's queries
// (audit.Log).
type AuditLog interface {
	Record(e audit.Event)
	Query(q audit.Query) (audit.Page, error)
}

// audited is an admin action about to be recorded.
type audited struct {
	action, target, tenant, detail string
}

// remoteOf is where a request came from, for the audit log: the peer, or
// behind trusted proxies the client they name (clientAddr).
func (s *Server) remoteOf(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			return h
		}
		return r.RemoteAddr
	}
	a := ap.Addr().Unmap()
	if len(s.cfg.TrustedProxies) > 0 {
		a = clientAddr(a, r.Header.Values("X-Forwarded-For"), s.cfg.TrustedProxies)
	}
	return a.String()
}

// outcome names how err ended an action, for the audit log.
func outcome(err error) string {
	if err == nil {
		return audit.OK
	}
	switch moltbot.ErrorCode(err) {
	case moltbot.EForbidden:
		return audit.Denied
	case moltbot.ENotFound:
		return audit.NotFound
	case moltbot.EConflict:
		return audit.Conflict
	case moltbot.EInvalid, moltbot.ETooLarge:
		return audit.Invalid
	}
	return audit.Error
}

// record writes a to the audit log: who (the request's principal), from
// where, and how it ended (err nil: ok; its message goes into the detail).
// Never pass a secret in a: the log redacts API keys, but do not rely on it.
func (s *Server) record(r *http.Request, a audited, err error) {
	if s.cfg.Audit == nil {
		return
	}
	p := principal(r)
	detail := a.detail
	if err != nil {
		if detail != "" {
			detail += "; "
		}
		detail += errorMessage(err)
	}
	s.cfg.Audit.Record(audit.Event{
		Actor:  audit.Actor{Tenant: p.Tenant, KeyID: p.KeyID, Subject: p.Subject, Method: p.Method},
		Action: a.action, Target: a.target, Tenant: a.tenant, Remote: s.remoteOf(r),
		Outcome: outcome(err), Detail: detail,
	})
}

// errorMessage is what the client was told.
func errorMessage(err error) string {
	var e *moltbot.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// errDenied stands for a refused admin call in the audit log.
var errDenied = moltbot.Errorf(moltbot.EForbidden, "not allowed: the credential lacks the scope")

// parseAuditQuery reads GET /v1/admin/audit's parameters: since (RFC 3339)
// and limit (1 to audit.MaxLimit).
func parseAuditQuery(q url.Values) (audit.Query, error) {
	var out audit.Query
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return out, invalid("since", "since: want an RFC 3339 time such as 2026-03-01T12:00:00Z, got %q", v)
		}
		out.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return out, invalid("limit", "limit: want a number from 1 to %d, got %q", audit.MaxLimit, v)
		}
		out.Limit = n
	}
	return out, nil
}

// auditLog answers GET /v1/admin/audit: the operator's only, as it holds
// every tenant's actions.
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	if !requireOperator(w, r) {
		return
	}
	q, err := parseAuditQuery(r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	page, err := s.cfg.Audit.Query(q)
	if err != nil {
		writeError(w, err)
		return
	}
	out := map[string]any{"object": "list", "events": page.Events, "more": page.More}
	if page.Next != nil {
		out["next"] = page.Next.Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, out)
}
