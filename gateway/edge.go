package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/slots"
)

// The edge guard runs before authentication on every request (ServeHTTP):
//
//   - a body must arrive within ReadBodyTimeout of the handler starting; a
//     read past it gets a typed error that handlers answer with 408 naming
//     server.read_body_timeout (net/http clears the connection's read
//     deadline itself once the body reaches EOF, before it starts the
//     background read that watches for the client leaving, so a streamed
//     reply is not cut by it);
//   - a state-changing request with a body must say Content-Type:
//     application/json (application/x-www-form-urlencoded for /oauth/token),
//     which no HTML form and no "simple" cross-site fetch can send;
//   - with auth off, only IP addresses, localhost and AllowedHosts are
//     answered (DNS rebinding), and a browser's Origin must be the node's
//     own, a loopback one or an allowed host (cross-site requests).
//
// With auth on, Host and Origin are not checked: a browser never attaches a
// bearer credential by itself, so a cross-site page cannot act as a user.

// bodyTimeout is what reading a body returns after ReadBodyTimeout.
type bodyTimeout struct{ d time.Duration }

func (e bodyTimeout) Error() string {
	return fmt.Sprintf("the request body did not arrive within %s (server.read_body_timeout)", e.d)
}

// deadlineBody reads a body under the deadline the guard set, and names the
// deadline when it passes.
type deadlineBody struct {
	io.ReadCloser
	d time.Duration
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, bodyTimeout{b.d}
	}
	return n, err
}

// guard applies the edge rules; it answers and returns false when a request
// breaks one. It sets the body's read deadline; deadline reports that it
// did, and the request the handler gets reads its body through a
// deadlineBody (exchange.request). r itself is not changed: net/http
// judges by its own request's Body whether a connection whose body was
// not read may be reused.
func (s *Server) guard(w http.ResponseWriter, r *http.Request, authOn bool) (deadline, ok bool) {
	if !authOn {
		if !s.hostAllowed(r.Host) {
			refuse(w, r, http.StatusForbidden, &moltbot.Error{Code: moltbot.EForbidden, Message: fmt.Sprintf(
				"host %q is not allowed: without auth the node answers only to IP addresses, localhost and server.allowed_hosts", r.Host)})
			return false, false
		}
		if o := r.Header.Get("Origin"); o != "" && !s.originAllowed(o, r.Host) {
			refuse(w, r, http.StatusForbidden, &moltbot.Error{Code: moltbot.EForbidden, Message: fmt.Sprintf(
				"origin %q is not allowed: without auth the node takes browser requests only from its own origin, localhost and server.allowed_hosts", o)})
			return false, false
		}
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return false, true // no body (HTTP/2 always has a Body: its length says)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
		want := "application/json"
		if r.URL.Path == "/oauth/token" {
			want = "application/x-www-form-urlencoded" // RFC 6749 section 4.4.2
		}
		if got := r.Header.Get("Content-Type"); !mediaTypeIs(got, want) {
			w.Header().Set("Accept", want)
			w.Header().Set("Connection", "close") // the body is not read
			msg := fmt.Sprintf("Content-Type must be %s, got %q", want, got)
			if want != "application/json" {
				w.Header().Set("Cache-Control", "no-store")
				writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "invalid_request", "error_description": msg})
			} else {
				refuse(w, r, http.StatusUnsupportedMediaType, &moltbot.Error{Code: codeUnsupportedMedia,
					Message: msg + " (curl -d sends application/x-www-form-urlencoded: add -H 'Content-Type: application/json')"})
			}
			return false, false
		}
	}
	return http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) == nil, true
}

// refuse writes what the edge guard refuses in the shape of the API the
// request is for: Ollama's {"error": "..."} on its routes, Anthropic's on
// the Messages API, OpenAI's elsewhere; a client reads its own.
func refuse(w http.ResponseWriter, r *http.Request, code int, err *moltbot.Error) {
	switch {
	case ollamaPath(r.URL.Path):
		writeOllamaStatus(w, code, err.Message)
	case r.URL.Path == "/v1/messages":
		writeAnthropicErrorStatus(w, code, err)
	default:
		writeErrorStatus(w, code, err)
	}
}

// mediaTypeIs reports whether a Content-Type value names want, ignoring
// parameters (charset) and case, without allocating.
func mediaTypeIs(v, want string) bool {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.EqualFold(strings.TrimSpace(v), want)
}

// hostAllowed reports whether a node without auth answers to Host h: an IP
// address (a page cannot rebind a name to it; the browser's origin is the
// address itself), localhost or a name under .localhost, an allowed host,
// or no Host at all (HTTP/1.0 clients, never a browser).
func (s *Server) hostAllowed(h string) bool {
	if h == "" {
		return true
	}
	name := hostname(h)
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	return s.nameAllowed(name)
}

// nameAllowed: localhost, *.localhost, or server.allowed_hosts (".d" allows
// d and its subdomains). Case and a trailing dot do not matter.
func (s *Server) nameAllowed(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	for _, a := range s.cfg.AllowedHosts {
		a = strings.TrimSuffix(strings.ToLower(a), ".")
		if d, sub := strings.CutPrefix(a, "."); sub {
			if name == d || strings.HasSuffix(name, a) {
				return true
			}
		} else if name == a {
			return true
		}
	}
	return false
}

// originAllowed reports whether a browser page of origin o may call a node
// without auth reached as host: the node's own origin, a loopback address,
// localhost, or an allowed host. "null" (sandboxed frames, files) is not.
func (s *Server) originAllowed(o, host string) bool {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	name := hostname(u.Host)
	if a, err := netip.ParseAddr(name); err == nil {
		return a.Unmap().IsLoopback()
	}
	return s.nameAllowed(name)
}

// hostname strips the port and IPv6 brackets from a Host value.
func hostname(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		return h[:i]
	}
	return h
}

// clientAddr is the address a request comes from: the peer, or, when the
// peer is a trusted proxy, the right-most X-Forwarded-For address that is
// not itself trusted (each proxy appends the address it was reached from,
// so entries right of the first untrusted one were written by trusted
// proxies and the rest by anyone). When every entry is trusted the
// left-most is the client; an entry that is not an address ends the walk at
// the last good one. At most 64 entries are read.
func clientAddr(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	cur, hops := peer, 0
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			if hops++; hops > 64 {
				return cur
			}
			var tok string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				tok, v = v[j+1:], v[:j]
			} else {
				tok, v = v, ""
			}
			tok = strings.TrimSpace(tok)
			if tok == "" {
				continue
			}
			a, ok := parseHop(tok)
			if !ok {
				return cur
			}
			if !isTrusted(a, trusted) {
				return a
			}
			cur = a
		}
	}
	return cur
}

// parseHop reads one X-Forwarded-For entry: an address, with or without a
// port ("192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]:80").
func parseHop(tok string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(tok); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(tok); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientKey is what per-address budgets (failed authentications, anonymous
// requests) are kept under: an IPv4 address, or an IPv6 address's /64 (one
// subscriber's network: a host picks any address in it). Without trusted
// proxies an IPv4 peer's key is a substring of RemoteAddr (no allocation).
func (s *Server) clientKey(r *http.Request) string {
	host := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(host); err == nil {
		a := ap.Addr().Unmap()
		if len(s.cfg.TrustedProxies) > 0 {
			a = clientAddr(a, r.Header.Values("X-Forwarded-For"), s.cfg.TrustedProxies)
		} else if ap.Addr().Is4() {
			return host[:strings.LastIndexByte(host, ':')]
		}
		return slots.Key(a)
	}
	return host // not an IP peer (a pipe in tests)
}
