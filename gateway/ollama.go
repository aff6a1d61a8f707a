package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// The Ollama API, served by the node: the ollama CLI, its libraries (npm
// ollama, Python) and UIs such as Open WebUI use a moltbot node or cluster
// as their Ollama, with the failover chain behind it. Its field names,
// defaults (stream unless "stream": false), NDJSON streams and errors
// ({"error": "..."} with Ollama's statuses) are Ollama's; what each
// request field becomes is docs/API.md's "Ollama API" table
// (ollamawire.go maps them). Models are the node's: "moltbot" (the chain)
// and the providers' models, named as /v1/models names them, with
// Ollama's ":latest" tag. moltbot does not manage model files: pull, push,
// create, copy and delete are not served.
//
// Authentication is the gateway's (ServeHTTP): a bearer key or token, or a
// request signed by the ollama CLI with a key registered for the tenant
// (auth/ollama.go). HEAD and GET / and /api/version stay open: the CLI
// asks them before anything else.

// ollamaAPIVersion is the version of the Ollama API this edge follows (the
// ollama module of go.mod). /api/version answers it rather than moltbot's
// own: Ollama's clients turn features on by the server's version.
const ollamaAPIVersion = "0.17.4"

// ollamaKeepAlive is how long /api/ps shows a model after it last served
// (Ollama's default keep_alive).
const ollamaKeepAlive = 5 * time.Minute

// ollamaPath reports whether path is the Ollama API's (its errors are
// Ollama's).
func ollamaPath(path string) bool { return path == "/" || strings.HasPrefix(path, "/api/") }

// ollamaState is what the Ollama edge keeps between requests.
type ollamaState struct {
	inUse inUse
}

// ollamaRoutes registers the Ollama API on mux.
func (s *Server) ollamaRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/{$}", s.ollamaOnly("GET", s.ollamaRoot))
	mux.HandleFunc("/api/version", s.ollamaOnly("GET", s.ollamaVersion))
	mux.HandleFunc("/api/tags", s.ollamaOnly("GET", s.ollamaTags))
	mux.HandleFunc("/api/ps", s.ollamaOnly("GET", s.ollamaPs))
	mux.HandleFunc("/api/show", s.ollamaOnly("POST", s.ollamaShow))
	mux.HandleFunc("/api/chat", s.ollamaOnly("POST", s.ollamaChat))
	mux.HandleFunc("/api/generate", s.ollamaOnly("POST", s.ollamaGenerate))
	mux.HandleFunc("/api/embed", s.ollamaOnly("POST", s.ollamaEmbed))
	mux.HandleFunc("/api/embeddings", s.ollamaOnly("POST", s.ollamaEmbeddings))
	mux.HandleFunc("/api/", s.ollamaNoRoute)
}

// ollamaOnly answers 405 in Ollama's shape for any method but the one
// given (HEAD too for GET).
func (s *Server) ollamaOnly(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == "GET" && r.Method == "HEAD") {
			w.Header().Set("Allow", method)
			writeOllamaStatus(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	}
}

func (s *Server) ollamaRoot(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("Ollama is running"))
}

func (s *Server) ollamaVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": ollamaAPIVersion})
}

// ollamaNoRoute answers the paths of Ollama's API that moltbot does not
// serve: the model files' (pull, push, create, copy, delete, blobs) and
// any other.
func (s *Server) ollamaNoRoute(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/api/") {
	case "pull", "push", "create", "copy", "delete":
	default:
		if !strings.HasPrefix(r.URL.Path, "/api/blobs/") {
			writeOllamaError(w, moltbot.Errorf(moltbot.ENotFound, "no route for %s %s", r.Method, r.URL.Path))
			return
		}
	}
	writeOllamaError(w, moltbot.Errorf(moltbot.ENotFound,
		"%s is not served: moltbot serves the models its providers have and does not manage model files (GET /api/tags lists them)", r.URL.Path))
}

// writeOllamaError writes err as Ollama does, {"error": message}, with the
// status of its code (errors.go) and the headers every error carries.
func writeOllamaError(w http.ResponseWriter, err error) {
	code := errorHeaders(w, err)
	writeOllamaStatus(w, status(code), moltbot.ErrorMessage(err))
}

func writeOllamaStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	b := append(jsonw.String(append(make([]byte, 0, 64+len(msg)), `{"error":`...), msg), "}\n"...)
	w.Write(b)
}

// ollamaAuthHint says how to authenticate to the Ollama API: what a
// request without a credential is told.
const ollamaAuthHint = "; the ollama CLI signs its requests instead when run with OLLAMA_AUTH=1 and a key an admin registered " +
	"with: moltbot keys create --ollama-key ~/.ollama/id_ed25519.pub --ollama-proof proof.sig (the key's holder makes proof.sig: see moltbot keys create --help)"

// writeOllamaAuthError writes a refused authentication in Ollama's shape;
// a request that had no credential is told how to send one.
func writeOllamaAuthError(w http.ResponseWriter, err error) {
	var e *moltbot.Error
	if errors.As(err, &e) && e.Code == moltbot.EUnauthorized && e.Reason == "" {
		cp := *e
		cp.Message += ollamaAuthHint
		err = &cp
	}
	writeOllamaError(w, err)
}

// ollamaName is a model's name as Ollama lists it: with its tag
// (":latest" when the name has none).
func ollamaName(id string) string {
	if strings.Contains(id[strings.LastIndexByte(id, '/')+1:], ":") {
		return id
	}
	return id + ":latest"
}

// ollamaDigest stands for a model file's digest: the SHA-256 of its name
// (moltbot has no model files; clients show a digest as the model's id).
func ollamaDigest(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// ollamaFind finds the model name asks for among those p may use, as the
// router resolves a name ("moltbot", provider/model, or a bare model of
// the chain or of a provider's list), and as Ollama's clients write it
// ("name:latest" for "name"). It returns the entry and the name to ask
// the chat service for.
func (s *Server) ollamaFind(p *moltbot.Principal, name string) (moltbot.ModelInfo, string, bool) {
	models := s.chat.Models(p)
	names := []string{name}
	if base, ok := strings.CutSuffix(name, ":latest"); ok && base != "" {
		names = append(names, base)
	}
	for _, n := range names {
		for _, m := range models {
			if m.ID == n {
				return m, n, true
			}
		}
		for _, m := range models {
			if bare := strings.TrimPrefix(m.ID, m.Provider+"/"); m.Provider != "" && (bare == n || strings.TrimSuffix(bare, ":latest") == n) {
				return m, n, true
			}
		}
	}
	return moltbot.ModelInfo{}, name, false
}

// ollamaNotFound is Ollama's answer for a model it does not have.
func ollamaNotFound(name string) error {
	return &moltbot.Error{Code: moltbot.ENotFound, Param: "model", Message: fmt.Sprintf("model '%s' not found", name)}
}

// ollamaDetails are a model's details: moltbot knows no file format,
// family or size of its providers' models.
func ollamaDetails() api.ModelDetails { return api.ModelDetails{} }

func (s *Server) ollamaTags(w http.ResponseWriter, r *http.Request) {
	models := s.chat.Models(principal(r))
	out := api.ListResponse{Models: make([]api.ListModelResponse, 0, len(models))}
	seen := make(map[string]bool, len(models))
	for _, m := range models {
		n := ollamaName(m.ID)
		if seen[n] {
			// "p/m" of the chain and "p/m:latest" as the provider lists
			// it are one model to an Ollama client.
			continue
		}
		seen[n] = true
		out.Models = append(out.Models, api.ListModelResponse{Name: n, Model: n, ModifiedAt: s.started.UTC(), Digest: ollamaDigest(m.ID),
			Details: ollamaDetails()})
	}
	writeJSON(w, http.StatusOK, out)
}

// ollamaShowRequest is the body of POST /api/show (api.ShowRequest): the
// model (or its older name, name); verbose, system, template and options
// change nothing moltbot shows.
type ollamaShowRequest struct {
	Model   string `json:"model"`
	Name    string `json:"name"`
	Verbose bool   `json:"verbose"`
}

func (s *Server) ollamaShow(w http.ResponseWriter, r *http.Request) {
	var req ollamaShowRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeOllamaError(w, err)
		return
	}
	name := req.Model
	if name == "" {
		name = req.Name
	}
	if name == "" {
		writeOllamaError(w, invalid("model", "model is required"))
		return
	}
	m, _, ok := s.ollamaFind(principal(r), name)
	if !ok {
		writeOllamaError(w, ollamaNotFound(name))
		return
	}
	info := map[string]any{"general.architecture": "moltbot"}
	if n := m.Caps.ContextLength; n > 0 {
		info["moltbot.context_length"] = n
	}
	writeJSON(w, http.StatusOK, api.ShowResponse{
		Modelfile: fmt.Sprintf("# %s is served by moltbot: %s\nFROM %s\n", ollamaName(m.ID), servedBy(m), ollamaName(m.ID)),
		Details:   ollamaDetails(), ModelInfo: info, Capabilities: ollamaCaps(m.Caps), ModifiedAt: s.started.UTC(),
	})
}

// servedBy says what serves a model, for its Modelfile.
func servedBy(m moltbot.ModelInfo) string {
	if m.Provider == "" {
		return "the node's failover chain"
	}
	return "provider " + m.Provider
}

// ollamaCaps are a model's capabilities in Ollama's words. Unknown ones
// are presumed able, as the router presumes them: completion, tools,
// vision.
func ollamaCaps(c moltbot.Capabilities) []model.Capability {
	if !c.Known {
		return []model.Capability{model.CapabilityCompletion, model.CapabilityTools, model.CapabilityVision}
	}
	var out []model.Capability
	if !c.Embeddings {
		out = append(out, model.CapabilityCompletion)
	}
	if c.Tools {
		out = append(out, model.CapabilityTools)
	}
	if c.Vision {
		out = append(out, model.CapabilityVision)
	}
	if c.Embeddings {
		out = append(out, model.CapabilityEmbedding)
	}
	return out
}

func (s *Server) ollamaPs(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	out := api.ProcessResponse{Models: []api.ProcessModelResponse{}}
	for _, u := range s.ollama.inUse.list(p.Space, time.Now()) {
		m, _, ok := s.ollamaFind(p, u.model)
		if !ok {
			continue // no longer p's to use (or no longer listed)
		}
		n := ollamaName(u.model)
		out.Models = append(out.Models, api.ProcessModelResponse{Name: n, Model: n, Digest: ollamaDigest(u.model), Details: ollamaDetails(),
			ExpiresAt: u.last.Add(ollamaKeepAlive).UTC(), ContextLength: m.Caps.ContextLength})
	}
	writeJSON(w, http.StatusOK, out)
}

// inUse remembers the models that served each space's Ollama API calls on
// this node lately: what /api/ps shows (moltbot's providers load and
// unload models themselves). Bounded: past maxInUse entries, the oldest go.
type inUse struct {
	mu sync.Mutex
	m  map[inUseKey]time.Time
}

type inUseKey struct{ space, model string }

type inUseEntry struct {
	model string
	last  time.Time
}

const maxInUse = 1024

// used records that model served a call of space at now.
func (u *inUse) used(space, model string, now time.Time) {
	if model == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[inUseKey]time.Time{}
	}
	k := inUseKey{space, model}
	if _, ok := u.m[k]; !ok && len(u.m) >= maxInUse {
		var oldest inUseKey
		var at time.Time
		for k, t := range u.m {
			if now.Sub(t) > ollamaKeepAlive {
				delete(u.m, k)
			} else if at.IsZero() || t.Before(at) {
				oldest, at = k, t
			}
		}
		if len(u.m) >= maxInUse {
			delete(u.m, oldest)
		}
	}
	u.m[k] = now
}

// list returns space's models used within ollamaKeepAlive of now, the
// latest first (Ollama lists the longest left first).
func (u *inUse) list(space string, now time.Time) []inUseEntry {
	u.mu.Lock()
	var out []inUseEntry
	for k, t := range u.m {
		if k.space == space && now.Sub(t) <= ollamaKeepAlive {
			out = append(out, inUseEntry{k.model, t})
		}
	}
	u.mu.Unlock()
	slices.SortFunc(out, func(a, b inUseEntry) int {
		if c := b.last.Compare(a.last); c != 0 {
			return c
		}
		return strings.Compare(a.model, b.model)
	})
	return out
}

func (s *Server) ollamaChat(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	var req ollamaChatRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeOllamaError(w, err)
		return
	}
	t, err := req.turn()
	if err != nil {
		writeOllamaError(w, err)
		return
	}
	s.ollamaRun(w, r, t0, req.Model, t, false)
}

func (s *Server) ollamaGenerate(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	var req ollamaGenerateRequest
	if err := s.decode(w, r, &req, false); err != nil {
		writeOllamaError(w, err)
		return
	}
	t, err := req.turn()
	if err != nil {
		writeOllamaError(w, err)
		return
	}
	s.ollamaRun(w, r, t0, req.Model, t, true)
}

// ollamaRun runs a chat or generate request (t0: when it came) and writes
// its answer: a stream of NDJSON lines, or one object.
func (s *Server) ollamaRun(w http.ResponseWriter, r *http.Request, t0 time.Time, name string, t *ollamaTurn, generate bool) {
	w, r, ok := s.withCache(w, r)
	if !ok {
		return
	}
	// One image is held to conversations.max_image_bytes as on /v1.
	if max := s.chat.Config().MaxImageBytes; max > 0 {
		for i := range t.msgs {
			for j := range t.msgs[i].Parts {
				if pt := &t.msgs[i].Parts[j]; pt.Type == moltbot.PartImage && len(pt.Data) > max {
					writeOllamaError(w, &moltbot.Error{Code: moltbot.ETooLarge, Param: "images", Message: fmt.Sprintf(
						"an image is %d bytes; at most %d are allowed (conversations.max_image_bytes)", len(pt.Data), max)})
					return
				}
			}
		}
	}
	p := principal(r)
	// The chat service resolves a name itself; only a name with Ollama's
	// tag, or a load (which asks no model), is looked up here, so that the
	// model list is not built for every request.
	model, found := name, false
	if t.load || strings.HasSuffix(name, ":latest") {
		_, model, found = s.ollamaFind(p, name)
	}
	if t.load {
		// Nothing to say: Ollama loads (or unloads) the model and says so.
		// moltbot's providers load their models themselves.
		if !found {
			writeOllamaError(w, ollamaNotFound(name))
			return
		}
		reason := "load"
		if t.unload {
			reason = "unload"
		}
		ow := newOllamaWriter(w, name, generate, t0, time.Now())
		defer ow.release()
		ow.loaded(reason)
		return
	}
	t.opts.Model = model
	tCall := time.Now()
	st, err := s.chat.Complete(r.Context(), p, chat.CompletionRequest{Messages: t.msgs, Options: t.opts, Stream: t.stream})
	if err != nil {
		writeOllamaError(w, err)
		return
	}
	ow := newOllamaWriter(w, name, generate, t0, tCall)
	if !t.stream {
		defer ow.release()
		res, err := st.Wait()
		if err != nil {
			writeOllamaError(w, err)
			return
		}
		s.ollama.inUse.used(p.Space, res.Completion.Served.String(), time.Now())
		ow.whole(res.Completion)
		return
	}
	ow.inUse, ow.space = &s.ollama.inUse, p.Space
	relayStream(st, ow)
}

// ollamaRelay writes a turn's events to w as NDJSON lines, on the
// request's goroutine, as relay writes SSE: the tokens that came together
// in one write, the tool calls and the done line once the turn is done,
// or the error (a plain HTTP error before the first line, an error line
// after). A client that stops reading ends the turn. It releases ow.

// jsonObject reports whether s is a JSON object (a tool call's arguments,
// written as they are).
func jsonObject(s string) bool {
	t := strings.TrimLeft(s, " \t\r\n")
	return strings.HasPrefix(t, "{") && json.Valid([]byte(t))
}
