package main

// The MCP client (github.com/modelcontextprotocol/go-sdk): the worker,
// not the node, links it (1.8 MB the node's binary would grow by;
// docs/DESIGN.md). At load the worker connects to each configured server
// (a command it starts, over stdio, or a streamable HTTP URL), lists its
// tools and names each server__tool; a tool op calls one, bounded by its
// deadline. A server that fails or hangs at load is a warning (its tools
// are not offered); at a call it is the call's error, which the node hands
// the model as the tool's result.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/moltbot/moltbot/skills/wire"
)

// toolName is what OpenAI takes as a function's name (and so what any
// provider does).
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Bounds on what a server lists, which every turn offers the model:
// OpenAI takes at most 128 tools a request.
const (
	maxServerTools = 64
	// maxServerListed bounds the tools of a server looked at (kept or
	// left out); maxServerWarnings its warnings; maxServerBytes what its
	// kept tools weigh in the load line.
	maxServerListed   = 256
	maxServerWarnings = 8
	maxServerBytes    = 128 << 10
	maxSchema         = 16 << 10
	maxDescription    = 1024
)

// mcpServer is a configured server and its session, nil until connected
// (again, after a call failed).
type mcpServer struct {
	cfg     wire.MCPServer
	session *mcp.ClientSession
	tools   map[string]string // server__tool -> the server's name of it
}

type mcpClients struct {
	servers map[string]*mcpServer
}

func (m *mcpClients) close() {
	if m == nil {
		return
	}
	var wg sync.WaitGroup
	for _, s := range m.servers {
		if s.session != nil {
			wg.Go(func() { s.session.Close() })
		}
	}
	waitFor(&wg, 3*time.Second) // a server that does not stop is killed with the worker
}

func waitFor(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// headerTransport adds a server's configured headers to its requests.
type headerTransport struct {
	base    http.RoundTripper
	headers map[string]string
}

func (h *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.headers {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// connect opens a session with s, bounded by ctx.
func (s *mcpServer) connect(ctx context.Context) error {
	if s.session != nil {
		return nil
	}
	var t mcp.Transport
	switch {
	case len(s.cfg.Command) > 0:
		cmd := exec.Command(s.cfg.Command[0], s.cfg.Command[1:]...)
		cmd.Env = []string{} // only what the config gives it
		for k, v := range s.cfg.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		dieWithWorker(cmd)
		t = &mcp.CommandTransport{Command: cmd, TerminateDuration: time.Second}
	case s.cfg.URL != "":
		// The configured headers (a token) go to the server's host only:
		// a redirect elsewhere is refused, not followed with them.
		host, scheme := "", ""
		if u, err := url.Parse(s.cfg.URL); err == nil {
			host, scheme = u.Host, u.Scheme
		}
		hc := &http.Client{Transport: &headerTransport{base: http.DefaultTransport, headers: s.cfg.Headers},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if req.URL.Host != host || req.URL.Scheme != scheme {
					return fmt.Errorf("mcp server %s: a redirect to another host or scheme (%s://%s) is not followed", s.cfg.Name, req.URL.Scheme, req.URL.Host)
				}
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				return nil
			}}
		t = &mcp.StreamableClientTransport{Endpoint: s.cfg.URL, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}
	default:
		return errors.New("neither a command nor a url")
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "moltbot", Version: "1"}, nil)
	type res struct {
		s   *mcp.ClientSession
		err error
	}
	ch := make(chan res, 1)
	go func() {
		cs, err := c.Connect(ctx, t, nil)
		ch <- res{cs, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		s.session = r.s
		return nil
	case <-ctx.Done():
		go func() { // connected too late: close it
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return ctx.Err()
	}
}

// drop closes a session that failed; the next call connects again.
func (s *mcpServer) drop() {
	if s.session != nil {
		cs := s.session
		s.session = nil
		go cs.Close()
	}
}

// loadMCP connects to the servers, all at once, each bounded by its
// timeout, and lists their tools. A server that fails is a warning.
func loadMCP(cfgs []wire.MCPServer) (*mcpClients, []wire.ToolInfo, []string) {
	m := &mcpClients{servers: map[string]*mcpServer{}}
	type listed struct {
		tools []wire.ToolInfo
		warns []string
	}
	out := make([]listed, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		s := &mcpServer{cfg: c, tools: map[string]string{}}
		m.servers[c.Name] = s
		wg.Go(func() {
			d := time.Duration(c.TimeoutMS) * time.Millisecond
			if d <= 0 {
				d = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			tools, warns, err := s.list(ctx)
			if err != nil {
				s.drop()
				if ctx.Err() != nil {
					err = fmt.Errorf("no answer within %s", d)
				}
				// A server's own error text is bounded: the warning goes in
				// the load line.
				warns = append(warns, fmt.Sprintf("mcp server %s: %s; its tools are not offered (a reload tries again)", c.Name, cut(err.Error(), 1024)))
			}
			out[i] = listed{tools, warns}
		})
	}
	wg.Wait()
	var tools []wire.ToolInfo
	var warns []string
	for _, l := range out {
		tools = append(tools, l.tools...)
		warns = append(warns, l.warns...)
	}
	return m, tools, warns
}

// list connects and lists s's tools (every page), named server__tool.
func (s *mcpServer) list(ctx context.Context) ([]wire.ToolInfo, []string, error) {
	if err := s.connect(ctx); err != nil {
		return nil, nil, err
	}
	var tools []wire.ToolInfo
	var warns []string
	// What one server may put in the load line: every tool it lists
	// counts (left out or not), its warnings are few, and its tools' bytes
	// are bounded, so that no server can make the line too long for the
	// node (which would fail the load, and a node's start, for all).
	listed, bytes, dropped := 0, 0, 0
	warn := func(format string, args ...any) {
		if len(warns) < maxServerWarnings {
			warns = append(warns, fmt.Sprintf(format, args...))
		} else {
			dropped++
		}
	}
	for t, err := range s.session.Tools(ctx, nil) {
		if err != nil {
			return nil, nil, err
		}
		name := s.cfg.Name + "__" + t.Name
		if listed++; listed > maxServerListed || len(tools) >= maxServerTools {
			warn("mcp server %s: more than %d tools; the rest are left out", s.cfg.Name, min(maxServerTools, maxServerListed))
			break
		}
		if !toolName.MatchString(name) {
			warn("mcp server %s: tool %q: %s is not a name a model takes (^[a-zA-Z0-9_-]{1,64}$); left out", s.cfg.Name, cut(t.Name, 80), cut(name, 80))
			continue
		}
		if _, dup := s.tools[name]; dup {
			continue
		}
		params, err := json.Marshal(t.InputSchema)
		if err != nil || t.InputSchema == nil {
			params = json.RawMessage(`{"type":"object"}`)
		}
		if len(params) > maxSchema {
			warn("mcp server %s: tool %s: its parameters' schema is over %d bytes; left out", s.cfg.Name, t.Name, maxSchema)
			continue
		}
		if r := []rune(t.Description); len(r) > maxDescription {
			t.Description = string(r[:maxDescription])
		}
		if bytes += len(name) + len(t.Description) + len(params); bytes > maxServerBytes {
			warn("mcp server %s: its tools' names, descriptions and schemas pass %d bytes; the rest are left out", s.cfg.Name, maxServerBytes)
			break
		}
		s.tools[name] = t.Name
		tools = append(tools, wire.ToolInfo{Name: name, Description: t.Description, Parameters: params, Server: s.cfg.Name})
	}
	if dropped > 0 {
		warns = append(warns, fmt.Sprintf("mcp server %s: %d more warnings left out", s.cfg.Name, dropped))
	}
	sort.Slice(tools, func(i, j int) bool { return tools[i].Name < tools[j].Name })
	return tools, warns, nil
}

// call calls an MCP tool with args (a JSON object), bounded by d; the
// result's text, or an error. A result the server marks an error is
// returned as an error too, with its text.
func (m *mcpClients) call(name string, args json.RawMessage, d time.Duration) (string, error) {
	var s *mcpServer
	var orig string
	if m != nil {
		for _, srv := range m.servers {
			if o, ok := srv.tools[name]; ok {
				s, orig = srv, o
			}
		}
	}
	if s == nil {
		return "", fmt.Errorf("no tool %q", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.connect(ctx); err != nil {
		return "", s.failed(ctx, d, err)
	}
	var a map[string]any
	if len(args) > 0 {
		if err := json.Unmarshal(args, &a); err != nil {
			return "", fmt.Errorf("arguments: %v", err)
		}
	}
	res, err := s.session.CallTool(ctx, &mcp.CallToolParams{Name: orig, Arguments: a})
	if err != nil {
		s.drop()
		return "", s.failed(ctx, d, err)
	}
	text := resultText(res)
	if res.IsError {
		return "", fmt.Errorf("%s", text)
	}
	return text, nil
}

func (s *mcpServer) failed(ctx context.Context, d time.Duration, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("mcp server %s did not answer within %s", s.cfg.Name, d)
	}
	return fmt.Errorf("mcp server %s: %v", s.cfg.Name, err)
}

// resultText is a tool result as the model reads it: its text contents,
// one per line; other contents as their JSON; the structured content
// when there is no other.
func resultText(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
			continue
		}
		j, _ := json.Marshal(c)
		b.Write(j)
	}
	if b.Len() == 0 && r.StructuredContent != nil {
		j, _ := json.Marshal(r.StructuredContent)
		b.Write(j)
	}
	return b.String()
}
