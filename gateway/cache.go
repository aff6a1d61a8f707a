package gateway

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/moltbot/moltbot"
)

// The output cache at the HTTP edge. A client says what it wants of the
// cache in a request header, and learns what happened in a response
// header:
//
//   - X-Moltbot-Cache: use     cache this request even if its reply may
//     vary (no temperature 0, no seed)
//   - X-Moltbot-Cache: bypass  neither read nor write the cache
//     (so does Cache-Control: no-store)
//   - X-Moltbot-Cache: refresh ask the model even if a reply is stored,
//     and store the new one (so does Cache-Control: no-cache)
//
// A chat completion or a conversation turn answered through the cache
// carries X-Moltbot-Cache: hit (a stored reply, or one shared with an
// identical request in flight) or miss (the model answered; the reply may
// be stored), and no such header when the cache had no part in it. A hit
// of the semantic tier (a reply stored for a question close in meaning)
// adds X-Moltbot-Cache-Match: semantic.
// Without a cache (cache.type unset) the headers are ignored.

// cacheWriter sets X-Moltbot-Cache on a 200 from what the turn's cache
// stage found; it reads it when the status goes out, which for a stream
// is at the first token (the stage decides before any).
type cacheWriter struct {
	http.ResponseWriter
	cc    moltbot.CacheControl
	wrote bool
}

func (w *cacheWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if r := w.cc.Result(); r != "" && code == http.StatusOK {
			w.Header().Set("X-Moltbot-Cache", r)
			if w.cc.Semantic() {
				w.Header().Set("X-Moltbot-Cache-Match", "semantic")
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *cacheWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *cacheWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *cacheWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withCache reads a chat request's cache headers: the request it returns
// carries them to the turn's cache stage, the writer answers
// X-Moltbot-Cache. A value it does not know is a 400 (written; ok false).
func (s *Server) withCache(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, bool) {
	if !s.mg.CacheEnabled() {
		return w, r, true
	}
	mode, err := cacheMode(r.Header)
	if err != nil {
		writeError(w, err)
		return w, r, false
	}
	cw := &cacheWriter{ResponseWriter: w}
	cw.cc.Mode = mode
	return cw, r.WithContext(moltbot.WithCacheControl(r.Context(), &cw.cc)), true
}

// cacheModes are X-Moltbot-Cache's values.
var cacheModes = map[string]moltbot.CacheMode{"use": moltbot.CacheUse, "bypass": moltbot.CacheBypass, "refresh": moltbot.CacheRefresh}

// cacheMode is what a request's headers ask of the cache:
// X-Moltbot-Cache, else Cache-Control's no-store or no-cache.
func cacheMode(h http.Header) (moltbot.CacheMode, error) {
	if v := h.Get("X-Moltbot-Cache"); v != "" {
		m, ok := cacheModes[strings.ToLower(strings.TrimSpace(v))]
		if !ok {
			return 0, invalid("X-Moltbot-Cache", "X-Moltbot-Cache must be use, bypass or refresh, got %q", v)
		}
		return m, nil
	}
	mode := moltbot.CacheAuto
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "no-store":
				return moltbot.CacheBypass, nil
			case "no-cache":
				mode = moltbot.CacheRefresh
			}
		}
	}
	return mode, nil
}

// cacheRoutes registers the output cache's admin endpoints.
func (s *Server) cacheRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/v1/admin/cache", s.only("GET", s.cacheStats))
	mux.HandleFunc("/v1/admin/cache/purge", s.only("POST", s.purgeCache))
}

// cacheStats answers GET /v1/admin/cache (the operator's): each tier's
// hits, misses, stores, evictions, errors, entries and bytes.
func (s *Server) cacheStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.mg.CacheStats(r.Context(), principal(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// purgeCache answers POST /v1/admin/cache/purge {"tenant": T}: T's cached
// replies go from every tier (every tenant's for the operator without T).
func (s *Server) purgeCache(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Tenant string `json:"tenant"`
	}
	if err := s.decode(w, r, &body, true); err != nil {
		writeError(w, err)
		return
	}
	target := "tenant:" + body.Tenant
	if body.Tenant == "" {
		target = "all"
		if p := principal(r); !p.Operator() {
			target = "tenant:" + p.Tenant
		}
	}
	a := audited{action: "cache.purge", target: target, tenant: body.Tenant}
	res, err := s.mg.PurgeCache(r.Context(), principal(r), body.Tenant)
	if res != nil {
		tiers := make([]string, 0, len(res.Removed))
		for t, n := range res.Removed {
			tiers = append(tiers, fmt.Sprintf("%s=%d", t, n))
		}
		sort.Strings(tiers)
		a.detail = "removed " + strings.Join(tiers, " ")
	}
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	s.record(r, a, nil)
	writeJSON(w, http.StatusOK, res)
}
